//! Raft messages over nRPC (docs/REPLICATION.md §3): openraft's three unary methods, each
//! request the postcard encoding of openraft's message and each response a [`Reply`], and the
//! leader's prefetch request (`raft/v1/prefetch`, [`crate::prefetch`]); the call metadata
//! names the channel (the node protocol's call metadata, docs/FORMAT.md §5.6, without
//! tokens). Who may call: only an authenticated session whose peer is a member of that
//! channel's group — checked before the call is admitted ([`Replication::authorize_call`]) and
//! again by the handler; every refusal is counted (`replication_peer_auth_rejections`).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use net_mesh_node::call_token::{decode_metadata, encode_metadata};
use net_mesh_rpc::rpc::client::CallOptions;
use net_mesh_rpc::rpc::server::{Denied, Router, RpcContext, RpcUnaryHandler};
use net_mesh_rpc::rpc::{ErrorKind, RpcError};
use net_mesh_rpc::{Endpoint, NodeAddr, NodeId, PeerIdentity};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, SnapshotMismatch,
    Unreachable,
};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{
    EntryPayload, Membership, Raft, RaftNetwork, RaftNetworkFactory, Snapshot, SnapshotMeta,
    SnapshotSegmentId,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use net_mesh_engine::BlobRef;

use crate::fetch::{MEMBER_STREAMS, MemberStreams, PinnedRequest, PinnedState};
use crate::prefetch::{MAX_PREFETCHES_PER_CHANNEL, PrefetchRequest, PrefetchServer, Prefetched};
use crate::sessions::{LaneRefs, Lanes, Sessions};
use crate::state_machine::StateMachine;
use crate::tables::MAX_SNAPSHOT_ID_LEN;
use crate::types::{MAX_OP_LEN, MAX_SNAPSHOT_LEN, Member, TypeConfig, raft_id};

/// Method of openraft's append-entries (also heartbeats).
pub const METHOD_APPEND: &str = "raft/v1/append";
/// Method of openraft's vote.
pub const METHOD_VOTE: &str = "raft/v1/vote";
/// Method of one chunk of openraft's install-snapshot.
pub const METHOD_SNAPSHOT: &str = "raft/v1/snapshot";
/// Method of the leader's prefetch request (docs/REPLICATION.md §5): hold a blob's objects
/// before its pin is proposed.
pub const METHOD_PREFETCH: &str = "raft/v1/prefetch";
/// Method of a member's question whether this node still pins a blob in the channel and how
/// far it applied (docs/REPLICATION.md §5: a pin whose objects no member gives any more).
pub const METHOD_PINNED: &str = "raft/v1/pinned";
/// Prefix of every replication method.
pub const METHOD_PREFIX: &str = "raft/v1/";

/// A handler's answer: openraft's response, or why the group could not handle it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply<T> {
    Ok(T),
    /// The group stopped on the callee (shutdown or a fatal error): the caller backs off.
    Stopped(String),
    /// The snapshot chunk does not continue the snapshot being received.
    SnapshotMismatch(SnapshotMismatch),
}

/// A channel's open under way ([`Replication::claim_open`]); released when dropped.
pub(crate) struct OpenClaim {
    replication: Replication,
    channel: String,
}

impl Drop for OpenClaim {
    fn drop(&mut self) {
        self.replication
            .inner
            .opening
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.channel);
    }
}

/// One replicated channel as the dispatcher sees it.
#[derive(Clone)]
pub(crate) struct Group {
    pub(crate) raft: Raft<TypeConfig>,
    /// Who may call while this node knows no membership of the group yet (a node joining an
    /// existing group admits its current members until the leader's log or snapshot tells it
    /// the membership); ignored once a membership is known.
    pub(crate) bootstrap: Arc<[NodeId]>,
    /// This channel's side of `raft/v1/prefetch`.
    pub(crate) prefetch: Arc<PrefetchServer>,
    /// The raft id of the leader that last sent this node appends or a snapshot (the state
    /// machine fetches a pin's or a snapshot's missing objects from it first).
    pub(crate) leader_from: Arc<AtomicU64>,
    /// The group's state machine (`raft/v1/pinned` reads it; a received snapshot is got
    /// ready to install through it).
    pub(crate) state_machine: StateMachine,
    /// The snapshot being received from a leader, chunk by chunk.
    pub(crate) receiving: Arc<Mutex<Option<Receiving>>>,
    /// The received snapshot being got ready to install ([`Preparing`]).
    pub(crate) preparing: Arc<tokio::sync::Mutex<Option<Preparing>>>,
}

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

