//! The coordinator's side of a move: `begin` binds it, `resume` runs each phase's action and
//! commits the phase reached (`forget_source` ends one whose source is gone for good), and the
//! `move/v1/*` calls it makes to the source and the target.

use super::*;

impl Moves {
    /// Binds this node as the coordinator of `spec` (it must be the channel's leader, the
    /// source a voter, the target not one) and persists the move at `Bound`. The same move
    /// again is a no-op (use [`Moves::resume`] to go on). A move the group already cut over
    /// (another coordinator's, handed to this node) is bound at `CutOver`, leader or not; so
    /// is one whose cutover was cut off in its joint membership, once the leader finished that
    /// (waited for on a node that does not lead, at most [`MoveConfig::handoff`]).
    pub async fn begin(&self, spec: &MoveSpec) -> Result<MoveRecord, MoveError> {
        check_spec(spec)?;
        let channel = spec.channel.as_str();
        if spec.coordinator != self.inner.own {
            return Err(usage(
                channel,
                format!(
                    "the move's coordinator is {}, not this node",
                    spec.coordinator
                ),
            ));
        }
        let lock = self.lock(channel);
        let _held = lock.try_lock().map_err(|_| busy_running(channel))?;
        if let Ok(ch) = self.attached(channel)
            && cut_over(&ch, &spec.from, &spec.to)
        {
            // This move is past its cutover (another coordinator's doing, even if this node
            // bound it earlier). What is left (the target's handoff, the source's cleanup)
            // is asked of the target and the source and needs no leader, so this node
            // takes the move over from there.
            let (_, index) = ch.voters();
            return self.bind_at(spec, MovePhase::CutOver, index).await;
        }
        if let Some(old) = self.read_row(channel).await?
            && same_move(&old, spec)
        {
            return self.bind_locked(spec).await;
        }
        let ch = self.attached(channel)?;
        if !ch.status().is_leader && self.cut_over_by_leader(&ch, &spec.from, &spec.to).await {
            let (_, index) = ch.voters();
            return self.bind_at(spec, MovePhase::CutOver, index).await;
        }
        let status = ch.status();
        if !status.is_leader {
            return Err(MoveError::NotLeader {
                channel: channel.to_string(),
                leader: status.leader,
            });
        }
        let (voters, _) = ch.voters();
        let nodes = ch.membership_nodes();
        let is_voter = |a: &NodeAddr| {
            voters.contains(&raft_id(&a.node_id))
                && nodes
                    .get(&raft_id(&a.node_id))
                    .is_some_and(|m| m.is(&a.node_id))
        };
        if !is_voter(&spec.from) {
            return Err(usage(
                channel,
                format!("the source {} is not a voter of the group", spec.from),
            ));
        }
        // Between a cutover's joint entry and its final one (the cutting coordinator stopped)
        // the target is a voter of the new voters only: the move is taken over and finished.
        let configs = ch.voter_configs();
        if configs
            .iter()
            .all(|c| c.contains(&raft_id(&spec.to.node_id)))
        {
            return Err(usage(
                channel,
                format!("the target {} is already a voter of the group", spec.to),
            ));
        }
        self.bind_locked(spec).await
    }

    /// Between a cutover's joint entry and its final one, on a node that does not lead (the
    /// leader may be the target, which never coordinates its own move): waits, at most
    /// [`MoveConfig::handoff`], for the leader to finish the joint membership its proposer
    /// left (`membership::finish_left_joint`) and this node to apply it. True once the move
    /// `from` → `to` is past its cutover here; false at once when the group is not joint with
    /// `to` a new voter, once this node applied another settled membership, or after the wait.
    pub(super) async fn cut_over_by_leader(
        &self,
        ch: &ReplicatedChannel,
        from: &NodeAddr,
        to: &NodeAddr,
    ) -> bool {
        let configs = ch.voter_configs();
        let joint_to = configs.len() > 1
            && configs
                .last()
                .is_some_and(|newest| newest.contains(&raft_id(&to.node_id)));
        if !joint_to {
            return false;
        }
        let wait = self.inner.config.handoff;
        tracing::info!(
            channel = ch.channel(),
            %to,
            "the group is between a cutover's two changes of voters and this node does not lead: waiting up to {wait:?} for the leader to finish it"
        );
        let started = Instant::now();
        while started.elapsed() < wait {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if cut_over(ch, from, to) {
                tracing::info!(channel = ch.channel(), %to, "the leader finished the cutover after {:?}", started.elapsed());
                return true;
            }
            let (_, index) = ch.voters();
            let applied = ch.status().applied;
            if ch.voter_configs().len() <= 1 && index.is_some_and(|i| applied >= Some(i)) {
                return false;
            }
        }
        tracing::warn!(channel = ch.channel(), %to, "the leader did not finish the cutover in {wait:?}");
        false
    }

