//! Binding a node to a move: the source's and the target's rows (an admin's `bind`), handing a
//! move to another coordinator (`rebind`), and when a bound row may give way to a new move.

use super::*;

impl Moves {
    /// The move of `channel` bound on this node, if any.
    pub async fn record(&self, channel: &str) -> Result<Option<MoveRecord>, MoveError> {
        self.read_row(channel)
            .await?
            .map(|row| record_of(channel, &row))
            .transpose()
    }

    /// Binds this node (the move's source or target) to the move `spec`, persisted: from
    /// now on it accepts the move's phase messages only from `spec.coordinator`'s
    /// authenticated sessions. Binding the same move again is a no-op, or hands the move over
    /// to another coordinator (same id, source and target). A different move of the channel
    /// is `Busy` while the bound one is unfinished here.
    pub async fn bind(&self, spec: &MoveSpec) -> Result<MoveRecord, MoveError> {
        check_spec(spec)?;
        let own = self.inner.own;
        if spec.from.node_id != own && spec.to.node_id != own {
            return Err(usage(
                &spec.channel,
                format!("node {own} is neither the source nor the target of the move"),
            ));
        }
        let lock = self.lock(&spec.channel);
        let _held = lock.lock().await;
        if spec.to.node_id == own {
            self.check_new_target(spec).await?;
        }
        self.bind_locked(spec).await
    }

    /// Refuses to bind this node as the target of a new move while it is a voter of the
    /// channel's group already: the coordinator would never run the move, and the node would
    /// stay bound to it, refusing other moves. The move already bound here (its resume, also
    /// past its cutover, where the target is a voter) is not refused.
    async fn check_new_target(&self, spec: &MoveSpec) -> Result<(), MoveError> {
        let channel = spec.channel.as_str();
        let Ok(ch) = self.attached(channel) else {
            return Ok(());
        };
        let to = raft_id(&spec.to.node_id);
        let configs = ch.voter_configs();
        if configs.is_empty() || !configs.iter().all(|c| c.contains(&to)) {
            return Ok(());
        }
        let bound = self.read_row(channel).await?;
        let earlier = self.read_previous_row(channel).await?;
        if bound
            .iter()
            .chain(earlier.iter())
            .any(|r| same_move(r, spec))
        {
            return Ok(());
        }
        Err(usage(
            channel,
            format!("{} is already a member of {channel}", spec.to),
        ))
    }

    /// Hands move `spec`, already bound on this node (its row, or the previous move it was the
    /// target of), to the coordinator `spec` names, as [`Moves::bind`] does for that move; binds
    /// nothing new (`Usage` when no such move is bound here). An abandoning leader that did not
    /// begin the move has the source and the target rebound to it first. An abandoned move is
    /// handed over too (its row stays `Abandoned`), so that another leader can tell a node the
    /// abandon did not reach.
    pub async fn rebind(&self, spec: &MoveSpec) -> Result<MoveRecord, MoveError> {
        check_spec(spec)?;
        let channel = spec.channel.as_str();
        let lock = self.lock(channel);
        let _held = lock.lock().await;
        self.rebind_locked(spec).await
    }

    pub(super) async fn rebind_locked(&self, spec: &MoveSpec) -> Result<MoveRecord, MoveError> {
        let channel = spec.channel.as_str();
        let bound = self.read_row(channel).await?;
        if let Some(row) = &bound
            && same_move(row, spec)
            && row.phase == MovePhase::Abandoned
        {
            // Handed over only, so that another leader can tell a node not told yet (an
            // abandoned move is never bound or run again).
            let row = MoveRow {
                coordinator: *spec.coordinator.as_bytes(),
                ..row.clone()
            };
            self.write_row(channel, &row).await?;
            tracing::info!(channel, id = row.id, coordinator = %spec.coordinator, "abandoned move handed over");
            return record_of(channel, &row);
        }
        let earlier = self.read_previous_row(channel).await?;
        if !bound
            .iter()
            .chain(earlier.iter())
            .any(|r| same_move(r, spec))
        {
            return Err(usage(
                channel,
                format!(
                    "move {} ({} -> {}) is not bound here; a rebind binds nothing new",
                    spec.id, spec.from, spec.to
                ),
            ));
        }
        self.bind_locked(spec).await
    }

    pub(super) async fn bind_locked(&self, spec: &MoveSpec) -> Result<MoveRecord, MoveError> {
        self.bind_at(spec, MovePhase::Bound, None).await
    }

