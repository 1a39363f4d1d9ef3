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

/// `raft/v1/propose`: a member asks the leader to propose `op` in the call's channel.
pub const METHOD_PROPOSE: &str = "raft/v1/propose";

/// How long a write waits for the group (a leader to be known, the entry committed and
/// applied here) before it gives up with `Busy`.
const WRITE_WAIT: Duration = Duration::from_secs(30);
/// Pause between forwarding attempts while the group has no leader or it changed.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

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

/// The first wait before a failed group is opened again ([`NodeReplicas::restart_failed`]).
const FAILURE_WAIT_MIN: Duration = Duration::from_secs(1);
/// The longest wait before a failed group is opened again.
const FAILURE_WAIT_MAX: Duration = Duration::from_secs(60);
/// A group that ran this long before failing starts again from [`FAILURE_WAIT_MIN`].
const FAILURE_QUIET: Duration = Duration::from_secs(600);

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

    async fn start_channels(&self, endpoint: &Endpoint) -> NodeResult<()> {
        let _ = self.endpoint.set(endpoint.clone());
        let names: Vec<String> = self
            .replicated
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        for name in names {
            let interrupted = {
                let store = self.store.clone();
                let ch = name.clone();
                tokio::task::spawn_blocking(move || {
                    crate::state_machine::has_interrupted_install(&store, &ch)
                })
                .await
                .map_err(|e| NodeError::new(ErrorClass::Io, e.to_string()))?
                .map_err(|e| node_error(&e))?
            };
            if interrupted {
                // Its open waits for a member to give the snapshot's objects: in the
                // background, so the node serves (and its other channels run) meanwhile.
                tracing::info!(
                    channel = name,
                    "a snapshot install was interrupted: finishing it before the channel runs"
                );
                self.open_in_background(
                    name,
                    endpoint.clone(),
                    Reopen::Install,
                    Duration::ZERO,
                    None,
                );
                continue;
            }
            let opened = ReplicatedChannel::open(
                &self.replication,
                self.store.clone(),
                &name,
                endpoint.clone(),
                &self.config,
            )
            .await;
            match opened {
                Ok(opened) => {
                    tracing::info!(channel = name, "replicated channel started");
                    self.run(opened).await?;
                }
                // One channel that cannot open (a damaged row, a store error) does not keep
                // the node or its other channels from running: it is retried meanwhile.
                Err(e) => {
                    tracing::error!(channel = name, error = %e, "opening the replicated channel: retrying in the background");
                    let why = Reopen::Failed(e.to_string());
                    self.open_in_background(name, endpoint.clone(), why, FAILURE_WAIT_MIN, None);
                }
            }
        }
        Ok(())
    }

    /// Opens `channel` (which finishes an interrupted snapshot install first) and runs it,
    /// in a task of its own, after `first_wait` ([`NodeReplicas::open_until_it_runs`]).
    /// Meanwhile calls for the channel are refused as busy, saying `why`.
    ///
    /// `failed`: the failed group the channel ran (still registered) when it is opened
    /// again after a failure; none when it does not run here yet.
    fn open_in_background(
        &self,
        channel: String,
        endpoint: Endpoint,
        why: Reopen,
        first_wait: Duration,
        failed: Option<Arc<ReplicatedChannel>>,
    ) {
        let Some(me) = self.me.upgrade() else {
            return;
        };
        self.reopening
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(channel.clone(), why);
        tokio::spawn(async move {
            tokio::select! {
                _ = me.stop.cancelled() => me.done_reopening(&channel),
                _ = tokio::time::sleep(first_wait) => {
                    me.open_until_it_runs(&channel, &endpoint, failed).await;
                }
            }
        });
    }

    fn done_reopening(&self, channel: &str) {
        self.reopening
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(channel);
    }

    /// Watches a channel this node runs: when its group stops on an error while nobody
    /// stopped it ([`ReplicatedChannel::failed`]), [`NodeReplicas::restart_failed`]. Holds
    /// the node's replicas only weakly.
    fn watch_for_failure(&self, channel: Arc<ReplicatedChannel>) {
        let me = self.me.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let Some(why) = channel.failed().await else {
                return;
            };
            if let Some(me) = me.upgrade() {
                me.restart_failed(channel, why, started.elapsed()).await;
            }
        });
    }

    /// A channel's group stopped on an error (openraft stops a group on any storage or
    /// state machine error: a store that could not write or read, a row that does not
    /// decode, an install that failed): it is stopped, and unless the node stops, opened
    /// again in the background from what its store holds. It stays registered (running,
    /// attached to the moves, so a move's cleanup finds and stops it) but is refused as busy
    /// until then. The first open waits 1 s, doubling to 60 s while each reopened group fails
    /// again within 10 minutes (an error that persists, e.g. a damaged row, is retried, and
    /// logged each time).
    async fn restart_failed(&self, channel: Arc<ReplicatedChannel>, why: String, ran: Duration) {
        let name = channel.channel().to_string();
        let ours = self
            .running
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&name)
            .is_some_and(|c| Arc::ptr_eq(c, &channel))
            && self.moves.is_attached(&name)
            && !self.stop.is_cancelled();
        if !ours {
            return;
        }
        let wait = {
            let mut waits = self.failure_waits.lock().unwrap_or_else(|p| p.into_inner());
            let wait = match waits.get(&name) {
                Some(&last) if ran < FAILURE_QUIET => last.saturating_mul(2).min(FAILURE_WAIT_MAX),
                _ => FAILURE_WAIT_MIN,
            };
            waits.insert(name.clone(), wait);
            wait
        };
        tracing::error!(channel = name, error = why, open_in = ?wait, "the channel's group stopped on an error: opening it again");
        let Some(endpoint) = self.endpoint.get().cloned() else {
            return;
        };
        let failed = Some(Arc::clone(&channel));
        self.open_in_background(name, endpoint, Reopen::Failed(why), wait, failed);
        if let Err(e) = channel.shutdown().await {
            tracing::debug!(channel = channel.channel(), error = %e, "stopping the failed group");
        }
    }

    /// [`NodeReplicas::open_in_background`]'s task: opens and runs `channel`, retrying with
    /// a backoff (1 s doubling to 60 s), until it runs here (by this open, or by another one:
    /// a move's join, a create), its replica moved away, it has no state to open, or the node
    /// stops. Opening a failed group again, each attempt holds the channel's move lock, so a
    /// move's cleanup of this node's copy runs wholly before it (the channel is then left
    /// moved away) or after (and stops the group this open started); not while finishing an
    /// interrupted install, which may wait long for objects. Ends the channel's `reopening`
    /// entry on every way out.
    async fn open_until_it_runs(
        &self,
        channel: &str,
        endpoint: &Endpoint,
        failed: Option<Arc<ReplicatedChannel>>,
    ) {
        let mut wait = Duration::from_secs(1);
        loop {
            let held = match &failed {
                Some(_) => Some(self.moves.lock(channel).lock_owned().await),
                None => None,
            };
            let current = self
                .running
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(channel)
                .cloned();
            let replaced = match (&current, &failed) {
                (None, None) => false,
                (Some(c), Some(f)) => !Arc::ptr_eq(c, f),
                _ => true,
            };
            if replaced {
                tracing::debug!(channel, "another open runs the channel");
                self.done_reopening(channel);
                return;
            }
            if failed.is_some() && !self.moves.is_attached(channel) {
                tracing::info!(
                    channel,
                    "the channel's replica moved away: not opened again"
                );
                self.done_reopening(channel);
                return;
            }
            let opened = ReplicatedChannel::open(
                &self.replication,
                self.store.clone(),
                channel,
                endpoint.clone(),
                &self.config,
            )
            .await;
            if self.stop.is_cancelled() {
                tracing::info!(channel, "the node stops before the channel ran");
                if let Ok(opened) = opened {
                    let _ = opened.shutdown().await;
                }
                self.done_reopening(channel);
                return;
            }
            match opened {
                Ok(opened) => {
                    // Before `run` starts watching the new group, so that its own failure's
                    // entry is never the one removed here.
                    self.done_reopening(channel);
                    match self.run(opened).await {
                        Ok(()) => tracing::info!(channel, "replicated channel started"),
                        Err(e) => tracing::info!(channel, error = %e, "not started"),
                    }
                    return;
                }
                Err(ReplicationError::NotReplicated(_)) => {
                    tracing::error!(
                        channel,
                        "the channel holds no replication state here: not opened again"
                    );
                    if let Some(f) = &failed {
                        let mut running = self.running.write().unwrap_or_else(|p| p.into_inner());
                        if running.get(channel).is_some_and(|c| Arc::ptr_eq(c, f)) {
                            running.remove(channel);
                            self.moves.detach(channel);
                        }
                    }
                    self.done_reopening(channel);
                    return;
                }
                // Another open runs it: the next round sees whether it did.
                Err(ReplicationError::AlreadyOpen(_)) => {
                    tracing::debug!(channel, "opened by another call meanwhile")
                }
                Err(e) => {
                    tracing::warn!(channel, error = %e, retry_in = ?wait, "opening the replicated channel")
                }
            }
            drop(held);
            tokio::select! {
                _ = self.stop.cancelled() => {
                    self.done_reopening(channel);
                    return;
                }
                _ = tokio::time::sleep(wait) => {}
            }
            wait = wait.saturating_mul(2).min(Duration::from_secs(60));
        }
    }

    async fn stop_channels(&self) -> NodeResult<()> {
        self.stop.cancel();
        self.replication.shut_down();
        let running: Vec<Arc<ReplicatedChannel>> = self
            .running
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, c)| c)
            .collect();
        for channel in running {
            self.moves.detach(channel.channel());
            if let Err(e) = channel.shutdown().await {
                tracing::warn!(channel = channel.channel(), error = %e, "stopping");
            }
        }
        Ok(())
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
        if self.channel(channel).is_some() {
            return Ok(false);
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

    async fn bind_move(&self, bind: &MoveBind) -> NodeResult<()> {
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

    async fn run_move(&self, run: &MoveRun) -> NodeResult<MoveDone> {
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

    async fn abandon_move(&self, run: &MoveRun) -> NodeResult<MoveDone> {
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

    /// Proposes `op` through the group: on the leader directly, else forwarded to it; retried
    /// while the group has no leader or it changed, up to [`WRITE_WAIT`]. Waits until the
    /// entry is applied here.
    async fn write(&self, channel: &str, op: PinOp) -> NodeResult<u64> {
        let group = self.running_or_refused(channel)?;
        let deadline = tokio::time::Instant::now() + WRITE_WAIT;
        let index = loop {
            let status = group.status();
            let attempt = if status.is_leader {
                propose_here(&group, &op).await
            } else if let Some(leader) = status.leader {
                forward(&group, &leader, &op).await
            } else {
                Attempt::Retry("no leader is known".into())
            };
            match attempt {
                Attempt::Done(index) => break index,
                Attempt::Failed(e) => return Err(e),
                Attempt::Retry(why) => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(NodeError::new(
                            ErrorClass::Busy,
                            format!("channel {channel}: no leader took the write: {why}"),
                        ));
                    }
                    tracing::debug!(channel, why, "retrying a replicated write");
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
            }
        };
        let waited = group
            .raft
            .wait(Some(
                deadline.saturating_duration_since(tokio::time::Instant::now()),
            ))
            .applied_index_at_least(Some(index), "the write applied here")
            .await;
        if let Err(e) = waited {
            return Err(NodeError::new(
                ErrorClass::Busy,
                format!(
                    "channel {channel}: entry {index} is committed but not applied on this node yet: {e}"
                ),
            ));
        }
        Ok(index)
    }
}

/// Forwards a write to the leader `leader` on the channel's session to it.
async fn forward(group: &ReplicatedChannel, leader: &NodeAddr, op: &PinOp) -> Attempt {
    let call = async {
        let held = group.sessions.get(leader).await.map_err(|e| {
            NodeError::new(ErrorClass::Busy, format!("dial the leader {leader}: {e}"))
        })?;
        let opts =
            CallOptions::with_timeout(WRITE_WAIT).metadata(encode_metadata(group.channel(), &[]));
        let answer = held
            .session
            .call_unary::<PinOp, Proposed>(METHOD_PROPOSE, op, opts)
            .await
            .map_err(|e| NodeError::from_rpc(&e));
        if answer.is_err() {
            group.sessions.call_failed(leader, &held);
        }
        answer
    };
    match call.await {
        Ok(Proposed::Committed(index)) => Attempt::Done(index),
        Ok(Proposed::NotLeader(_)) => Attempt::Retry(format!("{leader} is no longer the leader")),
        Err(e) if matches!(e.class, ErrorClass::Busy | ErrorClass::Io) => {
            Attempt::Retry(format!("the leader {leader}: {}", e.message))
        }
        Err(e) => Attempt::Failed(NodeError::new(
            e.class,
            format!("the leader {leader}: {}", e.message),
        )),
    }
}

/// One try at a replicated write.
enum Attempt {
    Done(u64),
    Retry(String),
    Failed(NodeError),
}

async fn propose_here(group: &ReplicatedChannel, op: &PinOp) -> Attempt {
    let proposed = match op {
        PinOp::Pin { blob_ref, name } => match BlobRef::decode(blob_ref) {
            Ok(b) => group.propose_pin(&b, name).await,
            Err(e) => {
                return Attempt::Failed(NodeError::new(
                    ErrorClass::Usage,
                    format!("blob ref does not decode: {e}"),
                ));
            }
        },
        PinOp::Unpin { blob_id } => group.propose_unpin(blob_id).await,
    };
    match proposed {
        Ok(index) => Attempt::Done(index),
        Err(ProposeError::NotLeader { .. }) => Attempt::Retry("leadership moved".into()),
        Err(e @ (ProposeError::Busy { .. } | ProposeError::NotDurable { .. })) => {
            Attempt::Retry(e.to_string())
        }
        Err(e) => Attempt::Failed(NodeError::new(e.class(), e.to_string())),
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

fn node_error(e: &(impl Classify + std::fmt::Display)) -> NodeError {
    NodeError::new(e.class(), e.to_string())
}

/// What a node's store says of its channels when it starts (one read of the store).
#[derive(Debug, Default)]
struct StoredChannels {
    /// Channels holding replication state: opened at start.
    replicated: HashSet<String>,
    /// Channels whose copy a move removed, and how (this node the source of a cleaned-up
    /// move, or the target of an abandoned one).
    moved: HashMap<String, MovePhase>,
    /// Channels this node joined as a move's target without receiving any of the group's
    /// state before it stopped: move id by channel.
    joining: HashMap<String, u64>,
}

fn stored_channels(store: &Store, own: NodeId) -> Result<StoredChannels, ReplicationError> {
    let names: Vec<String> = store
        .channels()
        .map_err(|e| ReplicationError::Raft(e.to_string()))?
        .into_iter()
        .map(|c| c.name)
        .collect();
    Ok(store.read_extension(NAMESPACE, |r| {
        let mut found = StoredChannels::default();
        for name in names {
            if crate::tables::holds_state(r, &name)? {
                found.replicated.insert(name);
                continue;
            }
            match crate::tables::read_move(r, &name)? {
                Some(m) if m.phase == MovePhase::CleanedUp && m.from.node_id == *own.as_bytes() => {
                    found.moved.insert(name, MovePhase::CleanedUp);
                }
                // A target that abandoned its move removed its copy, as a cleaned-up source.
                Some(m) if m.phase == MovePhase::Abandoned && m.to.node_id == *own.as_bytes() => {
                    found.moved.insert(name, MovePhase::Abandoned);
                }
                // A target's row stays `Bound`; one without state never received any.
                Some(m)
                    if m.phase != MovePhase::CleanedUp
                        && m.phase != MovePhase::Abandoned
                        && m.to.node_id == *own.as_bytes() =>
                {
                    found.joining.insert(name, m.id);
                }
                _ => {}
            }
        }
        Ok(found)
    })?)
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
            Some(why) => Err(NodeError::new(
                ErrorClass::Refused,
                format!(
                    "channel {channel}: this node's copy is stale, it is no longer a member of the group ({why}); read from a member; the move that removed this node, run again with its id (`channel move --id`), removes this copy"
                ),
            )),
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

struct ProposeHandler(Arc<NodeReplicas>);

impl RpcUnaryHandler for ProposeHandler {
    type Req = PinOp;
    type Resp = Proposed;

    async fn call(&self, ctx: RpcContext, op: PinOp) -> Result<Proposed, RpcError> {
        let channel = metadata_channel(ctx.metadata())
            .map_err(|e| RpcError::new(ErrorKind::InvalidArgument, format!("metadata: {e}")))?;
        let Some(group) = self.0.channel(&channel) else {
            return Err(RpcError::new(
                ErrorKind::PermissionDenied,
                format!("channel {channel} is not replicated on this node"),
            ));
        };
        // Only a member proposes (the hook checked it; checked again), and its address in
        // the membership is where the blob's objects come from.
        let peer = ctx.peer().node_id();
        let source = {
            let metrics = group.raft.metrics();
            let metrics = metrics.borrow();
            metrics
                .membership_config
                .nodes()
                .find(|(_, m)| m.is(&peer))
                .and_then(|(_, m)| Member::addr(m))
        };
        let Some(source) = source else {
            return Err(RpcError::new(
                ErrorKind::PermissionDenied,
                format!("node {peer} is not a member of channel {channel}'s group"),
            ));
        };
        if !group.status().is_leader {
            return Ok(Proposed::NotLeader(
                group.status().leader.map(|l| l.to_string()),
            ));
        }
        if let PinOp::Pin { blob_ref, .. } = &op {
            let blob_ref = request_blob_ref(blob_ref)?;
            fetch_held(&group, &source, &blob_ref, &self.0.stop)
                .await
                .map_err(|e| e.to_rpc())?;
        }
        match propose_here(&group, &op).await {
            Attempt::Done(index) => Ok(Proposed::Committed(index)),
            Attempt::Retry(why) => Err(NodeError::new(ErrorClass::Busy, why).to_rpc()),
            Attempt::Failed(e) => Err(e.to_rpc()),
        }
    }
}

/// Brings what this store lacks of `blob_ref` from `source` (verified) and holds it, in one
/// transaction (nothing when the store has it all).
async fn fetch_held(
    group: &ReplicatedChannel,
    source: &NodeAddr,
    blob_ref: &BlobRef,
    stop: &CancellationToken,
) -> NodeResult<()> {
    let fetcher = Fetcher::new(
        group.sessions.clone(),
        group.replication.member_streams(),
        tokio::runtime::Handle::current(),
        stop.child_token(),
    );
    let store = group.store.clone();
    let (source, blob_ref) = (source.clone(), blob_ref.clone());
    let channel = group.channel().to_string();
    tokio::task::spawn_blocking(move || {
        let missing = crate::state_machine::missing_roots(&store, &blob_ref)
            .map_err(|e| node_error(&e))?;
        if missing.is_empty() {
            return Ok(());
        }
        let mut importer = store.importer().map_err(|e| node_error(&e))?;
        fetcher.fetch_from(&source, &mut importer, &blob_ref)?;
        importer.push_op(Box::new(hold_op(&channel, &blob_ref)));
        importer.commit().map_err(|e| node_error(&e))?;
        tracing::debug!(channel, id = %net_mesh_engine::class::short_hex(&blob_id(&blob_ref)), "fetched a forwarded pin's objects");
        Ok(())
    })
    .await
    .map_err(|e| NodeError::new(ErrorClass::Io, format!("worker failed: {e}")))?
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