    /// [`Moves::begin`] then [`Moves::resume`] to the end: runs the whole move on the
    /// coordinator, reporting each phase reached to `on_phase`.
    pub async fn start(
        &self,
        spec: &MoveSpec,
        on_phase: impl FnMut(&MoveEvent) + Send,
    ) -> Result<MoveRecord, MoveError> {
        self.begin(spec).await?;
        self.resume(&spec.channel, None, on_phase).await
    }

    /// Drives the move of `channel` bound on this coordinator from its stored phase, until
    /// `until` is reached (or to the end: `CleanedUp`), reporting each phase reached to
    /// `on_phase`. Each phase is committed to `ext.raft.moves_v1` once its action is done;
    /// an error leaves the move at the last phase committed, and `resume` goes on from there.
    pub async fn resume(
        &self,
        channel: &str,
        until: Option<MovePhase>,
        mut on_phase: impl FnMut(&MoveEvent) + Send,
    ) -> Result<MoveRecord, MoveError> {
        let lock = self.lock(channel);
        let _held = lock.try_lock().map_err(|_| busy_running(channel))?;
        let mut row = self
            .read_row(channel)
            .await?
            .ok_or_else(|| MoveError::NotBound {
                channel: channel.to_string(),
            })?;
        if row.coordinator != *self.inner.own.as_bytes() {
            return Err(usage(
                channel,
                "this node is not the move's coordinator".into(),
            ));
        }
        let (Some(from), Some(to)) = (node_addr(&row.from), node_addr(&row.to)) else {
            return Err(usage(
                channel,
                "the bound move names an invalid node id".into(),
            ));
        };
        loop {
            if row.phase == MovePhase::Abandoned {
                return Err(abandoned(channel, row.id));
            }
            if row.phase == MovePhase::CleanedUp || until.is_some_and(|u| row.phase >= u) {
                return record_of(channel, &row);
            }
            let (next, detail) = match row.phase {
                MovePhase::Bound => {
                    let ch = self.attached(channel)?;
                    self.leading(&ch)?;
                    let detail = if in_group(&ch, &to) {
                        format!("{to} is already in the group")
                    } else {
                        let index = ch.add_learner_entry(&to).await?;
                        format!("{to} added as a learner at index {index}")
                    };
                    (MovePhase::LearnerAdded, detail)
                }
                MovePhase::LearnerAdded => {
                    let ch = self.attached(channel)?;
                    let detail = if cut_over(&ch, &from, &to) {
                        "the cutover is already done".to_string()
                    } else {
                        let again = self.learner_again(&ch, &to).await?;
                        let (matched, committed) = self.caught_up(&ch, &to).await?;
                        format!("{to} matched {matched} of committed {committed}{again}")
                    };
                    (MovePhase::CaughtUp, detail)
                }
                MovePhase::CaughtUp => {
                    let ch = self.attached(channel)?;
                    let detail = if cut_over(&ch, &from, &to) {
                        let (_, index) = ch.voters();
                        row.cutover = index;
                        "the cutover is already done".to_string()
                    } else {
                        // Checked again right before the change: the target may have fallen
                        // behind since the phase was committed (a restart, a slow disk), or
                        // its learner entry may have been lost meanwhile.
                        let again = self.learner_again(&ch, &to).await?;
                        self.caught_up(&ch, &to).await?;
                        self.voters_know_target(&ch, &from).await?;
                        let voters = cutover_voters(&ch, &from, &to);
                        let index = ch.change_membership(&voters).await?;
                        row.cutover = Some(index);
                        format!("voters are now {} (index {index}){again}", voters.len())
                    };
                    (MovePhase::CutOver, detail)
                }
                MovePhase::CutOver => {
                    let state = self.wait_handoff(channel, &row, &to).await?;
                    (
                        MovePhase::Left,
                        format!(
                            "{to} applied {} with {} voters, {from} not among them",
                            opt(state.applied),
                            state.voters.len()
                        ),
                    )
                }
                // A forgotten source is asked again: it may be back.
                MovePhase::Left | MovePhase::SourceForgotten => {
                    let cutover = row.cutover.unwrap_or(0);
                    let reply = if from.node_id == self.inner.own {
                        self.cleanup_locked(channel, row.id, cutover)
                            .await
                            .map_err(|e| MoveError::Handoff {
                                channel: channel.to_string(),
                                reason: e.message,
                            })?
                    } else {
                        self.call_cleanup(channel, &row, &from, cutover).await?
                    };
                    let detail = match reply {
                        CleanupReply::Cleaned { pins_removed } => {
                            format!("{from} removed its copy ({pins_removed} pins)")
                        }
                        CleanupReply::AlreadyCleaned => {
                            format!("{from} had already removed its copy")
                        }
                    };
                    (MovePhase::CleanedUp, detail)
                }
                MovePhase::CleanedUp => return record_of(channel, &row),
                MovePhase::Abandoned => return Err(abandoned(channel, row.id)),
            };
            row.phase = next;
            self.write_row(channel, &row).await?;
            net_mesh_segments::failpoint::hit("move.coordinator.after_phase");
            tracing::info!(channel, id = row.id, phase = ?next, detail, "move phase");
            on_phase(&MoveEvent {
                channel: channel.to_string(),
                id: row.id,
                phase: next,
                detail,
            });
        }
    }

