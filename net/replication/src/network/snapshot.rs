//! A snapshot sent to this node, chunk by chunk: put together ([`receive_chunk`]), then got
//! ready to install ([`Preparing`]) before openraft is given it (docs/REPLICATION.md §2).

use super::*;

/// A whole snapshot received, being got ready to install: every committed entry before it
/// applied, and its objects fetched. Only then is openraft given it, so that its install runs
/// at once: openraft answers no vote and no append while an install it queued waits (its
/// commands run in order, and the answer to the install comes first).
/// Replaced by a newer snapshot's (or dropped with the group), it stops.
#[derive(Debug)]
pub(crate) struct Preparing {
    snapshot_id: String,
    /// `true` once ready; closed without it if the preparation failed or stopped.
    ready: tokio::sync::watch::Receiver<bool>,
    _stop: tokio_util::sync::DropGuard,
}

/// How long a snapshot's last chunk waits for its preparation before the answer tells the
/// leader to send it again (below openraft's default `install_snapshot_timeout`, 200 ms, so
/// the leader gets the answer; the preparation goes on meanwhile).
const PREPARE_WAIT: Duration = Duration::from_millis(100);

/// How long a preparation waiting for entries to apply goes without checking again when the
/// group's metrics do not change.
const PREPARE_RECHECK: Duration = Duration::from_secs(1);

/// A snapshot being received, chunk by chunk: its id and the bytes received so far (shared
/// with its [`Preparing`] once whole, so a snapshot being got ready is held once).
#[derive(Debug)]
pub(crate) struct Receiving {
    snapshot_id: String,
    bytes: Arc<Vec<u8>>,
}

/// Starts getting a snapshot ready to install ([`Preparing`]) in a task of its own: waits
/// until the state machine applied every entry the group committed (openraft would queue the
/// install behind them), then fetches the snapshot's missing objects (held, so a gc leaves
/// them); if entries committed during the fetch wait to apply, both steps run again. The
/// answer turns `true` once ready; it closes if the preparation fails or stops.
fn prepare(group: &Group, meta: SnapshotMeta<u64, Member>, bytes: Arc<Vec<u8>>) -> Preparing {
    let (tx, rx) = tokio::sync::watch::channel(false);
    let (sm, raft) = (group.state_machine.clone(), group.raft.clone());
    let stop = sm.stop_child();
    let preparing = Preparing {
        snapshot_id: meta.snapshot_id.clone(),
        ready: rx,
        _stop: stop.clone().drop_guard(),
    };
    let meta = Arc::new(meta);
    tokio::spawn(async move {
        // Applying an entry changes the group's data metrics (`last_applied`; they change
        // only when a value does, unlike `metrics()`, sent on every turn of openraft's loop,
        // the check's own turn included): the wait wakes on that, not on a timer; the
        // fallback only bounds a change they would not show.
        let mut progress = raft.data_metrics();
        loop {
            loop {
                // Seen before the check, so an apply during the check wakes the wait.
                progress.borrow_and_update();
                if applied_all_committed(&raft, &sm).await? {
                    break;
                }
                tokio::select! {
                    () = stop.cancelled() => return None,
                    changed = progress.changed() => changed.ok()?,
                    () = tokio::time::sleep(PREPARE_RECHECK) => {}
                }
            }
            let (fetcher, cancel) = (sm.clone(), stop.clone());
            let (m, b) = (meta.clone(), bytes.clone());
            let fetched =
                tokio::task::spawn_blocking(move || fetcher.fetch_for_install(&m, &b, cancel))
                    .await
                    .ok()?;
            if let Err(e) = fetched {
                tracing::warn!(snapshot = %meta.snapshot_id, error = %e, "getting a received snapshot ready to install failed");
                return None;
            }
            if applied_all_committed(&raft, &sm).await? {
                // Let go first: the hand-over then takes the bytes without a copy.
                drop(bytes);
                return tx.send(true).ok();
            }
        }
    });
    preparing
}