/// The replicated channels of one node and the state their nRPC methods share: which channel
/// a call is for, who may call, and the rejection counter. Create one per node, build the
/// node's router with [`Replication::routes`] (and its hook with
/// [`Replication::authorize_call`]), then create or open channels with it.
#[derive(Debug, Clone, Default)]
pub struct Replication {
    inner: Arc<Inner>,
}

struct Inner {
    groups: RwLock<HashMap<String, Group>>,
    peer_auth_rejections: AtomicU64,
    prefetch_rejections: AtomicU64,
    /// The object streams this node's channels run from each member, all channels together.
    member_streams: Arc<MemberStreams>,
    /// The sessions all channels share, per endpoint (by its node id), held weakly.
    lanes: Mutex<HashMap<NodeId, LaneRefs>>,
    /// Parent of every channel's stop ([`Replication::shut_down`]).
    closing: CancellationToken,
    /// Channels being opened ([`Replication::claim_open`]).
    opening: Mutex<HashSet<String>>,
    /// Per channel, the members whose latest answer to this node's raft messages was that
    /// they do not take it as a member ([`Replication::refused_by`]).
    refused: Mutex<HashMap<String, BTreeSet<u64>>>,
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            groups: RwLock::default(),
            peer_auth_rejections: AtomicU64::default(),
            prefetch_rejections: AtomicU64::default(),
            member_streams: Arc::new(MemberStreams::new(MEMBER_STREAMS)),
            lanes: Mutex::default(),
            closing: CancellationToken::new(),
            opening: Mutex::default(),
            refused: Mutex::default(),
        }
    }
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let channels: Vec<String> = self
            .groups
            .read()
            .map(|g| g.keys().cloned().collect())
            .unwrap_or_default();
        f.debug_struct("Replication")
            .field("channels", &channels)
            .field(
                "peer_auth_rejections",
                &self.peer_auth_rejections.load(Ordering::Relaxed),
            )
            .finish()
    }
}

impl Replication {
    pub fn new() -> Replication {
        Replication::default()
    }

    /// A [`Replication`] whose channels run at most `per_member` object streams from one
    /// member at once, all channels together (default [`MEMBER_STREAMS`]); keep it within
    /// the members' `max_streams_per_peer`.
    pub fn with_member_streams(per_member: usize) -> Replication {
        Replication {
            inner: Arc::new(Inner {
                member_streams: Arc::new(MemberStreams::new(per_member)),
                ..Inner::default()
            }),
        }
    }

    pub(crate) fn member_streams(&self) -> Arc<MemberStreams> {
        self.inner.member_streams.clone()
    }

    /// The sessions this node's channels share to reach the members from `endpoint`.
    pub(crate) fn lanes(&self, endpoint: &Endpoint) -> Lanes {
        let mut lanes = self.inner.lanes.lock().unwrap_or_else(|p| p.into_inner());
        lanes
            .entry(endpoint.identity().node_id())
            .or_default()
            .lanes(endpoint)
    }

    /// Closes the shared sessions when no channel runs on this node any more.
    pub(crate) fn close_sessions_if_idle(&self) {
        let groups = self.inner.groups.read().unwrap_or_else(|p| p.into_inner());
        if groups.is_empty() {
            let lanes = self.inner.lanes.lock().unwrap_or_else(|p| p.into_inner());
            for l in lanes.values() {
                l.close_all();
            }
        }
    }

    /// Cancels the work of channels still opening from this [`Replication`] (a channel
    /// finishing an interrupted snapshot install at open waits for a member to give the
    /// objects until then) and is the parent of every channel's stop. For a node shutting
    /// down: channels opened afterwards start stopped.
    pub fn shut_down(&self) {
        self.inner.closing.cancel();
    }

    pub(crate) fn closing(&self) -> &CancellationToken {
        &self.inner.closing
    }

    /// Calls refused because the peer is not a member of the channel's group (or named no
    /// replicated channel): `replication_peer_auth_rejections`.
    pub fn peer_auth_rejections(&self) -> u64 {
        self.inner.peer_auth_rejections.load(Ordering::Relaxed)
    }

