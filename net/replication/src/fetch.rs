//! Fetching a pin's objects from other members before the pin is applied
//! (docs/REPLICATION.md §5).
//!
//! A member that must apply a pin whose objects its store lacks asks the other members for
//! them over authenticated sessions dialed pinned to their node ids (the storage node's
//! `node/v1/objects` call, which every member serves to the others with read on it): first the
//! member that led the term the entry was written in (it held the objects when it proposed),
//! then the others. The walk is the storage node's own (`net_mesh_node::pull::fetch_blob`):
//! children before parents, only what the store lacks, every object verified against its id
//! before it is stored, one object plus at most `NODE_BATCH` nodes per tree level in memory.
//! The importer holds what it found and stored until its last commit, which carries the pin
//! and the applied state.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use net_mesh_engine::codec::Hash;
use net_mesh_engine::{BlobRef, ErrorClass, Importer};
use net_mesh_node::call_token::encode_metadata;
use net_mesh_node::pull::fetch_blob;
use net_mesh_node::{NodeClient, NodeError};
use net_mesh_rpc::rpc::client::CallOptions;
use net_mesh_rpc::{NodeAddr, NodeId};
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::network::{METHOD_PINNED, Reply};
use crate::sessions::Sessions;
use crate::types::{Member, StoredMembership};

/// How long dialing a member may take.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a member's object stream may bring nothing before that member is given up on.
pub const SILENCE_TIMEOUT: Duration = Duration::from_secs(30);
/// The first wait after every member failed; it doubles up to [`FETCH_BACKOFF_MAX`].
pub const FETCH_BACKOFF_MIN: Duration = Duration::from_millis(100);
/// The longest wait between two rounds over the members.
pub const FETCH_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Object streams this node runs at once from one member, over all its channels, unless
/// [`crate::Replication::with_member_streams`] says otherwise: half of a node's default
/// `max_streams_per_peer` (16), so the member still has room for this node's other reads.
pub const MEMBER_STREAMS: usize = 8;

/// How long a member may take to answer `raft/v1/pinned` (after the dial, which may take
/// [`DIAL_TIMEOUT`]).
pub const PINNED_TIMEOUT: Duration = Duration::from_secs(10);

/// `raft/v1/pinned` request: the id of a blob (the channel is named by the call metadata,
/// like every `raft/v1/*` call).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinnedRequest {
    pub blob_id: Hash,
}

/// `raft/v1/pinned` answer: the callee's last applied log index of the channel and whether
/// the blob is pinned there, both read under its state machine's commit lock (one point
/// between two commits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinnedState {
    pub applied: Option<u64>,
    pub pinned: bool,
}

impl PinnedState {
    /// Whether a pin of the blob by the entry (or in the snapshot) at `index` was undone by
    /// a committed entry after it: the member applied `index` or past it and does not pin
    /// the blob. A pin goes only by an unpin or by installing a snapshot of a later state,
    /// and a member applies only committed entries (one that skipped such a pin itself did
    /// so because another member showed the same of a point no later).
    pub fn unpinned_after(&self, index: u64) -> bool {
        self.applied.is_some_and(|a| a >= index) && !self.pinned
    }
}

/// The object streams this node runs from each member, over all its channels: a fetch waits
/// for its turn here. A member lets one peer identity run `max_streams_per_peer` streams at
/// once and refuses one more as busy, so without this a node fetching for many channels (or
/// many pins of one channel) from one leader at once had its prefetches refused and the
/// leader's proposals failed `NotDurable`.
#[derive(Debug)]
pub(crate) struct MemberStreams {
    per_member: usize,
    members: Mutex<HashMap<NodeId, Arc<Semaphore>>>,
}

impl MemberStreams {
    pub(crate) fn new(per_member: usize) -> MemberStreams {
        MemberStreams {
            per_member: per_member.max(1),
            members: Mutex::default(),
        }
    }

    /// Waits until fewer than the share of streams from `member` run; the permit is one.
    async fn turn(&self, member: &NodeId) -> Result<OwnedSemaphorePermit, NodeError> {
        let semaphore = {
            let mut members = self.members.lock().unwrap_or_else(|p| p.into_inner());
            members
                .entry(*member)
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_member)))
                .clone()
        };
        // No semaphore is ever closed; were one, the fetch would stop like a shutdown.
        semaphore.acquire_owned().await.map_err(|_| stopped())
    }
}

/// Counters of the objects this node fetched for a channel's pins.
#[derive(Debug, Default)]
pub struct FetchStats {
    objects: AtomicU64,
    bytes: AtomicU64,
    source_failures: AtomicU64,
    rounds_failed: AtomicU64,
    pins_skipped: AtomicU64,
}