/// Whether the state machine applied every entry the group committed (none if the group or
/// its store failed).
async fn applied_all_committed(raft: &Raft<TypeConfig>, sm: &StateMachine) -> Option<bool> {
    let committed = raft.with_raft_state(|s| s.committed).await.ok()?;
    let sm = sm.clone();
    let applied = tokio::task::spawn_blocking(move || sm.applied_log_id())
        .await
        .ok()?
        .ok()?;
    Some(applied >= committed)
}

/// Adds `req`'s chunk to the snapshot being received, and returns the whole snapshot once its
/// last chunk came. A chunk continues the snapshot of its id at any offset up to what was
/// received: a chunk sent again after a lost answer, whose bytes are received already, is
/// taken as it is (a snapshot id names one snapshot; so the whole snapshot, shared with its
/// preparation, is not copied when its last chunk comes again), any other overwrites from its
/// offset on, and a last chunk ends the snapshot where it ends. A chunk of another snapshot
/// starts over at offset 0. Any other offset is a mismatch, which tells the sender where to go
/// on from. The caller bounds the length ([`within_snapshot_len`]).
pub(crate) fn receive_chunk(
    receiving: &mut Option<Receiving>,
    req: &InstallSnapshotRequest<TypeConfig>,
) -> Result<Option<Arc<Vec<u8>>>, SnapshotMismatch> {
    let id = &req.meta.snapshot_id;
    let received = receiving
        .as_ref()
        .filter(|r| &r.snapshot_id == id)
        .map_or(0, |r| r.bytes.len());
    let offset = usize::try_from(req.offset).unwrap_or(usize::MAX);
    if offset > received {
        return Err(SnapshotMismatch {
            expect: SnapshotSegmentId {
                id: id.clone(),
                offset: received as u64,
            },
            got: SnapshotSegmentId {
                id: id.clone(),
                offset: req.offset,
            },
        });
    }
    if receiving.as_ref().is_some_and(|r| &r.snapshot_id != id) {
        *receiving = None;
    }
    let r = receiving.get_or_insert_with(|| Receiving {
        snapshot_id: id.clone(),
        bytes: Arc::default(),
    });
    let end = offset.saturating_add(req.data.len());
    let received_already = end <= received && (!req.done || end == received);
    if !received_already {
        let bytes = Arc::make_mut(&mut r.bytes);
        bytes.truncate(offset);
        bytes.extend_from_slice(&req.data);
    }
    Ok(if req.done {
        receiving.take().map(|r| r.bytes)
    } else {
        None
    })
}