    /// Prefetch requests refused because the channel already ran
    /// [`MAX_PREFETCHES_PER_CHANNEL`] of them (`replication_prefetch_rejections`).
    pub fn prefetch_rejections(&self) -> u64 {
        self.inner.prefetch_rejections.load(Ordering::Relaxed)
    }

    /// Adds the five replication methods to `router`.
    pub fn routes(&self, router: Router) -> Router {
        router
            .unary(METHOD_APPEND, AppendHandler(self.clone()))
            .unary(METHOD_VOTE, VoteHandler(self.clone()))
            .unary(METHOD_SNAPSHOT, SnapshotHandler(self.clone()))
            .unary(METHOD_PREFETCH, PrefetchHandler(self.clone()))
            .unary(METHOD_PINNED, PinnedHandler(self.clone()))
    }

    /// A router with only the replication methods and [`Replication::authorize_call`] as its
    /// hook (a node composes its own hook with `authorize_call` instead).
    pub fn router(&self) -> Router {
        let me = self.clone();
        self.routes(Router::new()).authorize(
            move |peer: &PeerIdentity, method: &str, metadata: &[u8]| {
                me.authorize_call(peer, method, metadata).unwrap_or(Ok(()))
            },
        )
    }

    /// The admission check of a call: `None` for a method that is not a replication method;
    /// otherwise `Ok` only when the metadata names a channel replicated here whose current
    /// membership (voters and learners; the latest one this node has, committed or not)
    /// includes the session's authenticated peer. A node that has joined but knows no
    /// membership yet admits only the members it was told at join.
    pub fn authorize_call(
        &self,
        peer: &PeerIdentity,
        method: &str,
        metadata: &[u8],
    ) -> Option<Result<(), Denied>> {
        if !method.starts_with(METHOD_PREFIX) {
            return None;
        }
        Some(
            self.member_group(&peer.node_id(), metadata)
                .map(|_| ())
                .map_err(|e| Denied(e.message)),
        )
    }

    /// Claims `channel` for an open (held until the open ends, its group registered or not):
    /// none while its group runs here or another open of it is under way (an open may take
    /// long: it finishes an interrupted snapshot install first, and two at once would install
    /// it twice and start two groups on one store).
    pub(crate) fn claim_open(&self, channel: &str) -> Option<OpenClaim> {
        let groups = self.inner.groups.read().unwrap_or_else(|p| p.into_inner());
        let mut opening = self.inner.opening.lock().unwrap_or_else(|p| p.into_inner());
        if groups.contains_key(channel) || !opening.insert(channel.to_string()) {
            return None;
        }
        Some(OpenClaim {
            replication: self.clone(),
            channel: channel.to_string(),
        })
    }

    pub(crate) fn insert(&self, channel: &str, group: Group) -> bool {
        let mut groups = self.inner.groups.write().unwrap_or_else(|p| p.into_inner());
        if groups.contains_key(channel) {
            return false;
        }
        groups.insert(channel.to_string(), group);
        self.forget_refusals(channel);
        true
    }

    pub(crate) fn remove(&self, channel: &str) {
        self.inner
            .groups
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(channel);
        self.forget_refusals(channel);
    }

    fn forget_refusals(&self, channel: &str) {
        self.inner
            .refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(channel);
    }

    /// Notes how member `target` answered this node's raft message for `channel`: refused at
    /// admission (it does not take this node as a member of the group) or taken.
    fn note_answer(&self, channel: &str, target: u64, refused: bool) {
        let mut all = self.inner.refused.lock().unwrap_or_else(|p| p.into_inner());
        if refused {
            all.entry(channel.to_string()).or_default().insert(target);
        } else if let Some(members) = all.get_mut(channel) {
            members.remove(&target);
        }
    }

    /// The members (raft ids) whose latest answer to this node's raft messages for `channel`
    /// (votes it asked for, appends it sent) was a refusal at admission: they do not take this
    /// node as a member of the group (a member removed while it was away hears this).
    pub(crate) fn refused_by(&self, channel: &str) -> BTreeSet<u64> {
        self.inner
            .refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(channel)
            .cloned()
            .unwrap_or_default()
    }

    /// Counts a refused call and says why.
    fn refuse(&self, why: String) -> RpcError {
        self.inner
            .peer_auth_rejections
            .fetch_add(1, Ordering::Relaxed);
        RpcError::new(ErrorKind::PermissionDenied, why)
    }

