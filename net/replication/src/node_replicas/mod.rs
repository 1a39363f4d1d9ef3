//! [`NodeReplicas`]: the replicated channels of one storage node, behind the node's
//! [`Replicas`] seam (`net_mesh_node::replicas`). It starts the channels the store holds
//! state for, makes new ones (`node/v1/channel_replicate`), and carries a client's write on any
//! member to the group: the leader proposes it itself; a follower forwards it to the leader
//! with `raft/v1/propose`, whose handler first fetches the blob's objects the leader lacks
//! from the calling member (verified, held), then proposes. A write returns once its entry is
//! committed and applied on the member the client called (so a read there right after sees
//! it). It also runs the node's side of replica moves ([`Moves`]): binding a source or a
//! target (the target joins the group), and driving a move as its coordinator.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use net_mesh_engine::codec::Hash;
use net_mesh_engine::index::blob_id;
use net_mesh_engine::{BlobRef, Classify, ErrorClass, ExtensionOp, Store};
use net_mesh_node::call_token::{encode_metadata, metadata_channel};
use net_mesh_node::proto::{
    BoundMove, MoveBind, MoveDone, MoveRun, MoveStep, ReplicaMember, ReplicaStatus,
};
use net_mesh_node::replicas::{ReplicaCounters, ReplicaFuture, Replicas};
use net_mesh_node::{NodeError, NodeResult};
use net_mesh_rpc::rpc::client::CallOptions;
use net_mesh_rpc::rpc::{Denied, ErrorKind, Router, RpcContext, RpcError, RpcUnaryHandler};
use net_mesh_rpc::{Endpoint, NodeAddr, NodeId, PeerIdentity};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::channel::{ReplicatedChannel, ReplicationConfig};
use crate::error::{ProposeError, ReplicationError};
use crate::fetch::Fetcher;
use crate::moves::{MoveError, MoveEvent, MoveSpec, Moves};
use crate::network::{Replication, request_blob_ref};
use crate::prefetch::hold_op;
use crate::tables::{MovePhase, NAMESPACE};
use crate::types::{Member, PinOp};

mod lifecycle;
mod moving;
mod write;

use lifecycle::{StoredChannels, stored_channels};
use write::ProposeHandler;

/// `raft/v1/propose`: a member asks the leader to propose `op` in the call's channel.
pub const METHOD_PROPOSE: &str = "raft/v1/propose";

/// `raft/v1/propose` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Proposed {
    /// Committed at this log index (and applied on the leader).
    Committed(u64),
    /// The callee is not the leader; the leader it knows, as `NODE_ADDR`.
    NotLeader(Option<String>),
}

/// The replicated channels of one node.
#[derive(Debug)]
pub struct NodeReplicas {
    /// This value (its `raft/v1/propose` handler holds it).
    me: std::sync::Weak<NodeReplicas>,
    replication: Replication,
    moves: Moves,
    store: Arc<Store>,
    config: ReplicationConfig,
    endpoint: OnceLock<Endpoint>,
    /// Channels running on this node.
    running: RwLock<HashMap<String, Arc<ReplicatedChannel>>>,
    /// Channels this node replicates (running or not): their writes never pin locally.
    replicated: RwLock<HashSet<String>>,
    /// Channels whose copy a move had removed from this node when it started, and how (its
    /// move row: `CleanedUp` naming it the source, or `Abandoned` naming it the target):
    /// refused like a copy removed since, not taken as plain local channels, until a move
    /// brings them back.
    moved_before_start: HashMap<String, MovePhase>,
    /// Channels this node had joined as a move's target, without any of the group's state,
    /// when it started (move id by channel): not opened (nothing to open), refused like a
    /// replicated channel that does not run, never taken as plain local channels; the move's
    /// resume (`--id`) binds this node again, which joins.
    joining_before_start: HashMap<String, u64>,
    /// Channels a background open is opening again, and why.
    reopening: RwLock<HashMap<String, Reopen>>,
    /// The wait before the next open of a channel whose group stopped on an error
    /// ([`NodeReplicas::restart_failed`]).
    failure_waits: Mutex<HashMap<String, Duration>>,
    stop: CancellationToken,
}

/// Why a background open opens a channel again.
#[derive(Debug, Clone)]
enum Reopen {
    /// It finishes the snapshot install a stop or crash interrupted.
    Install,
    /// The channel's group stopped on this error.
    Failed(String),
}