impl Replication {
    /// A snapshot chunk from `peer` to `channel`'s group, refused past
    /// [`MAX_SNAPSHOT_LEN`] (see [`Replication::deliver_append`]). The chunks are put
    /// together here ([`receive_chunk`]); the whole snapshot is got ready to install
    /// ([`Preparing`]: every committed entry before it applied, its objects fetched) before
    /// openraft is given it (`Raft::install_full_snapshot`). openraft runs
    /// its commands in order and answers no vote and no append behind an install that
    /// waits; until the snapshot is ready, its last chunk is answered `Stopped` (send it
    /// again) while the preparation goes on (docs/REPLICATION.md §2).
    #[doc(hidden)]
    pub async fn deliver_snapshot(
        &self,
        peer: &NodeId,
        channel: &str,
        req: InstallSnapshotRequest<TypeConfig>,
    ) -> Result<Reply<InstallSnapshotResponse<u64>>, RpcError> {
        let group = self.member_group_of(peer, channel)?;
        let leader = self.speaks_for_itself(peer, channel, &req.vote)?;
        well_formed_snapshot(&req).map_err(|why| {
            RpcError::new(
                ErrorKind::InvalidArgument,
                format!("snapshot from {peer}: {why}"),
            )
        })?;
        within_snapshot_len(&req)?;
        let sent_vote = req.vote;
        let (own_vote, committed) = match group
            .raft
            .with_raft_state(|s| (*s.vote_ref(), s.committed))
            .await
        {
            Ok(v) => v,
            Err(e) => return Ok(stopped(e)),
        };
        // A chunk sent under a vote below this member's is not taken (as openraft's own
        // receiver does); the answer carries the member's vote.
        if !sent_vote.partial_cmp(&own_vote).is_some_and(|o| o.is_ge()) {
            return Ok(Reply::Ok(InstallSnapshotResponse { vote: own_vote }));
        }
        let whole = {
            let mut receiving = group.receiving.lock().unwrap_or_else(|p| p.into_inner());
            receive_chunk(&mut receiving, &req)
        };
        let bytes = match whole {
            Err(mismatch) => return Ok(Reply::SnapshotMismatch(mismatch)),
            Ok(None) => {
                // The sender is the leader to fetch from first once the member follows it.
                if own_vote == sent_vote {
                    group.leader_from.store(leader, Ordering::Relaxed);
                    self.heard_from_leader(channel, &group);
                }
                return Ok(Reply::Ok(InstallSnapshotResponse { vote: own_vote }));
            }
            Ok(Some(bytes)) => bytes,
        };
        // One not past the committed index openraft answers at once, installing nothing.
        if req.meta.last_log_id > committed
            && !Replication::prepared(&group, channel, &req.meta, &bytes).await?
        {
            // Kept whole: the leader sends the last chunk again.
            let mut receiving = group.receiving.lock().unwrap_or_else(|p| p.into_inner());
            *receiving = Some(Receiving {
                snapshot_id: req.meta.snapshot_id.clone(),
                bytes,
            });
            return Ok(Reply::Stopped(format!(
                "channel {channel}: snapshot {} is being got ready to install (waiting for \
                 earlier entries to apply, or fetching its objects): send its last chunk again",
                req.meta.snapshot_id
            )));
        }
        // Its preparation (ended) no longer shares the bytes: taken, not copied.
        let bytes = Arc::try_unwrap(bytes).unwrap_or_else(|shared| (*shared).clone());
        let snapshot = Snapshot {
            meta: req.meta,
            snapshot: Box::new(std::io::Cursor::new(bytes)),
        };
        Ok(
            match group.raft.install_full_snapshot(sent_vote, snapshot).await {
                Ok(r) => {
                    // Taken only when the group took the snapshot (it answers a higher vote of
                    // its own otherwise): the sender is then the leader to fetch from first.
                    if r.vote == sent_vote {
                        group.leader_from.store(leader, Ordering::Relaxed);
                        self.heard_from_leader(channel, &group);
                    }
                    Reply::Ok(InstallSnapshotResponse { vote: r.vote })
                }
                Err(e) => stopped(e),
            },
        )
    }