    /// The group of the call's channel (named by its metadata), if `peer` is one of its
    /// members; else a refusal, counted.
    fn member_group(&self, peer: &NodeId, metadata: &[u8]) -> Result<Group, RpcError> {
        let channel = self.call_channel(metadata)?;
        self.member_group_of(peer, &channel)
    }

    /// The group of `channel`, if `peer` is one of its members (the latest membership this
    /// node holds, voters and learners; before any, the members named at join); else a
    /// refusal, counted.
    fn member_group_of(&self, peer: &NodeId, channel: &str) -> Result<Group, RpcError> {
        let group = self
            .inner
            .groups
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(channel)
            .cloned();
        let Some(group) = group else {
            return Err(self.refuse(format!("channel {channel} is not replicated on this node")));
        };
        let is_member = {
            let metrics = group.raft.metrics();
            let metrics = metrics.borrow();
            let mut nodes = metrics.membership_config.nodes().peekable();
            if nodes.peek().is_none() {
                group.bootstrap.contains(peer)
            } else {
                nodes.any(|(_, m)| m.is(peer))
            }
        };
        if !is_member {
            return Err(self.refuse(format!(
                "node {peer} is not a member of channel {channel}'s group"
            )));
        }
        Ok(group)
    }

    /// Hands an append (or heartbeat) from `peer` to `channel`'s group: the admission check
    /// (members only, refusals counted), then openraft. What `raft/v1/append` runs once it
    /// knows the session's authenticated peer and the channel its metadata names.
    ///
    /// Public only for in-process simulations of a group (`tests/sim`), which deliver
    /// messages without sessions: a node never calls it, its peers reach it over nRPC, where
    /// `peer` is the identity the handshake proved.
    #[doc(hidden)]
    pub async fn deliver_append(
        &self,
        peer: &NodeId,
        channel: &str,
        req: AppendEntriesRequest<TypeConfig>,
    ) -> Result<Reply<AppendEntriesResponse<u64>>, RpcError> {
        let group = self.member_group_of(peer, channel)?;
        let leader = self.speaks_for_itself(peer, channel, &req.vote)?;
        well_formed(&req).map_err(|why| {
            RpcError::new(
                ErrorKind::InvalidArgument,
                format!("append from {peer}: {why}"),
            )
        })?;
        Ok(match group.raft.append_entries(req).await {
            Ok(r) => {
                if matches!(
                    r,
                    AppendEntriesResponse::Success | AppendEntriesResponse::PartialSuccess(_)
                ) {
                    group.leader_from.store(leader, Ordering::Relaxed);
                }
                Reply::Ok(r)
            }
            Err(e) => stopped(e),
        })
    }

    /// The raft id of `peer`, if `vote` is its own (the leader an append or a snapshot comes
    /// from, the candidate a vote request is for); else a refusal, counted: a member may
    /// speak only for itself, never make another member (or the callee) leader or candidate.
    fn speaks_for_itself(
        &self,
        peer: &NodeId,
        channel: &str,
        vote: &openraft::Vote<u64>,
    ) -> Result<u64, RpcError> {
        let own = raft_id(peer);
        match vote.leader_id().voted_for() {
            Some(id) if id == own => Ok(own),
            named => Err(self.refuse(format!(
                "node {peer} sent channel {channel}'s group a vote for {} (its own raft id is \
                 {own:#018x}): a member speaks only for itself",
                named.map_or_else(|| "no node".to_string(), |id| format!("{id:#018x}"))
            ))),
        }
    }

    /// A vote request from `peer` to `channel`'s group (see [`Replication::deliver_append`]).
    #[doc(hidden)]
    pub async fn deliver_vote(
        &self,
        peer: &NodeId,
        channel: &str,
        req: VoteRequest<u64>,
    ) -> Result<Reply<VoteResponse<u64>>, RpcError> {
        let group = self.member_group_of(peer, channel)?;
        self.speaks_for_itself(peer, channel, &req.vote)?;
        Ok(match group.raft.vote(req).await {
            Ok(r) => Reply::Ok(r),
            Err(e) => stopped(e),
        })
    }

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

    /// The channel a call's metadata names; a refusal, counted, if it does not decode.
    fn call_channel(&self, metadata: &[u8]) -> Result<String, RpcError> {
        decode_metadata(metadata)
            .map(|m| m.channel)
            .map_err(|e| self.refuse(format!("replication call metadata: {e}")))
    }
}