impl NodeReplicas {
    /// The replicated channels of `store` (opened with [`crate::extension`]) on node `own`:
    /// reads which channels hold replication state (blocking).
    pub fn new(
        store: Arc<Store>,
        own: NodeId,
        config: ReplicationConfig,
    ) -> Result<Arc<NodeReplicas>, ReplicationError> {
        let StoredChannels {
            replicated,
            moved: moved_before_start,
            joining: joining_before_start,
        } = stored_channels(&store, own)?;
        Ok(Arc::new_cyclic(|me| NodeReplicas {
            me: me.clone(),
            replication: Replication::new(),
            moves: Moves::new(store.clone(), own),
            store,
            config,
            endpoint: OnceLock::new(),
            running: RwLock::new(HashMap::new()),
            replicated: RwLock::new(replicated),
            moved_before_start,
            joining_before_start,
            reopening: RwLock::new(HashMap::new()),
            failure_waits: Mutex::new(HashMap::new()),
            stop: CancellationToken::new(),
        }))
    }

    /// The channel's group, when it runs here (not once its replica moved away: the source's
    /// cleanup unregisters it from the moves; not while a failed group is opened again).
    pub fn channel(&self, channel: &str) -> Option<Arc<ReplicatedChannel>> {
        if self
            .reopening
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(channel)
        {
            return None;
        }
        let running = self
            .running
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(channel)
            .cloned()?;
        self.moves.is_attached(channel).then_some(running)
    }

    /// Whether a move removed the channel's copy from this node, and how (`CleanedUp`: the
    /// replica moved away; `Abandoned`: the move bringing it here was abandoned): since it
    /// started (its group ran here and the move stopped it) or before (and no move brought it
    /// back). A move back joins it again.
    fn moved_away(&self, channel: &str) -> Option<MovePhase> {
        let running = self
            .running
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(channel);
        if running {
            (!self.moves.is_attached(channel)).then(|| {
                self.moves
                    .removed_copy(channel)
                    .unwrap_or(MovePhase::CleanedUp)
            })
        } else {
            self.moved_before_start.get(channel).copied()
        }
    }

    /// The node's replica moves.
    pub fn moves(&self) -> &Moves {
        &self.moves
    }

    /// Runs `channel` here from now on (and lets moves use it), unless the node's channels
    /// were stopped meanwhile (a create, join or start that finished during `stop_channels`):
    /// then it is stopped too, and refused as the node shutting down.
    async fn run(&self, channel: ReplicatedChannel) -> NodeResult<()> {
        let channel = Arc::new(channel);
        let name = channel.channel().to_string();
        {
            // `stop_channels` cancels, then drains under this lock: a channel put in after
            // the drain sees the cancel.
            let mut running = self.running.write().unwrap_or_else(|p| p.into_inner());
            if !self.stop.is_cancelled() {
                self.moves.attach(Arc::clone(&channel));
                self.replicated
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(name.clone());
                running.insert(name, Arc::clone(&channel));
                drop(running);
                self.watch_for_failure(channel);
                return Ok(());
            }
        }
        if let Err(e) = channel.shutdown().await {
            tracing::warn!(channel = name, error = %e, "stopping");
        }
        Err(NodeError::new(
            ErrorClass::Busy,
            "the node is shutting down its channels",
        ))
    }

    /// Calls refused because the peer is not a member of the channel's group.
    pub fn peer_auth_rejections(&self) -> u64 {
        self.replication.peer_auth_rejections()
    }

    fn moved_away_refusal(channel: &str, how: MovePhase) -> NodeError {
        NodeError::new(ErrorClass::Refused, moved_away_reason(channel, how))
    }

    /// [`Replicas::status`] without the bound move (no store read): what the metrics show.
    pub fn group_status(&self, channel: &str) -> NodeResult<ReplicaStatus> {
        let group = self.running_or_refused(channel)?;
        let s = group.status();
        Ok(ReplicaStatus {
            learners: s
                .members
                .iter()
                .filter(|m| !m.voter)
                .map(|m| m.addr.to_string())
                .collect(),
            channel: s.channel,
            members: s
                .members
                .into_iter()
                .map(|m| ReplicaMember {
                    addr: m.addr.to_string(),
                    matched: m.matched,
                    lag: m.lag,
                })
                .collect(),
            leader: s.leader.map(|l| l.to_string()),
            is_leader: s.is_leader,
            term: s.term,
            committed: s.committed,
            applied: s.applied,
            last_log_index: s.last_log_index,
            pending_apply: s.pending_apply,
            bound_move: None,
            excluded: group.excluded(),
        })
    }

