//! The node's side of replica moves: binding it as a move's source or target, and running or
//! abandoning a move as its coordinator ([`Moves`]).

use super::*;

impl NodeReplicas {
    /// Refuses to bind this node as the source of `spec` when it has no replica of the
    /// channel to move (it never ran the group, or its replica moved away: binding would
    /// also overwrite the row that marks that), unless `spec` is the move already bound
    /// here (its resume, also after this node cleaned up).
    async fn check_source(&self, spec: &MoveSpec) -> NodeResult<()> {
        let channel = spec.channel.as_str();
        let bound = self
            .moves
            .record(channel)
            .await
            .map_err(|e| node_error(&e))?;
        if bound.is_some_and(|r| r.id == spec.id && r.from == spec.from && r.to == spec.to) {
            return Ok(());
        }
        if let Some(how) = self.moved_away(channel) {
            return Err(Self::moved_away_refusal(channel, how));
        }
        if self.channel(channel).is_none() {
            return Err(NodeError::new(
                ErrorClass::Refused,
                format!("channel {channel} has no replica on this node to move"),
            ));
        }
        Ok(())
    }

    pub(super) async fn bind_move(&self, bind: &MoveBind) -> NodeResult<()> {
        let spec = MoveSpec {
            channel: bind.channel.clone(),
            id: bind.id,
            from: addr(&bind.from)?,
            to: addr(&bind.to)?,
            coordinator: addr(&bind.coordinator)?.node_id,
        };
        if bind.rebind {
            self.moves.rebind(&spec).await.map_err(|e| node_error(&e))?;
            return Ok(());
        }
        let own = self.endpoint()?.identity().node_id();
        if spec.from.node_id == own {
            self.check_source(&spec).await?;
        }
        let joins = spec.to.node_id == own && self.channel(&bind.channel).is_none();
        if joins {
            self.refuse_local_pins(&bind.channel).await?;
        }
        self.moves.bind(&spec).await.map_err(|e| node_error(&e))?;
        let endpoint = self.endpoint()?.clone();
        if joins {
            // The target joins: it admits raft calls only from the current members until
            // the leader's log or snapshot gives it the membership.
            let members = bind
                .members
                .iter()
                .map(|m| addr(m))
                .collect::<NodeResult<Vec<_>>>()?;
            let joined = ReplicatedChannel::join(
                &self.replication,
                self.store.clone(),
                &bind.channel,
                &members,
                endpoint,
                &self.config,
            )
            .await
            .map_err(|e| node_error(&e))?;
            self.run(joined).await?;
            tracing::info!(
                channel = bind.channel,
                "joined as the target of move {}",
                bind.id
            );
        }
        Ok(())
    }

    pub(super) async fn run_move(&self, run: &MoveRun) -> NodeResult<MoveDone> {
        let own = self.endpoint()?.identity().node_id();
        let spec = MoveSpec {
            channel: run.channel.clone(),
            id: run.id,
            from: addr(&run.from)?,
            to: addr(&run.to)?,
            coordinator: own,
        };
        let mut phases = Vec::new();
        let mut on_phase = |e: &MoveEvent| {
            phases.push(MoveStep {
                phase: e.phase.name().to_string(),
                detail: e.detail.clone(),
            })
        };
        // A move bound here already goes on from its phase (`begin` keeps it, or moves it
        // on to `CutOver` when the group is past it).
        let mut moved = self.moves.start(&spec, &mut on_phase).await;
        if run.forget_source
            && let Err(MoveError::Unreachable { node, .. }) = &moved
            && *node == spec.from
            && let Ok(Some(record)) = self.moves.record(&spec.channel).await
            && record.id == spec.id
            && (record.phase == MovePhase::Left || record.phase == MovePhase::SourceForgotten)
        {
            // The source left the group and does not answer its cleanup: forgotten, as asked.
            moved = self
                .moves
                .forget_source(&spec.channel, spec.id, &mut on_phase)
                .await;
        }
        match moved {
            Ok(_) => Ok(MoveDone { phases }),
            Err(e) => {
                let reached = phases
                    .iter()
                    .map(|p| p.phase.as_str())
                    .collect::<Vec<_>>()
                    .join(", ");
                Err(NodeError::new(
                    e.class(),
                    format!(
                        "{e} (phases reached by this call: {}; run the same move again to resume it)",
                        if reached.is_empty() { "none" } else { &reached }
                    ),
                ))
            }
        }
    }

    pub(super) async fn abandon_move(&self, run: &MoveRun) -> NodeResult<MoveDone> {
        let spec = MoveSpec {
            channel: run.channel.clone(),
            id: run.id,
            from: addr(&run.from)?,
            to: addr(&run.to)?,
            coordinator: self.endpoint()?.identity().node_id(),
        };
        let (_, done) = self
            .moves
            .abandon(&spec)
            .await
            .map_err(|e| node_error(&e))?;
        Ok(MoveDone {
            phases: vec![MoveStep {
                phase: MovePhase::Abandoned.name().to_string(),
                detail: done.join("; "),
            }],
        })
    }
}