/// Whether an append is shaped as a leader sends it: its entries follow `prev_log_id` one
/// index after another, neither they nor `prev_log_id` carry a term above the sender's vote,
/// and each entry is one a leader of this build logs (a valid op, a well-formed membership).
/// openraft assumes this of every request it is given (only a debug assertion checks it, or
/// none), so a member that sends anything else is refused before openraft sees it.
pub(crate) fn well_formed(req: &AppendEntriesRequest<TypeConfig>) -> Result<(), String> {
    let term = req.vote.leader_id().get_term();
    if let Some(prev) = &req.prev_log_id
        && prev.leader_id.term > term
    {
        return Err(format!(
            "prev_log_id of term {} above the vote's term {term}",
            prev.leader_id.term
        ));
    }
    let mut next = req.prev_log_id.map_or(0, |p| p.index.saturating_add(1));
    for entry in &req.entries {
        if entry.log_id.index != next {
            return Err(format!(
                "entry at index {} where index {next} follows",
                entry.log_id.index
            ));
        }
        if entry.log_id.leader_id.term > term {
            return Err(format!(
                "entry {} of term {} above the vote's term {term}",
                entry.log_id.index, entry.log_id.leader_id.term
            ));
        }
        match &entry.payload {
            EntryPayload::Normal(op) => op
                .check()
                .map_err(|why| format!("entry {}: {why}", entry.log_id.index))?,
            EntryPayload::Membership(m) => well_formed_membership(m)
                .map_err(|why| format!("entry {}: {why}", entry.log_id.index))?,
            EntryPayload::Blank => {}
        }
        next = next.saturating_add(1);
    }
    Ok(())
}

/// Whether a snapshot's meta is shaped as a leader sends it: its last log id of a term no
/// later than the sender's vote, its membership's log id no later than that last log id, and
/// its membership well formed ([`well_formed_membership`]). openraft assumes all three of
/// every snapshot it installs (only a debug assertion checks the first two).
pub(crate) fn well_formed_snapshot(req: &InstallSnapshotRequest<TypeConfig>) -> Result<(), String> {
    let term = req.vote.leader_id().get_term();
    let last = req.meta.last_log_id;
    if let Some(last) = &last
        && last.leader_id.term > term
    {
        return Err(format!(
            "last log id of term {} above the vote's term {term}",
            last.leader_id.term
        ));
    }
    if req.meta.snapshot_id.len() > MAX_SNAPSHOT_ID_LEN {
        return Err(format!(
            "a snapshot id of {} bytes (most {MAX_SNAPSHOT_ID_LEN})",
            req.meta.snapshot_id.len()
        ));
    }
    if req.meta.last_membership.log_id().as_ref() > last.as_ref() {
        return Err("its membership is of a log id after its last log id".to_string());
    }
    well_formed_membership(req.meta.last_membership.membership())
        .map_err(|why| format!("its membership: {why}"))
}

/// Whether a membership is one a leader logs: one configuration, or two while joint, none of
/// them empty, and every voter among its nodes. openraft takes any membership a leader sends
/// (only its own changes are checked), makes it the effective one, and later unwraps each
/// voter's node to reach it: a voter without one stops the group on that member, and an
/// empty configuration leaves it no quorum to count.
pub(crate) fn well_formed_membership(m: &Membership<u64, Member>) -> Result<(), String> {
    let configs = m.get_joint_config();
    if configs.is_empty() || configs.len() > 2 {
        return Err(format!("a membership of {} configurations", configs.len()));
    }
    if configs.iter().any(|c| c.is_empty()) {
        return Err("a membership with an empty configuration".to_string());
    }
    if let Some(voter) = m.voter_ids().find(|id| m.get_node(id).is_none()) {
        return Err(format!("voter {voter} is not among the membership's nodes"));
    }
    Ok(())
}

/// Whether a snapshot chunk ends within [`MAX_SNAPSHOT_LEN`].
pub(crate) fn within_snapshot_len(
    req: &InstallSnapshotRequest<TypeConfig>,
) -> Result<(), RpcError> {
    let end = req.offset.saturating_add(req.data.len() as u64);
    if end > MAX_SNAPSHOT_LEN {
        return Err(RpcError::new(
            ErrorKind::ResourceExhausted,
            format!("snapshot past {MAX_SNAPSHOT_LEN} bytes (chunk ends at {end})"),
        ));
    }
    Ok(())
}