    /// Ends the move `id` of `channel` bound on this coordinator without its source's cleanup,
    /// for a source gone for good: the move must have reached `Left` (the target applied a
    /// membership without the source, so the group no longer needs it). Commits
    /// `SourceForgotten` and reports it to `on_phase`; this node is then free for another
    /// move of the channel. The source keeps whatever copy it has; resuming this move (while
    /// no other move replaced its row here) still asks it to clean up. Already forgotten: the
    /// record, reported again. Any other phase or id is a usage error (resume the move, or
    /// abandon it before its cutover). Call it after `resume` failed with `Unreachable` at
    /// `Left`: it does not try the source itself.
    pub async fn forget_source(
        &self,
        channel: &str,
        id: u64,
        mut on_phase: impl FnMut(&MoveEvent) + Send,
    ) -> Result<MoveRecord, MoveError> {
        let lock = self.lock(channel);
        let _held = lock.try_lock().map_err(|_| busy_running(channel))?;
        let mut row = self
            .read_row(channel)
            .await?
            .filter(|r| r.id == id && r.coordinator == *self.inner.own.as_bytes())
            .ok_or_else(|| {
                usage(
                    channel,
                    format!("move {id} is not bound here with this node its coordinator"),
                )
            })?;
        if row.phase != MovePhase::Left && row.phase != MovePhase::SourceForgotten {
            return Err(usage(
                channel,
                format!(
                    "move {id} is at {}: only a move whose source left the group (left) can forget it",
                    row.phase.name()
                ),
            ));
        }
        let from = node_addr(&row.from).map_or_else(|| hex8(&row.from.node_id), |a| a.to_string());
        let detail = format!(
            "{from} was not told to remove its copy; it keeps it until this move runs again while it answers"
        );
        if row.phase == MovePhase::Left {
            row.phase = MovePhase::SourceForgotten;
            self.write_row(channel, &row).await?;
            tracing::warn!(channel, id, detail, "move phase");
        }
        on_phase(&MoveEvent {
            channel: channel.to_string(),
            id,
            phase: MovePhase::SourceForgotten,
            detail,
        });
        record_of(channel, &row)
    }

