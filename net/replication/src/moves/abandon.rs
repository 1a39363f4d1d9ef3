//! Giving a move up before its cutover: `abandon` on the coordinator (taking the move over when
//! another node began it) and `move/v1/abandon` on the target and the source.

use super::*;

impl Moves {
    /// Gives up the move `spec` bound on this coordinator before its cutover (its target
    /// cannot catch up, e.g. it is gone for good): removes the target from the group while it
    /// is a learner there (on the leader), commits `Abandoned`, then tells the source (it
    /// keeps its copy and may be the source of another move) and the target (it removes its
    /// copy) by `move/v1/abandon`. Run again, it tells whoever was not reached. Returns the
    /// record and what was done, one line per step. A move at or past `CutOver`, or whose
    /// target is a voter of the group's membership (a cutover begun), cannot be abandoned:
    /// resume it. A target that cannot be reached keeps its copy, bound to the move (said in
    /// the lines); a source that cannot be reached (`Unreachable`) or refuses (`Refused`)
    /// fails the call, as it stays bound and refuses other moves until told. A move another
    /// node began is taken over first (`take_over`: this node leads, and the source holds the
    /// move bound to it).
    pub async fn abandon(&self, spec: &MoveSpec) -> Result<(MoveRecord, Vec<String>), MoveError> {
        check_spec(spec)?;
        let channel = spec.channel.as_str();
        let lock = self.lock(channel);
        let _held = lock.try_lock().map_err(|_| busy_running(channel))?;
        let bound = self.read_row(channel).await?;
        let own = *self.inner.own.as_bytes();
        if !bound
            .as_ref()
            .is_some_and(|r| same_move(r, spec) && r.coordinator == own)
        {
            self.take_over(spec, bound.as_ref()).await?;
        }
        // The move is bound here with this node its coordinator now (taken over, or so before).
        let mut row = self
            .read_row(channel)
            .await?
            .filter(|r| same_move(r, spec) && r.coordinator == own)
            .ok_or_else(|| MoveError::NotBound {
                channel: channel.to_string(),
            })?;
        let (Some(from), Some(to)) = (node_addr(&row.from), node_addr(&row.to)) else {
            return Err(usage(
                channel,
                "the bound move names an invalid node id".into(),
            ));
        };
        let target = raft_id(&to.node_id);
        // A move whose target was a voter before it never ran: nothing to undo in the group.
        let never_ran = self
            .attached(channel)
            .is_ok_and(|ch| both_voters(&ch, &row.from.node_id, &row.to.node_id));
        let mut done = Vec::new();
        if never_ran {
            done.push(format!(
                "{to} was a voter of the group before the move: the move never ran"
            ));
        } else if row.phase != MovePhase::Abandoned {
            if row.phase >= MovePhase::CutOver {
                return Err(usage(
                    channel,
                    format!(
                        "move {} reached {}: past the cutover it can only be finished (run it again)",
                        row.id,
                        row.phase.name()
                    ),
                ));
            }
            let ch = self.attached(channel)?;
            if ch.voters().0.contains(&target) {
                return Err(usage(
                    channel,
                    format!(
                        "{to} is a voter of the group: the cutover began; run the move again to finish it"
                    ),
                ));
            }
        }
        // The learner leaves first (also on a rerun: a removal whose commit was cut off): the
        // group never makes it a voter after this, so its copy may go.
        if let Ok(ch) = self.attached(channel)
            && !never_ran
            && in_group(&ch, &to)
        {
            self.leading(&ch)?;
            let index = ch.remove_learner(&to).await?;
            done.push(format!("{to} removed from the group (index {index})"));
        }
        if row.phase != MovePhase::Abandoned {
            row.phase = MovePhase::Abandoned;
            self.write_row(channel, &row).await?;
            tracing::info!(channel, id = row.id, "move abandoned");
        }
        let request = AbandonRequest { id: row.id };
        let told = |reply: AbandonReply, node: &NodeAddr| match reply {
            AbandonReply::Released => format!("{node} is free of the move and keeps its copy"),
            AbandonReply::Removed { pins_removed } => {
                format!("{node} removed its copy ({pins_removed} pins)")
            }
            AbandonReply::AlreadyAbandoned => format!("{node} had already abandoned the move"),
        };
        // The target is told whatever the source answers: its own checks do not rest on the
        // source's, and a source that moved on would otherwise keep it bound for good.
        let source = if from.node_id == self.inner.own {
            // This coordinator is the source: its row (the same) is abandoned already.
            Ok(format!("{from} (this node) keeps its copy"))
        } else {
            self.call::<_, AbandonReply>(channel, &from, METHOD_MOVE_ABANDON, &request)
                .await
                .map(|reply| told(reply, &from))
        };
        let source_failed = match source {
            Ok(line) => {
                done.push(line);
                None
            }
            Err(e) => Some(e),
        };
        match self
            .call::<_, AbandonReply>(channel, &to, METHOD_MOVE_ABANDON, &request)
            .await
        {
            Ok(reply) => done.push(told(reply, &to)),
            Err(e) => done.push(format!(
                "the target was not told ({e}): it keeps its copy, bound to this move, until the abandon runs again"
            )),
        }
        if let Some(e) = source_failed {
            tracing::warn!(channel, id = row.id, steps = ?done, "move abandoned here; the source was not told");
            return Err(e);
        }
        Ok((record_of(channel, &row)?, done))
    }