    fn running_or_refused(&self, channel: &str) -> NodeResult<Arc<ReplicatedChannel>> {
        if let Some(how) = self.moved_away(channel) {
            return Err(Self::moved_away_refusal(channel, how));
        }
        self.channel(channel).ok_or_else(|| {
            let reopening = self
                .reopening
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(channel)
                .cloned();
            let joining = self.joining_before_start.get(channel);
            NodeError::new(
                ErrorClass::Busy,
                match (joining, reopening) {
                    (Some(id), _) => format!(
                        "channel {channel}: this node is the target of move {id} and had received none of the group's state when it stopped; resume the move (channel move --id {id}) to join again"
                    ),
                    (None, Some(Reopen::Install)) => format!(
                        "channel {channel} is finishing a snapshot install interrupted when this node last stopped; its group runs once a member gives the snapshot's objects (try again later)"
                    ),
                    (None, Some(Reopen::Failed(why))) => format!(
                        "channel {channel}'s group stopped on an error and is being opened again (try again later): {why}"
                    ),
                    (None, None) => format!(
                        "channel {channel} is replicated but its group does not run on this node"
                    ),
                },
            )
        })
    }

    fn endpoint(&self) -> NodeResult<&Endpoint> {
        self.endpoint.get().ok_or_else(|| {
            NodeError::new(ErrorClass::Busy, "the node has not started its channels")
        })
    }

    /// Refuses to replicate `channel` here (create it, or join it as a move's target) while
    /// it is a plain channel holding pins: pins made here alone are in no member's log, and
    /// replicating them would leave the members different from the start.
    async fn refuse_local_pins(&self, channel: &str) -> NodeResult<()> {
        if self.is_replicated(channel) {
            return Ok(());
        }
        let store = self.store.clone();
        let name = channel.to_string();
        let pins = tokio::task::spawn_blocking(move || {
            store.channels().map(|cs| {
                cs.into_iter()
                    .find(|c| c.name == name)
                    .map_or(0, |c| c.pins)
            })
        })
        .await
        .map_err(|e| NodeError::new(ErrorClass::Io, format!("worker failed: {e}")))?
        .map_err(|e| node_error(&e))?;
        if pins > 0 {
            return Err(NodeError::new(
                ErrorClass::Refused,
                format!(
                    "channel {channel} already holds {pins} pin(s) on this node; only an empty or new channel can be replicated"
                ),
            ));
        }
        Ok(())
    }

    async fn make(&self, channel: &str, members: &[NodeAddr]) -> NodeResult<bool> {
        if let Some(running) = self.channel(channel) {
            return Self::same_members(channel, &running, members).map(|()| false);
        }
        if let Some(how) = self.moved_away(channel) {
            return Err(Self::moved_away_refusal(channel, how));
        }
        self.refuse_local_pins(channel).await?;
        let endpoint = self.endpoint()?.clone();
        let created = ReplicatedChannel::create(
            &self.replication,
            self.store.clone(),
            channel,
            members,
            endpoint,
            &self.config,
        )
        .await;
        let created = match created {
            Ok(c) => c,
            Err(ReplicationError::AlreadyOpen(_)) => return Ok(false),
            Err(e) => return Err(node_error(&e)),
        };
        self.run(created).await?;
        tracing::info!(
            channel,
            members = members.len(),
            "replicated channel created"
        );
        Ok(true)
    }
}

impl NodeReplicas {
    /// A replicate request for `channel`, which runs here already as `running`: fine (nothing
    /// to do) with the group's members (by node id, learners included), refused with any other
    /// list, naming the group's members (a group changes its members by moves only).
    fn same_members(
        channel: &str,
        running: &ReplicatedChannel,
        members: &[NodeAddr],
    ) -> NodeResult<()> {
        let group: Vec<NodeAddr> = running
            .status()
            .members
            .into_iter()
            .map(|m| m.addr)
            .collect();
        let ids =
            |list: &[NodeAddr]| -> HashSet<NodeId> { list.iter().map(|m| m.node_id).collect() };
        if ids(&group) == ids(members) {
            return Ok(());
        }
        let names: Vec<String> = group.iter().map(|m| m.to_string()).collect();
        Err(NodeError::new(
            ErrorClass::Refused,
            format!(
                "channel {channel} is a replicated channel already, with other members: {}",
                names.join(", ")
            ),
        ))
    }
}

fn addr(text: &str) -> NodeResult<NodeAddr> {
    text.parse()
        .map_err(|e| NodeError::new(ErrorClass::Usage, format!("{text}: {e}")))
}

/// Why writes to `channel` are refused on a node a move removed its copy from (`how`: the
/// move's phase there).
fn moved_away_reason(channel: &str, how: MovePhase) -> String {
    if how == MovePhase::Abandoned {
        format!(
            "channel {channel}'s replica was removed from this node: the move that was bringing \
             it here was abandoned"
        )
    } else {
        format!("channel {channel}'s replica moved away from this node")
    }
}

/// The refusal of a read or a write of `channel` on a node whose copy is no longer the
/// group's ([`ReplicatedChannel::excluded`] says `why`).
fn excluded_refusal(channel: &str, why: &str) -> NodeError {
    NodeError::new(
        ErrorClass::Refused,
        format!(
            "channel {channel}: this node's copy is stale, it is no longer a member of the group ({why}); use a member; the move that removed this node, run again with its id (`channel move --id`), removes this copy"
        ),
    )
}

