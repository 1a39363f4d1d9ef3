//! The source's and the target's side: the `move/v1/*` methods, their admission (only the
//! coordinator a row names, on its authenticated session), and the source's cleanup (C-1).

use super::*;

impl Moves {
    /// The source's side of `move/v1/cleanup` (and the coordinator's own cleanup when it is
    /// the source), with the channel's lock held.
    pub(super) async fn cleanup_locked(
        &self,
        channel: &str,
        id: u64,
        cutover: u64,
    ) -> Result<CleanupReply, RpcError> {
        let precondition = |reason: String| {
            self.inner.spurious.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(channel, id, reason, "move cleanup changed nothing");
            RpcError::new(ErrorKind::FailedPrecondition, reason)
        };
        let row = self
            .read_row(channel)
            .await
            .map_err(|e| RpcError::new(ErrorKind::Unavailable, e.to_string()))?;
        let Some(row) = row else {
            return Err(precondition("no move of the channel is bound here".into()));
        };
        if row.id != id {
            return Err(precondition(format!(
                "cleanup for move {id}, but move {} is bound here",
                row.id
            )));
        }
        if row.from.node_id != *self.inner.own.as_bytes() {
            return Err(precondition("this node is not the move's source".into()));
        }
        if row.phase == MovePhase::Abandoned {
            return Err(precondition(format!("move {id} was abandoned")));
        }
        if row.phase == MovePhase::CleanedUp {
            // A cleanup cut off after its commit may have left the group registered.
            self.detach_removed(channel, MovePhase::CleanedUp);
            self.inner.spurious.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                channel,
                id,
                "repeated move cleanup: the copy is already gone"
            );
            return Ok(CleanupReply::AlreadyCleaned);
        }
        let Some(to) = node_addr(&row.to) else {
            return Err(precondition(
                "the bound target has an invalid node id".into(),
            ));
        };
        // What this node applied: the target must hold at least that.
        let own_applied = self
            .read_state(channel)
            .await
            .map_err(|e| RpcError::new(ErrorKind::Unavailable, e.to_string()))?
            .and_then(|s| s.last_applied)
            .map(|l| l.index);
        let state = self
            .ask_state(channel, &row, &to)
            .await
            .map_err(|e| precondition(format!("could not ask the target: {e}")))?;
        verify_handoff(&row, &state, cutover, own_applied).map_err(precondition)?;
        let done = MoveRow {
            phase: MovePhase::CleanedUp,
            cutover: Some(cutover),
            ..row
        };
        let removed = self.remove_copy(channel, done).await?;
        tracing::info!(
            channel,
            id,
            pins_removed = removed,
            "moved channel's copy removed"
        );
        Ok(CleanupReply::Cleaned {
            pins_removed: removed,
        })
    }

    /// Stops this node's group of `channel` and removes its copy: unpins every pin of the
    /// channel and forgets its raft state, committing `done` as its move row in the same
    /// transaction; then unregisters the channel. Returns the pins removed. With the
    /// channel's lock held.
    pub(super) async fn remove_copy(&self, channel: &str, done: MoveRow) -> Result<u64, RpcError> {
        let how = done.phase;
        // The group stops but stays registered until the copy is forgotten: a removal cut
        // off anywhere before that (a failed commit, a dropped call) is retried in full, and
        // a retry needs the registration (a source's to reach the target).
        if let Ok(ch) = self.attached(channel)
            && let Err(e) = ch.shutdown().await
        {
            tracing::warn!(channel, error = %e, "stopping the channel's group");
        }
        net_mesh_segments::failpoint::hit("move.remove_copy.before_commit");
        if net_mesh_segments::failpoint::fails("move.remove_copy.commit") {
            // As a commit that failed: nothing of it written, the process going on.
            return Err(RpcError::new(
                ErrorKind::Unavailable,
                "committing the removal failed: injected (failpoint error:move.remove_copy.commit)",
            ));
        }
        let store = self.inner.store.clone();
        let ch = channel.to_string();
        let removed = tokio::task::spawn_blocking(move || -> Result<u64, StoreError> {
            let listing = store.pins_in(&ch)?;
            let ids: Vec<[u8; 32]> = listing
                .pins
                .iter()
                .map(|(id, _)| *id)
                .chain(listing.bad.iter().map(|b| b.id))
                .collect();
            let outcome = store.commit_pin_changes(
                &ch,
                &[],
                &ids,
                vec![Box::new(RaftWrite {
                    channel: ch.clone(),
                    change: Change::Forget(done),
                })],
            )?;
            Ok(outcome.pins_removed)
        })
        .await
        .map_err(|e| RpcError::new(ErrorKind::Internal, e.to_string()))?
        .map_err(|e| RpcError::new(ErrorKind::Unavailable, e.to_string()))?;
        net_mesh_segments::failpoint::hit("move.remove_copy.after_commit");
        self.detach_removed(channel, how);
        Ok(removed)
    }

    /// Adds the move methods to `router`.
    pub fn routes(&self, router: Router) -> Router {
        router
            .unary(METHOD_MOVE_CLEANUP, CleanupHandler(self.clone()))
            .unary(METHOD_MOVE_STATE, StateHandler(self.clone()))
            .unary(METHOD_MOVE_ABANDON, AbandonHandler(self.clone()))
    }

    /// The admission check of a call: `None` for a method that is not a move method;
    /// otherwise `Ok` only when the metadata names a channel with a move bound on this node
    /// and the session's authenticated peer is the one that move admits for the method:
    /// `move/v1/cleanup` and `move/v1/abandon` its coordinator, `move/v1/state` its
    /// coordinator or its source.
    /// Every refusal is counted ([`Moves::phase_rejections`]) and logged.
    pub fn authorize_call(
        &self,
        peer: &PeerIdentity,
        method: &str,
        metadata: &[u8],
    ) -> Option<Result<(), Denied>> {
        if !method.starts_with(MOVE_METHOD_PREFIX) {
            return None;
        }
        Some(
            self.admit(&peer.node_id(), method, metadata)
                .map(|_| ())
                .map_err(|e| Denied::new(e.message)),
        )
    }

    /// The call's channel, bound move and (for `move/v1/state`) the previous move this node
    /// was the target of, if `peer` may send `method` for one of those moves.
    pub(super) fn admit(
        &self,
        peer: &NodeId,
        method: &str,
        metadata: &[u8],
    ) -> Result<(String, MoveRow, Option<MoveRow>), RpcError> {
        let refuse = |channel: &str, why: String| self.refuse(channel, peer, method, why);
        let channel = match decode_metadata(metadata) {
            Ok(m) => m.channel,
            Err(e) => return Err(refuse("", format!("move call metadata: {e}"))),
        };
        let row = match self
            .inner
            .store
            .read_extension(NAMESPACE, |r| read_move(r, &channel))
        {
            Ok(Some(row)) => row,
            Ok(None) => {
                return Err(refuse(
                    &channel,
                    format!("no move of channel {channel} is bound on this node"),
                ));
            }
            Err(e) => return Err(refuse(&channel, format!("reading the bound move: {e}"))),
        };
        let previous = match method {
            METHOD_MOVE_STATE => match self
                .inner
                .store
                .read_extension(NAMESPACE, |r| read_previous_move(r, &channel))
            {
                Ok(previous) => previous.filter(|p| p.to.node_id == *self.inner.own.as_bytes()),
                Err(e) => {
                    return Err(refuse(&channel, format!("reading the previous move: {e}")));
                }
            },
            _ => None,
        };
        let allowed = match method {
            METHOD_MOVE_CLEANUP | METHOD_MOVE_ABANDON => row.coordinator == *peer.as_bytes(),
            METHOD_MOVE_STATE => {
                may_ask_state(&row, peer)
                    || previous.as_ref().is_some_and(|p| may_ask_state(p, peer))
            }
            _ => false,
        };
        if !allowed {
            return Err(refuse(
                &channel,
                format!(
                    "node {peer} may not send {method} for move {} of channel {channel}",
                    row.id
                ),
            ));
        }
        Ok((channel, row, previous))
    }

    /// A refused phase message: counted, logged, `PermissionDenied`.
    pub(super) fn refuse(
        &self,
        channel: &str,
        peer: &NodeId,
        method: &str,
        why: String,
    ) -> RpcError {
        self.inner.rejections.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(channel, %peer, method, why, "move phase message refused");
        RpcError::new(ErrorKind::PermissionDenied, why)
    }
}