/// [`FetchStats`] read at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FetchCounts {
    /// Objects received, verified and stored.
    pub objects: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Attempts at one member that failed: unreachable, refused, lacking an object, or
    /// sending bytes that do not verify (nothing of such an object is stored).
    pub source_failures: u64,
    /// Rounds in which every other member failed (followed by a backoff and another round).
    pub rounds_failed: u64,
    /// Pins applied (or left out of a snapshot install) without their objects: no member
    /// gave them, and one that applied past the pin does not pin the blob any more (a later
    /// committed entry unpinned it; docs/REPLICATION.md §5).
    pub pins_skipped: u64,
}

impl FetchStats {
    pub fn counts(&self) -> FetchCounts {
        FetchCounts {
            objects: self.objects.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            source_failures: self.source_failures.load(Ordering::Relaxed),
            rounds_failed: self.rounds_failed.load(Ordering::Relaxed),
            pins_skipped: self.pins_skipped.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn source_failed(&self) {
        self.source_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn round_failed(&self) {
        self.rounds_failed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn pins_skipped(&self, pins: u64) {
        self.pins_skipped.fetch_add(pins, Ordering::Relaxed);
    }
}

/// What a state machine needs to fetch: the node's data sessions to the members, its own node
/// id, the runtime the sessions live on, and the token that stops it (the channel's shutdown).
#[derive(Debug, Clone)]
pub struct Fetcher {
    pub(crate) sessions: Sessions,
    pub(crate) member_streams: Arc<MemberStreams>,
    pub(crate) own: NodeId,
    pub(crate) runtime: Handle,
    pub(crate) stop: CancellationToken,
    pub(crate) stats: Arc<FetchStats>,
}

impl Fetcher {
    pub(crate) fn new(
        sessions: Sessions,
        member_streams: Arc<MemberStreams>,
        runtime: Handle,
        stop: CancellationToken,
    ) -> Fetcher {
        Fetcher {
            own: sessions.endpoint().identity().node_id(),
            sessions,
            member_streams,
            runtime,
            stop,
            stats: Arc::default(),
        }
    }

    pub fn stats(&self) -> Arc<FetchStats> {
        self.stats.clone()
    }

    /// The members to fetch from, in order: the one with raft id `first` (the leader that
    /// wrote the entry), then the others of `membership` in raft id order; never this node.
    pub(crate) fn sources(&self, membership: &StoredMembership, first: u64) -> Vec<NodeAddr> {
        let nodes: Vec<(&u64, &Member)> = membership.membership().nodes().collect();
        let leader = nodes.iter().filter(|(id, _)| **id == first);
        let others = nodes.iter().filter(|(id, _)| **id != first);
        leader
            .chain(others)
            .filter_map(|(_, m)| m.addr())
            .filter(|a| a.node_id != self.own)
            .collect()
    }

    /// Brings every object of `blob_ref` that the store lacks from `source` (on the node's data
    /// session to it, dialed pinned to its node id if there is none) into `importer`
    /// (verified, children first), once this node runs fewer than its share of streams from
    /// `source` ([`MemberStreams`]). Blocking: runs on a blocking thread. Any failure is the
    /// source's (or the stop's; a session the source sent nothing on meanwhile is dropped);
    /// the caller tries another member.
    pub(crate) fn fetch_from(
        &self,
        source: &NodeAddr,
        importer: &mut Importer<'_>,
        blob_ref: &BlobRef,
    ) -> Result<(), NodeError> {
        let _turn = self.runtime.block_on(async {
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => Err(stopped()),
                turn = self.member_streams.turn(&source.node_id) => turn,
            }
        })?;
        let session = self.runtime.block_on(async {
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => Err(stopped()),
                dialed = tokio::time::timeout(DIAL_TIMEOUT, self.sessions.get(source)) => {
                    match dialed {
                        Err(_) => Err(NodeError::new(ErrorClass::Io, format!("dialing {source}: no answer in {DIAL_TIMEOUT:?}"))),
                        Ok(Err(e)) => Err(NodeError::new(ErrorClass::Io, format!("dialing {source}: {e}"))),
                        Ok(Ok(s)) => Ok(s),
                    }
                }
            }
        })?;
        let client = NodeClient::on_shared_session(session.session.clone())
            .with_silence_timeout(SILENCE_TIMEOUT);
        let stats = &self.stats;
        let mut received = |bytes: &[u8]| {
            stats.objects.fetch_add(1, Ordering::Relaxed);
            stats.bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        };
        let fetched = fetch_blob(
            importer,
            &client,
            &self.runtime,
            &self.stop,
            blob_ref,
            &mut received,
        );
        if fetched.is_err() {
            self.sessions.call_failed(source, &session);
        }
        fetched
    }
}

impl Fetcher {
    /// The first of `sources` to answer that it applied `index` or past it and does not pin
    /// blob `id` in `channel` any more ([`PinnedState::unpinned_after`]), with its applied
    /// index. All are asked at once (`raft/v1/pinned` on the node's data sessions; each at most
    /// [`DIAL_TIMEOUT`] to dial and [`PINNED_TIMEOUT`] for the answer), so the question takes
    /// one member's time whatever their number; members that do not answer are passed over,
    /// and the channel's shutdown ends the question (`None`).
    /// Blocking: runs on a blocking thread.
    pub(crate) fn unpinned_at(
        &self,
        sources: &[NodeAddr],
        channel: &str,
        id: &Hash,
        index: u64,
    ) -> Option<(NodeAddr, u64)> {
        let mut asks = tokio::task::JoinSet::new();
        for source in sources {
            let (fetcher, source, channel, id) =
                (self.clone(), source.clone(), channel.to_string(), *id);
            asks.spawn_on(
                async move {
                    let state = fetcher.pinned_at(&source, &channel, &id).await;
                    (source, state)
                },
                &self.runtime,
            );
        }
        self.runtime.block_on(async {
            loop {
                let answer = tokio::select! {
                    biased;
                    _ = self.stop.cancelled() => return None,
                    answer = asks.join_next() => answer?,
                };
                match answer {
                    Ok((source, Ok(state))) if state.unpinned_after(index) => {
                        return Some((source, state.applied.unwrap_or(index)));
                    }
                    Ok((_, Ok(_))) => {}
                    Ok((source, Err(e))) => {
                        tracing::debug!(channel, index, source = %source, error = %e, "a member did not say whether it pins the blob");
                    }
                    Err(e) => {
                        tracing::debug!(channel, index, error = %e, "asking a member whether it pins the blob failed");
                    }
                }
            }
        })
    }

    /// Asks `source` whether it pins blob `id` in `channel` and how far it applied.
    async fn pinned_at(
        &self,
        source: &NodeAddr,
        channel: &str,
        id: &Hash,
    ) -> Result<PinnedState, NodeError> {
        let request = PinnedRequest { blob_id: *id };
        let metadata = encode_metadata(channel, &[]);
        let held = match tokio::time::timeout(DIAL_TIMEOUT, self.sessions.get(source)).await {
            Err(_) => {
                return Err(NodeError::new(
                    ErrorClass::Io,
                    format!("dialing {source}: no answer in {DIAL_TIMEOUT:?}"),
                ));
            }
            Ok(Err(e)) => {
                return Err(NodeError::new(
                    ErrorClass::Io,
                    format!("dialing {source}: {e}"),
                ));
            }
            Ok(Ok(held)) => held,
        };
        let opts = CallOptions::with_timeout(PINNED_TIMEOUT).metadata(metadata);
        let answer = held
            .session
            .call_unary::<PinnedRequest, Reply<PinnedState>>(METHOD_PINNED, &request, opts)
            .await;
        if answer.is_err() {
            self.sessions.call_failed(source, &held);
        }
        match answer {
            Ok(Reply::Ok(state)) => Ok(state),
            Ok(Reply::Stopped(why)) => Err(NodeError::new(
                ErrorClass::Busy,
                format!("{source}: stopped: {why}"),
            )),
            Ok(Reply::SnapshotMismatch(_)) => Err(NodeError::new(
                ErrorClass::Io,
                format!("{source}: unexpected answer"),
            )),
            Err(e) => Err(NodeError::new(ErrorClass::Io, format!("{source}: {e}"))),
        }
    }
}

pub(crate) fn stopped() -> NodeError {
    NodeError::new(ErrorClass::Busy, "the channel is shutting down")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_messages_golden_bytes() -> Result<(), postcard::Error> {
        let request = PinnedRequest { blob_id: [7; 32] };
        assert_eq!(postcard::to_allocvec(&request)?, vec![7; 32]);
        let answer = Reply::Ok(PinnedState {
            applied: Some(8),
            pinned: false,
        });
        assert_eq!(postcard::to_allocvec(&answer)?, vec![0, 1, 8, 0]);
        Ok(())
    }

    #[test]
    fn only_a_member_that_applied_the_pin_and_holds_it_no_more_shows_it_undone() {
        let state = |applied, pinned| PinnedState { applied, pinned };
        assert!(state(Some(9), false).unpinned_after(9));
        assert!(state(Some(12), false).unpinned_after(9));
        // Not there yet: the pin may still come.
        assert!(!state(Some(8), false).unpinned_after(9));
        assert!(!state(None, false).unpinned_after(9));
        // Still pinned there: its objects are there.
        assert!(!state(Some(12), true).unpinned_after(9));
    }
}
