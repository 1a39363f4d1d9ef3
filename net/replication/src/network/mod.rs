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
use crate::unheard::LeaderHeard;

mod checks;
mod peer;
mod snapshot;

pub(crate) use checks::{request_blob_ref, well_formed, well_formed_snapshot, within_snapshot_len};
pub use peer::{Network, PeerClient};
pub(crate) use snapshot::receive_chunk;
use snapshot::{Preparing, Receiving};

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
/// Words of a member's refusal of a non-member's raft message ([`Replication::member_group_of`],
/// `PermissionDenied`). A caller tells that refusal by its kind alone
/// ([`peer::not_admitted`]); the words stay for callers of earlier builds, which look for
/// them.
pub(crate) const NOT_A_MEMBER: &str = "is not a member of channel";

/// Words with which a callee of an earlier build refused a raft message because the channel's
/// group does not run there, with `PermissionDenied` as it refused a non-member (this build
/// answers `Unavailable`). Only to keep such a refusal from being taken for one of membership.
pub(crate) const LEGACY_NOT_RUNNING: &str = "is not replicated on this node";

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
    /// When this node last heard from the group's leader ([`crate::unheard`]).
    pub(crate) leader_heard: Arc<LeaderHeard>,
    /// The group's state machine (`raft/v1/pinned` reads it; a received snapshot is got
    /// ready to install through it).
    pub(crate) state_machine: StateMachine,
    /// The snapshot being received from a leader, chunk by chunk.
    pub(crate) receiving: Arc<Mutex<Option<Receiving>>>,
    /// The received snapshot being got ready to install ([`Preparing`]).
    pub(crate) preparing: Arc<tokio::sync::Mutex<Option<Preparing>>>,
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
                .map_err(|e| match e.kind {
                    ErrorKind::Unavailable => Denied::unavailable(e.message),
                    _ => Denied::new(e.message),
                }),
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

    /// Notes that `group` of `channel` heard from its leader now: the leader takes this node
    /// as a member, so earlier refusals are forgotten (the members' next answers, if it
    /// goes unheard again, say what they say then).
    fn heard_from_leader(&self, channel: &str, group: &Group) {
        group.leader_heard.mark();
        self.forget_refusals(channel);
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

    /// Counts a call refused because `channel`'s group does not run here (not replicated
    /// here, or being opened again): `Unavailable`, which tells nothing of who the members
    /// are (a refusal of a non-member is `PermissionDenied`).
    fn not_running(&self, channel: &str) -> RpcError {
        self.inner
            .peer_auth_rejections
            .fetch_add(1, Ordering::Relaxed);
        RpcError::new(
            ErrorKind::Unavailable,
            format!("channel {channel} is not replicated on this node"),
        )
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
            return Err(self.not_running(channel));
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
            return Err(self.refuse(format!("node {peer} {NOT_A_MEMBER} {channel}'s group")));
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
                match r {
                    AppendEntriesResponse::Success | AppendEntriesResponse::PartialSuccess(_) => {
                        group.leader_from.store(leader, Ordering::Relaxed);
                        self.heard_from_leader(channel, &group);
                    }
                    // The leader's still (its vote is not below this member's).
                    AppendEntriesResponse::Conflict => self.heard_from_leader(channel, &group),
                    AppendEntriesResponse::HigherVote(_) => {}
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

    /// The channel a call's metadata names; a refusal, counted, if it does not decode.
    fn call_channel(&self, metadata: &[u8]) -> Result<String, RpcError> {
        decode_metadata(metadata)
            .map(|m| m.channel)
            .map_err(|e| self.refuse(format!("replication call metadata: {e}")))
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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

    /// A refusal of membership is told from a group that does not run by its kind: whatever
    /// words either says, and an earlier build's refusal of a group it does not run (also
    /// `PermissionDenied`) is not taken for one of membership.
    #[test]
    fn a_refusal_of_membership_is_told_by_its_kind_not_its_words() {
        let replication = Replication::new();
        let peer = net_mesh_rpc::Identity::from_seed([9; 32]).node_id();
        let refused_before = replication.peer_auth_rejections();
        let Err(not_running) = replication.member_group_of(&peer, "photos") else {
            panic!("a channel with no group here admitted a call");
        };
        assert_eq!(not_running.kind, ErrorKind::Unavailable, "{not_running}");
        assert!(!peer::not_admitted(&not_running), "{not_running}");
        assert_eq!(replication.peer_auth_rejections(), refused_before + 1);

        let reworded = RpcError::new(ErrorKind::PermissionDenied, "you are not in this group");
        assert!(peer::not_admitted(&reworded));
        let worded_as_before = RpcError::new(
            ErrorKind::Unavailable,
            format!("node {peer} {NOT_A_MEMBER} photos's group"),
        );
        assert!(!peer::not_admitted(&worded_as_before));
        let earlier_build = RpcError::new(
            ErrorKind::PermissionDenied,
            "channel photos is not replicated on this node",
        );
        assert!(!peer::not_admitted(&earlier_build));
    }
}