/// The blob ref a `raft/v1/prefetch` or `raft/v1/propose` request names: at most
/// [`MAX_OP_LEN`] bytes that decode as a `BlobRef`.
pub(crate) fn request_blob_ref(bytes: &[u8]) -> Result<BlobRef, RpcError> {
    if bytes.len() > MAX_OP_LEN {
        return Err(RpcError::new(
            ErrorKind::InvalidArgument,
            format!("a blob ref of {} bytes (most {MAX_OP_LEN})", bytes.len()),
        ));
    }
    BlobRef::decode(bytes)
        .map_err(|e| RpcError::new(ErrorKind::InvalidArgument, format!("blob ref: {e}")))
}

fn stopped<T>(e: impl std::fmt::Display) -> Reply<T> {
    Reply::Stopped(e.to_string())
}

struct AppendHandler(Replication);
struct VoteHandler(Replication);
struct SnapshotHandler(Replication);
struct PrefetchHandler(Replication);
struct PinnedHandler(Replication);

impl RpcUnaryHandler for AppendHandler {
    type Req = AppendEntriesRequest<TypeConfig>;
    type Resp = Reply<AppendEntriesResponse<u64>>;

    async fn call(&self, ctx: RpcContext, req: Self::Req) -> Result<Self::Resp, RpcError> {
        let channel = self.0.call_channel(ctx.metadata())?;
        self.0
            .deliver_append(&ctx.peer().node_id(), &channel, req)
            .await
    }
}

impl RpcUnaryHandler for VoteHandler {
    type Req = VoteRequest<u64>;
    type Resp = Reply<VoteResponse<u64>>;

    async fn call(&self, ctx: RpcContext, req: Self::Req) -> Result<Self::Resp, RpcError> {
        let channel = self.0.call_channel(ctx.metadata())?;
        self.0
            .deliver_vote(&ctx.peer().node_id(), &channel, req)
            .await
    }
}

impl RpcUnaryHandler for SnapshotHandler {
    type Req = InstallSnapshotRequest<TypeConfig>;
    type Resp = Reply<InstallSnapshotResponse<u64>>;

    async fn call(&self, ctx: RpcContext, req: Self::Req) -> Result<Self::Resp, RpcError> {
        let channel = self.0.call_channel(ctx.metadata())?;
        self.0
            .deliver_snapshot(&ctx.peer().node_id(), &channel, req)
            .await
    }
}

impl RpcUnaryHandler for PrefetchHandler {
    type Req = PrefetchRequest;
    type Resp = Reply<Prefetched>;

    async fn call(&self, ctx: RpcContext, req: Self::Req) -> Result<Self::Resp, RpcError> {
        let peer = ctx.peer().node_id();
        let group = self.0.member_group(&peer, ctx.metadata())?;
        // Only a voter asks (a leader is one; a learner never proposes), and the objects come
        // from it, at its address in the membership.
        let source = {
            let metrics = group.raft.metrics();
            let metrics = metrics.borrow();
            let config = &metrics.membership_config;
            config
                .nodes()
                .find(|(id, m)| m.is(&peer) && config.membership().voter_ids().any(|v| v == **id))
                .map(|(_, m)| m.addr())
        };
        let source = match source {
            None => {
                return Err(self.0.refuse(format!(
                    "node {peer} is not a voter of channel {}'s group: only a voter asks for a prefetch",
                    group.prefetch.channel
                )));
            }
            Some(None) => {
                return Err(RpcError::new(
                    ErrorKind::FailedPrecondition,
                    format!("node {peer}'s membership entry names no valid node id"),
                ));
            }
            Some(Some(addr)) => addr,
        };
        let server = group.prefetch.clone();
        let Ok(slot) = server.slots.clone().try_acquire_owned() else {
            self.0
                .inner
                .prefetch_rejections
                .fetch_add(1, Ordering::Relaxed);
            return Err(RpcError::new(
                ErrorKind::ResourceExhausted,
                format!(
                    "channel {} already runs {MAX_PREFETCHES_PER_CHANNEL} prefetches",
                    server.channel
                ),
            ));
        };
        let blob_ref = request_blob_ref(&req.blob_ref)?;
        let answer = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            server.prefetch(&source, &blob_ref)
        })
        .await
        .map_err(|e| RpcError::new(ErrorKind::Internal, e.to_string()))?;
        match answer {
            Ok(p) => Ok(Reply::Ok(p)),
            Err(e) => Err(RpcError::new(
                if e.class == net_mesh_engine::ErrorClass::Integrity {
                    ErrorKind::DataLoss
                } else {
                    ErrorKind::Unavailable
                },
                format!("prefetch from {peer}: {}", e.message),
            )),
        }
    }
}