    /// Adds `to` as a learner again when the group's latest membership lacks it: the learner
    /// entry an earlier step found in the log may not have been committed, and a new leader
    /// may have dropped it. Returns what it did, for the phase's detail.
    pub(super) async fn learner_again(
        &self,
        ch: &ReplicatedChannel,
        to: &NodeAddr,
    ) -> Result<String, MoveError> {
        if in_group(ch, to) {
            return Ok(String::new());
        }
        self.leading(ch)?;
        let index = ch.add_learner_entry(to).await?;
        Ok(format!(" (added again as a learner at index {index})"))
    }

    pub(super) fn leading(&self, ch: &ReplicatedChannel) -> Result<(), MoveError> {
        let status = ch.status();
        if status.is_leader {
            Ok(())
        } else {
            Err(MoveError::NotLeader {
                channel: status.channel,
                leader: status.leader,
            })
        }
    }

    /// Waits (at most `catch_up`) until the target matched the group's committed index, on
    /// the leader. Returns (matched, committed).
    pub(super) async fn caught_up(
        &self,
        ch: &ReplicatedChannel,
        to: &NodeAddr,
    ) -> Result<(u64, u64), MoveError> {
        let started = Instant::now();
        loop {
            let status = ch.status();
            if !status.is_leader {
                return Err(MoveError::NotLeader {
                    channel: status.channel,
                    leader: status.leader,
                });
            }
            let matched = status
                .members
                .iter()
                .find(|m| m.addr.node_id == to.node_id)
                .and_then(|m| m.matched);
            if let (Some(m), Some(c)) = (matched, status.committed)
                && m >= c
            {
                return Ok((m, c));
            }
            if started.elapsed() >= self.inner.config.catch_up {
                return Err(MoveError::NotCaughtUp {
                    channel: status.channel,
                    matched,
                    committed: status.committed,
                    waited: started.elapsed(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (at most `catch_up`) until every voter that stays holds the membership entry
    /// that made the target a member: a voter without it would refuse the target's raft calls
    /// (admission reads the callee's own latest membership), so once the target led, that
    /// voter could never catch up (the simulation's seed 24 shows it).
    pub(super) async fn voters_know_target(
        &self,
        ch: &ReplicatedChannel,
        from: &NodeAddr,
    ) -> Result<(), MoveError> {
        let started = Instant::now();
        loop {
            let status = ch.status();
            if !status.is_leader {
                return Err(MoveError::NotLeader {
                    channel: status.channel,
                    leader: status.leader,
                });
            }
            let (voters, entry) = ch.voters();
            let entry = entry.unwrap_or(0);
            let behind = status
                .members
                .iter()
                .filter(|m| m.addr.node_id != from.node_id)
                .filter(|m| voters.contains(&raft_id(&m.addr.node_id)))
                .find(|m| m.matched.is_none_or(|matched| matched < entry));
            let Some(behind) = behind else {
                return Ok(());
            };
            if started.elapsed() >= self.inner.config.catch_up {
                return Err(MoveError::VoterBehind {
                    channel: status.channel,
                    voter: behind.addr.clone(),
                    matched: behind.matched,
                    entry,
                    waited: started.elapsed(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Asks the target, until `handoff` passes, for its applied state until it shows the
    /// handoff (see [`verify_handoff`]).
    pub(super) async fn wait_handoff(
        &self,
        channel: &str,
        row: &MoveRow,
        to: &NodeAddr,
    ) -> Result<HandoffState, MoveError> {
        let started = Instant::now();
        let mut wait = Duration::from_millis(50);
        loop {
            let answer = self.ask_state(channel, row, to).await;
            let failure = match answer {
                Ok(state) => match verify_handoff(row, &state, row.cutover.unwrap_or(0), None) {
                    Ok(()) => return Ok(state),
                    Err(reason) => MoveError::Handoff {
                        channel: channel.to_string(),
                        reason,
                    },
                },
                Err(e) => e,
            };
            if started.elapsed() >= self.inner.config.handoff {
                return Err(failure);
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(1));
        }
    }

    /// The target's applied state, by `move/v1/state` on a session pinned to its node id.
    pub(super) async fn ask_state(
        &self,
        channel: &str,
        row: &MoveRow,
        to: &NodeAddr,
    ) -> Result<HandoffState, MoveError> {
        self.call(channel, to, METHOD_MOVE_STATE, &StateRequest { id: row.id })
            .await
    }

    pub(super) async fn call_cleanup(
        &self,
        channel: &str,
        row: &MoveRow,
        from: &NodeAddr,
        cutover: u64,
    ) -> Result<CleanupReply, MoveError> {
        self.call(
            channel,
            from,
            METHOD_MOVE_CLEANUP,
            &CleanupRequest {
                id: row.id,
                cutover,
            },
        )
        .await
    }

    pub(super) async fn call<Req: Serialize, Resp: serde::de::DeserializeOwned + Serialize>(
        &self,
        channel: &str,
        node: &NodeAddr,
        method: &str,
        req: &Req,
    ) -> Result<Resp, MoveError> {
        self.call_answer(channel, node, method, req)
            .await?
            .map_err(|e| answer_error(channel, node, method, &e))
    }

    /// `method` on a session pinned to `node`: the node's answer, or why it was not reached.
    pub(super) async fn call_answer<
        Req: Serialize,
        Resp: serde::de::DeserializeOwned + Serialize,
    >(
        &self,
        channel: &str,
        node: &NodeAddr,
        method: &str,
        req: &Req,
    ) -> Result<Result<Resp, RpcError>, MoveError> {
        let endpoint = self.attached(channel)?.endpoint.clone();
        let unreachable = |reason: String| MoveError::Unreachable {
            channel: channel.to_string(),
            node: node.clone(),
            reason,
        };
        let timeout = self.inner.config.call_timeout;
        let session = tokio::time::timeout(timeout, endpoint.connect_node(node))
            .await
            .map_err(|_| unreachable(format!("dial: no answer in {timeout:?}")))?
            .map_err(|e| match e {
                SessionError::Handshake(HandshakeError::UnexpectedPeer { .. }) => {
                    MoveError::WrongNode {
                        channel: channel.to_string(),
                        node: node.clone(),
                        reason: format!("dial: {e}"),
                    }
                }
                e => unreachable(format!("dial: {e}")),
            })?;
        let opts = CallOptions::with_timeout(timeout).metadata(encode_metadata(channel, &[]));
        let answer = session.call_unary::<Req, Resp>(method, req, opts).await;
        // A session lives until closed (or idle for minutes): one per call, closed after it.
        session.close();
        Ok(answer)
    }

    /// Whether the move `old`, bound here with this node as its coordinator (and neither its
    /// source nor its target), was handed to another coordinator: its source refuses this
    /// node's `move/v1/state` because its row names another coordinator, or answers that
    /// another move is bound there.
    /// The refusal is counted on the source like any other. A source that cannot be asked
    /// leaves it unknown: no.
    pub(super) async fn handed_over(&self, channel: &str, old: &MoveRow) -> bool {
        let Some(from) = node_addr(&old.from) else {
            return false;
        };
        let asked = self
            .call_answer::<StateRequest, HandoffState>(
                channel,
                &from,
                METHOD_MOVE_STATE,
                &StateRequest { id: old.id },
            )
            .await;
        // `FailedPrecondition`: the source is bound to another move now, which it binds only
        // once its row of this one is cleaned up (a source's row gives way to nothing else):
        // this move finished.
        matches!(asked, Ok(Err(e)) if e.kind == ErrorKind::PermissionDenied || e.kind == ErrorKind::FailedPrecondition)
    }
}