fn node_error(e: &(impl Classify + std::fmt::Display)) -> NodeError {
    NodeError::new(e.class(), e.to_string())
}

impl Replicas for NodeReplicas {
    fn routes(&self, router: Router) -> Router {
        let router = self.moves.routes(self.replication.routes(router));
        match self.me.upgrade() {
            Some(me) => router.unary(METHOD_PROPOSE, ProposeHandler(me)),
            None => router,
        }
    }

    fn authorize(
        &self,
        peer: &PeerIdentity,
        method: &str,
        metadata: &[u8],
    ) -> Option<Result<(), Denied>> {
        self.replication
            .authorize_call(peer, method, metadata)
            .or_else(|| self.moves.authorize_call(peer, method, metadata))
    }

    fn start<'a>(&'a self, endpoint: &'a Endpoint) -> ReplicaFuture<'a, ()> {
        Box::pin(self.start_channels(endpoint))
    }

    fn stop(&self) -> ReplicaFuture<'_, ()> {
        Box::pin(self.stop_channels())
    }

    fn is_replicated(&self, channel: &str) -> bool {
        // A replica moved away counts: its writes are refused, never pinned locally; so does
        // a move's target that had not received the group's state yet.
        self.moved_before_start.contains_key(channel)
            || self.joining_before_start.contains_key(channel)
            || self
                .replicated
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .contains(channel)
    }

    fn readable(&self, channel: &str) -> NodeResult<()> {
        match self.channel(channel).and_then(|c| c.excluded()) {
            None => Ok(()),
            Some(why) => Err(excluded_refusal(channel, &why)),
        }
    }

    fn hold(&self, channel: &str, blob_ref: &BlobRef) -> Box<dyn ExtensionOp> {
        Box::new(hold_op(channel, blob_ref))
    }

    fn pin<'a>(
        &'a self,
        channel: &'a str,
        blob_ref: &'a BlobRef,
        name: &'a str,
    ) -> ReplicaFuture<'a, u64> {
        Box::pin(self.write(
            channel,
            PinOp::Pin {
                blob_ref: blob_ref.encode(),
                name: name.to_string(),
            },
        ))
    }

    fn unpin<'a>(&'a self, channel: &'a str, id: &'a Hash) -> ReplicaFuture<'a, u64> {
        Box::pin(self.write(channel, PinOp::Unpin { blob_id: *id }))
    }

    fn replicate<'a>(
        &'a self,
        channel: &'a str,
        members: &'a [NodeAddr],
    ) -> ReplicaFuture<'a, bool> {
        Box::pin(self.make(channel, members))
    }

    fn move_bind<'a>(&'a self, bind: &'a MoveBind) -> ReplicaFuture<'a, ()> {
        Box::pin(self.bind_move(bind))
    }

    fn move_run<'a>(&'a self, run: &'a MoveRun) -> ReplicaFuture<'a, MoveDone> {
        Box::pin(self.run_move(run))
    }

    fn move_abandon<'a>(&'a self, run: &'a MoveRun) -> ReplicaFuture<'a, MoveDone> {
        Box::pin(self.abandon_move(run))
    }

    fn counters(&self) -> ReplicaCounters {
        let running: Vec<String> = self
            .running
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        ReplicaCounters {
            peer_auth_rejections: self.replication.peer_auth_rejections(),
            prefetch_rejections: self.replication.prefetch_rejections(),
            move_rejections: self.moves.phase_rejections(),
            spurious_cleanups: self.moves.spurious_cleanups(),
            channels: running
                .iter()
                .filter_map(|c| self.group_status(c).ok())
                .collect(),
        }
    }

    fn status<'a>(&'a self, channel: &'a str) -> ReplicaFuture<'a, ReplicaStatus> {
        Box::pin(async move {
            let mut status = self.group_status(channel)?;
            status.bound_move = self
                .moves
                .record(channel)
                .await
                .map_err(|e| node_error(&e))?
                .map(|r| BoundMove {
                    id: r.id,
                    from: r.from.to_string(),
                    to: r.to.to_string(),
                    coordinator: r.coordinator.to_string(),
                    phase: r.phase.name().to_string(),
                });
            Ok(status)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_says_whether_the_replica_moved_away_or_its_move_here_was_abandoned() {
        let moved = moved_away_reason("photos", MovePhase::CleanedUp);
        assert_eq!(moved, "channel photos's replica moved away from this node");
        let abandoned = moved_away_reason("photos", MovePhase::Abandoned);
        assert!(abandoned.contains("was abandoned"), "{abandoned}");
        assert!(!abandoned.contains("moved away"), "{abandoned}");
    }
}