    /// Binds `spec` like [`Moves::bind`]; a new row starts at `phase` with `cutover`, a row
    /// of the same move before `phase` moves on to it.
    pub(super) async fn bind_at(
        &self,
        spec: &MoveSpec,
        phase: MovePhase,
        cutover: Option<u64>,
    ) -> Result<MoveRecord, MoveError> {
        let channel = spec.channel.as_str();
        let bound = self.read_row(channel).await?;
        if let Some(bound) = &bound
            && !same_move(bound, spec)
            && let Some(earlier) = self.read_previous_row(channel).await?
            && same_move(&earlier, spec)
        {
            // The move this node was the target of, replaced here by a newer one: handed to
            // another coordinator, which may then ask this node's handoff state.
            let earlier = MoveRow {
                coordinator: *spec.coordinator.as_bytes(),
                ..earlier
            };
            self.write_rows(channel, bound, Some((earlier.clone(), None)))
                .await?;
            tracing::info!(channel, id = earlier.id, coordinator = %spec.coordinator, "previous move handed over");
            return record_of(channel, &earlier);
        }
        let mut previous = None;
        let row = match bound {
            // An abandoned move is over for its id (bound again, it would be run again, up to
            // a cutover whose cleanup the source refuses).
            Some(old) if same_move(&old, spec) && old.phase == MovePhase::Abandoned => {
                return Err(abandoned(channel, old.id));
            }
            Some(old) if same_move(&old, spec) => {
                let (phase, cutover) = if old.phase < phase {
                    (phase, cutover)
                } else {
                    (old.phase, old.cutover)
                };
                MoveRow {
                    coordinator: *spec.coordinator.as_bytes(),
                    phase,
                    cutover,
                    ..old
                }
            }
            Some(old) if !self.replaceable(channel, &old).await? => {
                return Err(MoveError::Busy {
                    channel: channel.to_string(),
                    reason: format!(
                        "move {} ({} -> {}) is bound here at phase {:?}",
                        old.id,
                        hex8(&old.from.node_id),
                        hex8(&old.to.node_id),
                        old.phase
                    ),
                });
            }
            old => {
                // A move this node was the target of, replaced before its source cleaned up
                // (it applied the cutover): kept, so that the move can still be finished.
                previous = old.filter(|o| {
                    o.phase != MovePhase::CleanedUp
                        && o.phase != MovePhase::Abandoned
                        && o.to.node_id == *self.inner.own.as_bytes()
                });
                MoveRow {
                    id: spec.id,
                    from: move_node(&spec.from),
                    to: move_node(&spec.to),
                    coordinator: *spec.coordinator.as_bytes(),
                    phase,
                    started_unix_ms: now_unix_ms(),
                    cutover,
                }
            }
        };
        // What this node applied when the replaced row gave way (the handoff `replaceable`
        // checked): answered about that move from now on, also once this node's own copy is
        // gone (a newer move that makes it a source cleans its state up).
        let previous = match previous {
            Some(p) => Some((p, Some(self.handoff_state(channel).await?))),
            None => None,
        };
        self.write_rows(channel, &row, previous).await?;
        tracing::info!(channel, id = row.id, phase = ?row.phase, coordinator = %spec.coordinator, "move bound");
        record_of(channel, &row)
    }

    /// Whether an earlier move's row may give way to a new move: it is finished here (the
    /// source cleaned up), this node coordinated it (as neither source nor target) and it was
    /// handed to another coordinator, or this node was its target and holds an applied
    /// membership that makes it a voter without that move's source.
    pub(super) async fn replaceable(
        &self,
        channel: &str,
        old: &MoveRow,
    ) -> Result<bool, MoveError> {
        if old.phase.is_end() {
            return Ok(true);
        }
        let own = self.inner.own.as_bytes();
        if old.coordinator == *own && old.from.node_id != *own && old.to.node_id != *own {
            return Ok(self.handed_over(channel, old).await);
        }
        if old.to.node_id != *self.inner.own.as_bytes() || old.coordinator == old.to.node_id {
            return Ok(false);
        }
        let state = self.handoff_state(channel).await?;
        Ok(state.voters.contains(&old.to.node_id)
            && !state.voters.contains(&old.from.node_id)
            && !state.learners.contains(&old.from.node_id))
    }
}