    /// Binds this node as the coordinator of move `spec`, to abandon it, when the node that
    /// began it no longer leads (or is gone): this node must lead the group (unless the move
    /// never ran: its target a voter beside the source, which the abandon changes nothing of,
    /// e.g. the source while the target leads), must not be
    /// driving another move of it, and the source must hold the move bound with this node as
    /// its coordinator (rebound to it first: `Moves::rebind`), which its `move/v1/state` shows
    /// by answering this node for that id. Nothing is written before those checks pass.
    pub(super) async fn take_over(
        &self,
        spec: &MoveSpec,
        bound: Option<&MoveRow>,
    ) -> Result<(), MoveError> {
        let channel = spec.channel.as_str();
        let own = *self.inner.own.as_bytes();
        if let Some(row) = bound
            && !same_move(row, spec)
            && row.coordinator == own
            && !row.phase.is_end()
        {
            return Err(usage(
                channel,
                format!(
                    "move {} ({} -> {}) is bound here, not move {}",
                    row.id,
                    hex8(&row.from.node_id),
                    hex8(&row.to.node_id),
                    spec.id
                ),
            ));
        }
        let ch = self.attached(channel)?;
        let (from, to) = (spec.from.node_id.as_bytes(), spec.to.node_id.as_bytes());
        // A move that never ran (its target a voter of every configuration beside its
        // source) is abandoned without any change to the group: it needs no leader, so the
        // source may take it over while the target leads (a target never coordinates).
        if !both_voters(&ch, from, to) {
            // Not leading, with the target a voter (it may lead): a cutover began, which a
            // leader would refuse too (a leader asks the source first, below).
            if !ch.status().is_leader
                && ch
                    .voter_configs()
                    .iter()
                    .any(|c| c.contains(&raft_id_of(to)))
            {
                return Err(usage(
                    channel,
                    format!(
                        "{} is a voter of the group: the cutover began; run the move again to finish it",
                        spec.to
                    ),
                ));
            }
            self.leading(&ch)?;
        }
        if spec.from.node_id == self.inner.own {
            if both_voters(&ch, from, to) && !bound.is_some_and(|r| same_move(r, spec)) {
                // A move that can never run (its target is a voter), which this source
                // refused to begin (or never heard of): bound here only to be abandoned,
                // which frees the target bound to it.
                self.bind_at(spec, MovePhase::Bound, None).await?;
                tracing::info!(
                    channel,
                    id = spec.id,
                    "move that never ran taken over by its source to abandon it"
                );
                return Ok(());
            }
            // This node is the source: its own row must be the move, handed over here.
            self.rebind_locked(spec).await?;
            tracing::info!(
                channel,
                id = spec.id,
                "move taken over by its source to abandon it"
            );
            return Ok(());
        }
        let asked = self
            .call_answer::<StateRequest, HandoffState>(
                channel,
                &spec.from,
                METHOD_MOVE_STATE,
                &StateRequest { id: spec.id },
            )
            .await?;
        match asked {
            Ok(_) => {}
            Err(e)
                if e.kind == ErrorKind::PermissionDenied
                    || e.kind == ErrorKind::FailedPrecondition =>
            {
                return Err(usage(
                    channel,
                    format!(
                        "the source {} holds no move {} bound to this node ({}); rebind it here first",
                        spec.from, spec.id, e.message
                    ),
                ));
            }
            Err(e) => return Err(answer_error(channel, &spec.from, METHOD_MOVE_STATE, &e)),
        }
        let record = self.bind_at(spec, MovePhase::Bound, None).await?;
        tracing::info!(channel, id = spec.id, phase = ?record.phase, "move taken over to abandon it");
        Ok(())
    }