    /// Whether a whole snapshot received is ready to install ([`Preparing`]): the first time
    /// it is seen, its preparation starts (in a task of its own, which goes on when this call
    /// ends); then this waits up to [`PREPARE_WAIT`], and checks once more that every
    /// committed entry is applied.
    async fn prepared(
        group: &Group,
        channel: &str,
        meta: &SnapshotMeta<u64, Member>,
        bytes: &Arc<Vec<u8>>,
    ) -> Result<bool, RpcError> {
        let mut ready = {
            // Held while a preparation starts: a second send of the same last chunk (the
            // leader's, after its call timed out) joins it instead of starting another.
            let mut preparing = group.preparing.lock().await;
            match preparing
                .as_ref()
                .filter(|p| p.snapshot_id == meta.snapshot_id)
            {
                Some(running) => running.ready.clone(),
                None => {
                    let started = prepare(group, meta.clone(), Arc::clone(bytes));
                    let ready = started.ready.clone();
                    // Replaces (and so stops) the preparation of an older snapshot.
                    *preparing = Some(started);
                    ready
                }
            }
        };
        let outcome = tokio::time::timeout(PREPARE_WAIT, ready.wait_for(|r| *r)).await;
        let Ok(outcome) = outcome.map(|seen| seen.map(|_| ())) else {
            return Ok(false);
        };
        // Ready or failed: either way the next snapshot sent starts afresh.
        {
            let mut preparing = group.preparing.lock().await;
            if preparing
                .as_ref()
                .is_some_and(|p| p.ready.same_channel(&ready))
            {
                *preparing = None;
            }
        }
        if outcome.is_ok()
            && applied_all_committed(&group.raft, &group.state_machine).await != Some(true)
        {
            // Entries committed since it was ready wait to apply: made ready again.
            return Ok(false);
        }
        outcome.map(|_| true).map_err(|_| {
            RpcError::new(
                ErrorKind::Unavailable,
                format!(
                    "channel {channel}: getting snapshot {} ready to install failed",
                    meta.snapshot_id
                ),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(id: &str, offset: u64, data: &[u8], done: bool) -> InstallSnapshotRequest<TypeConfig> {
        InstallSnapshotRequest {
            vote: openraft::Vote::new_committed(1, 1),
            meta: openraft::SnapshotMeta {
                last_log_id: None,
                last_membership: openraft::StoredMembership::default(),
                snapshot_id: id.to_string(),
            },
            offset,
            data: data.to_vec(),
            done,
        }
    }

    #[test]
    fn snapshot_chunks_are_put_together_and_a_gap_is_a_mismatch() {
        let mut receiving = None;
        assert_eq!(
            receive_chunk(&mut receiving, &chunk("1-5", 0, b"abcd", false)),
            Ok(None)
        );
        // Sent again after a lost answer: the same bytes, overwritten.
        assert_eq!(
            receive_chunk(&mut receiving, &chunk("1-5", 2, b"cd", false)),
            Ok(None)
        );
        // A gap: the answer says where to go on from; nothing received is lost.
        let gap = receive_chunk(&mut receiving, &chunk("1-5", 9, b"x", false)).unwrap_err();
        assert_eq!((gap.expect.offset, gap.got.offset), (4, 9));
        // A chunk of another snapshot past its start changes nothing either.
        let other = receive_chunk(&mut receiving, &chunk("2-9", 4, b"x", false)).unwrap_err();
        assert_eq!((other.expect.id.as_str(), other.expect.offset), ("2-9", 0));
        assert_eq!(
            receive_chunk(&mut receiving, &chunk("1-5", 4, b"ef", true)),
            Ok(Some(Arc::new(b"abcdef".to_vec())))
        );
        assert!(
            receiving.is_none(),
            "a whole snapshot is handed over, not kept"
        );

        // Another snapshot from its start replaces one half received.
        receive_chunk(&mut receiving, &chunk("1-5", 0, b"old", false)).unwrap();
        assert_eq!(
            receive_chunk(&mut receiving, &chunk("2-9", 0, b"new", true)),
            Ok(Some(Arc::new(b"new".to_vec())))
        );
        assert!(receive_chunk(&mut receiving, &chunk("1-5", 3, b"!", true)).is_err());

        // A whole snapshot kept while its preparation shares it: its last chunk sent again
        // hands the same bytes back, not a copy.
        receive_chunk(&mut receiving, &chunk("3-7", 0, b"abc", false)).unwrap();
        let whole = receive_chunk(&mut receiving, &chunk("3-7", 3, b"def", true))
            .unwrap()
            .unwrap();
        let preparation = Arc::clone(&whole);
        receiving = Some(Receiving {
            snapshot_id: "3-7".into(),
            bytes: whole,
        });
        let again = receive_chunk(&mut receiving, &chunk("3-7", 3, b"def", true))
            .unwrap()
            .unwrap();
        assert!(Arc::ptr_eq(&again, &preparation), "copied");
        // A last chunk ending before what was received ends the snapshot there.
        receiving = Some(Receiving {
            snapshot_id: "3-7".into(),
            bytes: again,
        });
        assert_eq!(
            receive_chunk(&mut receiving, &chunk("3-7", 3, b"d", true)),
            Ok(Some(Arc::new(b"abcd".to_vec())))
        );
        assert_eq!(*preparation, b"abcdef".to_vec(), "the shared bytes changed");
    }
}