/// `move/v1/cleanup` (the source's side).
struct CleanupHandler(Moves);

impl RpcUnaryHandler for CleanupHandler {
    type Req = CleanupRequest;
    type Resp = CleanupReply;

    async fn call(&self, ctx: RpcContext, req: CleanupRequest) -> Result<CleanupReply, RpcError> {
        let (channel, _, _) =
            self.0
                .admit(&ctx.peer().node_id(), METHOD_MOVE_CLEANUP, ctx.metadata())?;
        let lock = self.0.lock(&channel);
        let _held = lock.lock().await;
        // Checked again under the lock: the binding may have changed meanwhile.
        self.0
            .admit(&ctx.peer().node_id(), METHOD_MOVE_CLEANUP, ctx.metadata())?;
        self.0.cleanup_locked(&channel, req.id, req.cutover).await
    }
}

/// `move/v1/abandon` (the source's and the target's side).
struct AbandonHandler(Moves);

impl RpcUnaryHandler for AbandonHandler {
    type Req = AbandonRequest;
    type Resp = AbandonReply;

    async fn call(&self, ctx: RpcContext, req: AbandonRequest) -> Result<AbandonReply, RpcError> {
        let (channel, _, _) =
            self.0
                .admit(&ctx.peer().node_id(), METHOD_MOVE_ABANDON, ctx.metadata())?;
        let lock = self.0.lock(&channel);
        let _held = lock.lock().await;
        // Checked again under the lock: the binding may have changed meanwhile.
        self.0
            .admit(&ctx.peer().node_id(), METHOD_MOVE_ABANDON, ctx.metadata())?;
        self.0.abandon_locked(&channel, req.id).await
    }
}