    /// The source's and the target's side of `move/v1/abandon`, with the channel's lock
    /// held. The source keeps its copy: it checks that the target is no voter in the group
    /// it runs (no cutover) and commits `Abandoned`. The target checks that it is no voter
    /// in the membership it holds and removes its copy with `Abandoned` (the coordinator
    /// removed it from the group before). A repeat answers `AlreadyAbandoned`.
    pub(super) async fn abandon_locked(
        &self,
        channel: &str,
        id: u64,
    ) -> Result<AbandonReply, RpcError> {
        let precondition = |reason: String| {
            tracing::warn!(channel, id, reason, "move abandon changed nothing");
            RpcError::new(ErrorKind::FailedPrecondition, reason)
        };
        let unavailable =
            |e: &dyn std::fmt::Display| RpcError::new(ErrorKind::Unavailable, e.to_string());
        let Some(row) = self.read_row(channel).await.map_err(|e| unavailable(&e))? else {
            return Err(precondition("no move of the channel is bound here".into()));
        };
        if row.id != id {
            return Err(precondition(format!(
                "abandon of move {id}, but move {} is bound here",
                row.id
            )));
        }
        let own = *self.inner.own.as_bytes();
        match row.phase {
            MovePhase::Abandoned => {
                if row.to.node_id == own {
                    // A removal cut off after its commit may have left the group registered.
                    self.detach_removed(channel, MovePhase::Abandoned);
                }
                return Ok(AbandonReply::AlreadyAbandoned);
            }
            MovePhase::CleanedUp => {
                return Err(precondition(format!("move {id} is finished here")));
            }
            _ => {}
        }
        let done = MoveRow {
            phase: MovePhase::Abandoned,
            ..row.clone()
        };
        let never_ran = self
            .attached(channel)
            .is_ok_and(|ch| both_voters(&ch, &row.from.node_id, &row.to.node_id));
        if never_ran {
            // The target was a voter before the move (it never ran): both nodes keep their
            // copies and are free of the move.
            self.write_row(channel, &done)
                .await
                .map_err(|e| unavailable(&e))?;
            tracing::info!(
                channel,
                id,
                "move that never ran abandoned: this node keeps its copy"
            );
            return Ok(AbandonReply::Released);
        }
        if row.from.node_id == own {
            let ch = self.attached(channel).map_err(|e| unavailable(&e))?;
            if ch.voters().0.contains(&raft_id_of(&row.to.node_id)) {
                return Err(precondition(
                    "the target is a voter of the group here: the move cut over".into(),
                ));
            }
            self.write_row(channel, &done)
                .await
                .map_err(|e| unavailable(&e))?;
            tracing::info!(channel, id, "move abandoned: this source keeps its copy");
            return Ok(AbandonReply::Released);
        }
        if row.to.node_id != own {
            return Err(precondition(
                "this node is neither the move's source nor its target".into(),
            ));
        }
        // A group stored here but not running (being reopened, e.g. finishing an interrupted
        // snapshot install, which would write its pins back after the removal): not now.
        if !self.is_attached(channel) {
            let store = self.inner.store.clone();
            let ch = channel.to_string();
            let stored = tokio::task::spawn_blocking(move || {
                store.read_extension(NAMESPACE, |r| crate::tables::holds_state(r, &ch))
            })
            .await
            .map_err(|e| unavailable(&e))?
            .map_err(|e| unavailable(&e))?;
            if stored {
                return Err(unavailable(
                    &"the channel's group is not running here yet (reopening); abandon again later",
                ));
            }
        }
        let holds = self
            .handoff_state(channel)
            .await
            .map_err(|e| unavailable(&e))?;
        let voter_here = self
            .attached(channel)
            .is_ok_and(|ch| ch.voters().0.contains(&raft_id_of(&own)));
        if voter_here || holds.voters.contains(&own) {
            return Err(precondition(
                "this node is a voter of the group: the move cut over".into(),
            ));
        }
        let removed = self.remove_copy(channel, done).await?;
        tracing::info!(
            channel,
            id,
            pins_removed = removed,
            "move abandoned: this target removed its copy"
        );
        Ok(AbandonReply::Removed {
            pins_removed: removed,
        })
    }
}