impl RpcUnaryHandler for PinnedHandler {
    type Req = PinnedRequest;
    type Resp = Reply<PinnedState>;

    async fn call(&self, ctx: RpcContext, req: Self::Req) -> Result<Self::Resp, RpcError> {
        let group = self.0.member_group(&ctx.peer().node_id(), ctx.metadata())?;
        let sm = group.state_machine;
        let answer = tokio::task::spawn_blocking(move || sm.pinned_state(&req.blob_id))
            .await
            .map_err(|e| RpcError::new(ErrorKind::Internal, e.to_string()))?;
        match answer {
            Ok(state) => Ok(Reply::Ok(state)),
            Err(e @ crate::ApplyError::Stopped { .. }) => Ok(stopped(e)),
            Err(e) => Err(RpcError::new(ErrorKind::Internal, e.to_string())),
        }
    }
}

/// Reaches members for one channel's group (openraft's network factory), on the raft lane
/// of the sessions the node's channels share.
#[derive(Debug, Clone)]
pub struct Network {
    sessions: Sessions,
    metadata: Arc<[u8]>,
    replication: Replication,
    channel: Arc<str>,
}

impl Network {
    pub(crate) fn new(replication: &Replication, endpoint: &Endpoint, channel: &str) -> Network {
        Network {
            sessions: replication.lanes(endpoint).raft,
            metadata: encode_metadata(channel, &[]).into(),
            replication: replication.clone(),
            channel: channel.into(),
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &Member) -> PeerClient {
        PeerClient {
            sessions: self.sessions.clone(),
            metadata: self.metadata.clone(),
            replication: self.replication.clone(),
            channel: self.channel.clone(),
            target,
            addr: node.addr(),
        }
    }
}

/// One member as seen by the leader (or a candidate): the node's shared raft session to it,
/// dialed pinned to its node id when there is none.
#[derive(Debug)]
pub struct PeerClient {
    sessions: Sessions,
    metadata: Arc<[u8]>,
    replication: Replication,
    channel: Arc<str>,
    target: u64,
    addr: Option<NodeAddr>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Transport(String);

/// How a call failed below openraft's own errors.
enum CallFailure {
    /// Could not reach the member (dial, session, timeout): back off and retry.
    Unreachable(Transport),
    /// The member refused the call (bad request, busy): a network error.
    Refused(Transport),
    /// The member refused the call at admission: it does not take this node as a member of
    /// the group (or does not run the group). A network error, noted for
    /// [`Replication::refused_by`].
    NotAdmitted(Transport),
    /// The member's group stopped.
    Stopped(String),
    Mismatch(SnapshotMismatch),
}

impl PeerClient {
    async fn call<Req: Serialize, Resp: DeserializeOwned + Serialize>(
        &mut self,
        method: &str,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, CallFailure> {
        let Some(addr) = &self.addr else {
            return Err(CallFailure::Refused(Transport(format!(
                "member {:#018x} has no valid node id",
                self.target
            ))));
        };
        let held = self
            .sessions
            .get(addr)
            .await
            .map_err(|e| CallFailure::Unreachable(Transport(format!("dial {addr}: {e}"))))?;
        let timeout = option.hard_ttl().max(Duration::from_millis(50));
        let opts = CallOptions::with_timeout(timeout).metadata(self.metadata.to_vec());
        match held
            .session
            .call_unary::<Req, Reply<Resp>>(method, req, opts)
            .await
        {
            Ok(Reply::Ok(r)) => Ok(r),
            Ok(Reply::Stopped(why)) => Err(CallFailure::Stopped(why)),
            Ok(Reply::SnapshotMismatch(m)) => Err(CallFailure::Mismatch(m)),
            Err(e) => {
                let refused = matches!(
                    e.kind,
                    ErrorKind::PermissionDenied
                        | ErrorKind::InvalidArgument
                        | ErrorKind::UnknownMethod
                        | ErrorKind::Decode
                        | ErrorKind::ResourceExhausted
                );
                if !refused {
                    self.sessions.call_failed(addr, &held);
                }
                let t = Transport(format!("{method} to {:#018x}: {e}", self.target));
                Err(if e.kind == ErrorKind::PermissionDenied {
                    CallFailure::NotAdmitted(t)
                } else if refused {
                    CallFailure::Refused(t)
                } else {
                    CallFailure::Unreachable(t)
                })
            }
        }
    }
}

impl PeerClient {
    /// Notes whether the member took this node's message or refused it at admission
    /// ([`Replication::refused_by`]); other failures say nothing about membership.
    fn noted<T>(&self, answer: Result<T, CallFailure>) -> Result<T, CallFailure> {
        match &answer {
            Ok(_) => self
                .replication
                .note_answer(&self.channel, self.target, false),
            Err(CallFailure::NotAdmitted(_)) => {
                self.replication
                    .note_answer(&self.channel, self.target, true);
            }
            Err(_) => {}
        }
        answer
    }
}

fn rpc_error<E: std::error::Error>(f: CallFailure) -> RPCError<u64, Member, RaftError<u64, E>> {
    match f {
        CallFailure::Unreachable(t) => RPCError::Unreachable(Unreachable::new(&t)),
        CallFailure::Refused(t) | CallFailure::NotAdmitted(t) => {
            RPCError::Network(NetworkError::new(&t))
        }
        CallFailure::Stopped(why) => RPCError::Unreachable(Unreachable::new(&Transport(why))),
        CallFailure::Mismatch(m) => RPCError::Network(NetworkError::new(&Transport(m.to_string()))),
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, Member, RaftError<u64>>> {
        let answer = self.call(METHOD_APPEND, &rpc, &option).await;
        self.noted(answer).map_err(rpc_error)
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, Member, RaftError<u64, InstallSnapshotError>>,
    > {
        let answer = self.call(METHOD_SNAPSHOT, &rpc, &option).await;
        match self.noted(answer) {
            Ok(r) => Ok(r),
            Err(CallFailure::Mismatch(m)) => Err(RPCError::RemoteError(RemoteError::new(
                self.target,
                RaftError::APIError(InstallSnapshotError::SnapshotMismatch(m)),
            ))),
            Err(f) => Err(rpc_error(f)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, Member, RaftError<u64>>> {
        let answer = self.call(METHOD_VOTE, &rpc, &option).await;
        self.noted(answer).map_err(rpc_error)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

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

    fn member(b: u8) -> Member {
        Member {
            node_id: [b; 32],
            host_port: format!("127.0.0.1:{b}"),
        }
    }

    /// An open claims its channel: a second open of it while the first runs (the first may be
    /// finishing an interrupted install) is refused, and the claim goes with the first open.
    #[test]
    fn a_channel_is_opened_by_one_open_at_a_time() {
        let replication = Replication::new();
        let first = replication.claim_open("c");
        assert!(first.is_some());
        assert!(replication.claim_open("c").is_none());
        assert!(replication.claim_open("d").is_some());
        drop(first);
        assert!(replication.claim_open("c").is_some());
    }

    /// `Membership::new` gives every voter a node; the wire need not: a membership decoded
    /// from bytes whose voter has none is refused, as is an empty or a triple one.
    #[test]
    fn a_membership_is_well_formed_only_as_a_leader_logs_it() -> Result<(), postcard::Error> {
        let nodes = BTreeMap::from([(1u64, member(1)), (2, member(2))]);
        let good = Membership::new(vec![BTreeSet::from([1u64, 2])], nodes.clone());
        assert_eq!(well_formed_membership(&good), Ok(()));
        let joint = Membership::new(
            vec![BTreeSet::from([1u64]), BTreeSet::from([1u64, 2])],
            nodes.clone(),
        );
        assert_eq!(well_formed_membership(&joint), Ok(()));
        // Postcard encodes the struct as its two fields in order.
        let bytes = postcard::to_allocvec(&(vec![BTreeSet::from([1u64, 3])], nodes))?;
        let voter_without_node: Membership<u64, Member> = postcard::from_bytes(&bytes)?;
        assert_eq!(
            well_formed_membership(&voter_without_node),
            Err("voter 3 is not among the membership's nodes".to_string())
        );
        assert!(well_formed_membership(&Membership::new(vec![BTreeSet::new()], None)).is_err());
        assert!(well_formed_membership(&Membership::new(vec![], None)).is_err());
        Ok(())
    }
}