/// `move/v1/state` (the target's side).
struct StateHandler(Moves);

impl RpcUnaryHandler for StateHandler {
    type Req = StateRequest;
    type Resp = HandoffState;

    async fn call(&self, ctx: RpcContext, req: StateRequest) -> Result<HandoffState, RpcError> {
        let peer = ctx.peer().node_id();
        let (channel, row, previous) = self.0.admit(&peer, METHOD_MOVE_STATE, ctx.metadata())?;
        let asked = if row.id == req.id {
            Some(&row)
        } else {
            previous.as_ref().filter(|p| p.id == req.id)
        };
        match asked {
            Some(asked) if may_ask_state(asked, &peer) => {}
            Some(asked) => {
                return Err(self.0.refuse(
                    &channel,
                    &peer,
                    METHOD_MOVE_STATE,
                    format!(
                        "node {peer} may not ask the state of move {} of channel {channel}",
                        asked.id
                    ),
                ));
            }
            None if may_ask_state(&row, &peer) => {
                return Err(RpcError::new(
                    ErrorKind::FailedPrecondition,
                    format!(
                        "state of move {}, but move {} is bound here",
                        req.id, row.id
                    ),
                ));
            }
            None => {
                return Err(self.0.refuse(
                    &channel,
                    &peer,
                    METHOD_MOVE_STATE,
                    format!(
                        "node {peer} may not ask the state of move {} of channel {channel}",
                        req.id
                    ),
                ));
            }
        }
        let unavailable =
            |e: &dyn std::fmt::Display| RpcError::new(ErrorKind::Unavailable, e.to_string());
        if row.id != req.id {
            // The previous move: what this node applied when its row gave way (a row kept
            // before that was stored: the applied state now).
            let stored = self
                .0
                .read_previous_handoff(&channel)
                .await
                .map_err(|e| unavailable(&e))?;
            if let Some(stored) = stored {
                return Ok(stored);
            }
        }
        self.0
            .handoff_state(&channel)
            .await
            .map_err(|e| unavailable(&e))
    }
}
