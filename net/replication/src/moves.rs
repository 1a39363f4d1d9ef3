//! Replica moves (docs/REPLICATION.md, "Replica moves"): moving a channel's replica from a
//! source node A to a target node B, driven by one coordinator K (the channel's leader where
//! the move starts) through persisted phases: `Bound` → `LearnerAdded` → `CaughtUp` →
//! `CutOver` → `Left` → `CleanedUp`.
//!
//! - **Binding.** Every node of a move keeps one row per channel in `ext.raft.moves_v1`: the
//!   move's id, source, target, coordinator and phase. The source and the target are bound by
//!   an admin ([`Moves::bind`], called by the node from an admin method its allow list
//!   authorizes) before the move starts; the coordinator binds itself ([`Moves::begin`]). A
//!   node accepts phase messages (`move/v1/*`) only from the peer its row names, matched on
//!   the session's authenticated node id: nothing is learned from the first caller.
//! - **Phases.** The coordinator runs each phase's action, then commits the phase reached;
//!   every action is idempotent and re-checks the group's state first, so a move stopped at
//!   any point ([`Moves::resume`]) continues from the stored phase without repeating or
//!   skipping a step. The cutover happens only once the target matched the committed index.
//! - **Cleanup.** The source removes its copy only when bound to that move as its source, the
//!   message comes from the bound coordinator and names the bound move, and the target
//!   itself (dialed pinned to its node id) reports an applied membership without the source,
//!   at or past the cutover and at or past what the source applied. Anything else changes
//!   nothing and is logged.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use net_mesh_engine::{Classify, ErrorClass, ExtensionOp, Store, StoreError, check_channel_name};
use net_mesh_node::NodeError;
use net_mesh_node::call_token::{decode_metadata, encode_metadata};
use net_mesh_rpc::handshake::HandshakeError;
use net_mesh_rpc::rpc::client::CallOptions;
use net_mesh_rpc::rpc::server::{Denied, Router, RpcContext, RpcUnaryHandler};
use net_mesh_rpc::rpc::{ErrorKind, RpcError, SessionError};
use net_mesh_rpc::{NodeAddr, NodeId, PeerIdentity};
use serde::{Deserialize, Serialize};

use crate::channel::ReplicatedChannel;
use crate::error::MembershipError;
use crate::tables::{
    Change, MAX_HOST_PORT_LEN, MoveNode, MovePhase, MoveRow, NAMESPACE, RaftWrite, STATE_TABLE,
    StateRow, read_channel_row, read_move, read_previous_handoff, read_previous_move,
};
use crate::types::{raft_id, raft_id_of};

/// The source's cleanup, sent by the coordinator once the target holds the cutover.
pub const METHOD_MOVE_CLEANUP: &str = "move/v1/cleanup";
/// The target's applied state, asked by the coordinator and the source to verify the handoff.
pub const METHOD_MOVE_STATE: &str = "move/v1/state";
/// The coordinator's word to the source and the target that the move is abandoned.
pub const METHOD_MOVE_ABANDON: &str = "move/v1/abandon";
/// Prefix of every move method.
pub const MOVE_METHOD_PREFIX: &str = "move/v1/";

/// Request of `move/v1/cleanup`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleanupRequest {
    /// The move's id (as bound).
    pub id: u64,
    /// The log index of the membership entry that made the cutover.
    pub cutover: u64,
}

/// Response of `move/v1/cleanup`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CleanupReply {
    /// The source removed its copy: `pins_removed` pins of the channel.
    Cleaned { pins_removed: u64 },
    /// The source had already removed its copy for this move (a repeated message).
    AlreadyCleaned,
}

/// Request of `move/v1/abandon`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbandonRequest {
    /// The move's id (as bound).
    pub id: u64,
}

/// Response of `move/v1/abandon`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AbandonReply {
    /// The source is free of the move and keeps its copy.
    Released,
    /// The target left the move and removed its copy: `pins_removed` pins of the channel.
    Removed { pins_removed: u64 },
    /// This node had already abandoned the move (a repeated message).
    AlreadyAbandoned,
}

/// Request of `move/v1/state`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateRequest {
    pub id: u64,
}

pub use crate::tables::HandoffState;

/// What an admin tells the nodes of a move, and what the coordinator starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveSpec {
    pub channel: String,
    /// Names this move in every phase message (a later or earlier move of the same channel
    /// has another id). [`MoveSpec::new`] takes the current time in nanoseconds.
    pub id: u64,
    pub from: NodeAddr,
    pub to: NodeAddr,
    pub coordinator: NodeId,
}

impl MoveSpec {
    pub fn new(channel: &str, from: NodeAddr, to: NodeAddr, coordinator: NodeId) -> MoveSpec {
        let id = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        MoveSpec {
            channel: channel.to_string(),
            id,
            from,
            to,
            coordinator,
        }
    }
}

/// A move as a node holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveRecord {
    pub channel: String,
    pub id: u64,
    pub from: NodeAddr,
    pub to: NodeAddr,
    pub coordinator: NodeId,
    pub phase: MovePhase,
    pub started_unix_ms: u64,
    pub cutover: Option<u64>,
}

/// One phase reached, as reported to whoever drives the move (the CLI prints these).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveEvent {
    pub channel: String,
    pub id: u64,
    pub phase: MovePhase,
    /// What the phase found or did (e.g. "learner matched 42 of committed 42").
    pub detail: String,
}

/// Waits of a move.
#[derive(Debug, Clone)]
pub struct MoveConfig {
    /// How long the coordinator waits for the target to match the committed index.
    pub catch_up: Duration,
    /// How long the coordinator waits for the target to apply the cutover.
    pub handoff: Duration,
    /// Timeout of one `move/v1/*` call (dial included).
    pub call_timeout: Duration,
}

impl Default for MoveConfig {
    fn default() -> Self {
        MoveConfig {
            catch_up: Duration::from_secs(60),
            handoff: Duration::from_secs(60),
            call_timeout: Duration::from_secs(10),
        }
    }
}

/// Why a move (or a binding) did not go on. Every error but `Usage` leaves the move resumable
/// from its stored phase ([`Moves::resume`]).
#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    /// The spec is not usable (source = target, the coordinator is the target, a node not
    /// in the group, this node not part of the move, ...).
    #[error("channel {channel}: {reason}")]
    Usage { channel: String, reason: String },
    /// Another move of the channel is bound here, or this one is already being driven.
    #[error("channel {channel}: busy: {reason}")]
    Busy { channel: String, reason: String },
    /// No move of the channel is bound on this node.
    #[error("channel {channel}: no move bound on this node")]
    NotBound { channel: String },
    /// The coordinator is not the channel's leader (membership changes run on the leader).
    #[error("not the leader of channel {channel}; leader: {}", leader.as_ref().map_or("unknown".to_string(), |l| l.to_string()))]
    NotLeader {
        channel: String,
        leader: Option<NodeAddr>,
    },
    /// The target did not match the committed index in time: no cutover; the move stays at
    /// `LearnerAdded` (or `CaughtUp`) and the target keeps catching up.
    #[error("channel {channel}: the target matched {} of committed {} after {waited:?}; no cutover", opt(*matched), opt(*committed))]
    NotCaughtUp {
        channel: String,
        matched: Option<u64>,
        committed: Option<u64>,
        waited: Duration,
    },
    /// A voter that stays does not hold the membership entry that added the target yet (it
    /// would refuse the target's calls once the target led): no cutover; the move stays at
    /// `CaughtUp`.
    #[error("channel {channel}: voter {voter} matched {} of the target's membership entry {entry} after {waited:?}; no cutover", opt(*matched))]
    VoterBehind {
        channel: String,
        voter: NodeAddr,
        matched: Option<u64>,
        entry: u64,
        waited: Duration,
    },
    /// The handoff could not be verified (yet): the target has not applied a membership
    /// without the source at or past the cutover.
    #[error("channel {channel}: handoff not verified: {reason}")]
    Handoff { channel: String, reason: String },
    /// A node of the move could not be reached, or failed the phase message for a reason of
    /// its own (an I/O error, a lost session, no answer in time).
    #[error("channel {channel}: {node}: {reason}")]
    Unreachable {
        channel: String,
        node: NodeAddr,
        reason: String,
    },
    /// Another node answered at the address of a node of the move (the pinned dial refused
    /// it before anything was sent). Not `Unreachable`: the node may be alive elsewhere, so a
    /// source is never taken as gone for this.
    #[error("channel {channel}: {node}: {reason}")]
    WrongNode {
        channel: String,
        node: NodeAddr,
        reason: String,
    },
    /// A node of the move answered and refused the phase message (not its coordinator, another
    /// move bound there, a state that forbids it, not now); `class` is that of its answer.
    #[error("channel {channel}: {node} refused: {reason}")]
    Refused {
        channel: String,
        node: NodeAddr,
        class: ErrorClass,
        reason: String,
    },
    #[error(transparent)]
    Membership(Box<MembershipError>),
    #[error("channel {channel}: {source}")]
    Store {
        channel: String,
        source: Box<StoreError>,
    },
}

impl From<MembershipError> for MoveError {
    fn from(e: MembershipError) -> Self {
        MoveError::Membership(Box::new(e))
    }
}

fn opt(v: Option<u64>) -> String {
    v.map_or("nothing".to_string(), |v| v.to_string())
}

impl Classify for MoveError {
    fn class(&self) -> ErrorClass {
        match self {
            MoveError::Usage { .. } => ErrorClass::Usage,
            MoveError::Busy { .. }
            | MoveError::NotCaughtUp { .. }
            | MoveError::VoterBehind { .. }
            | MoveError::Handoff { .. } => ErrorClass::Busy,
            MoveError::NotBound { .. } => ErrorClass::NotFound,
            MoveError::NotLeader { .. } => ErrorClass::Refused,
            MoveError::Unreachable { .. } | MoveError::WrongNode { .. } => ErrorClass::Io,
            MoveError::Refused { class, .. } => *class,
            MoveError::Membership(e) => e.class(),
            MoveError::Store { source, .. } => source.class(),
        }
    }
}

/// The replica moves of one node: its bindings (in its store), the channels it runs (for
/// the coordinator's membership changes and the source's cleanup), and the `move/v1/*`
/// methods with their admission. Create one per node beside [`crate::Replication`], add
/// [`Moves::routes`] to the node's router and [`Moves::authorize_call`] to its hook, and
/// [`Moves::attach`] every replicated channel the node opens.
#[derive(Clone)]
pub struct Moves {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<Store>,
    own: NodeId,
    config: MoveConfig,
    channels: RwLock<HashMap<String, Arc<ReplicatedChannel>>>,
    /// Channels whose copy a move removed here since this node started, and how: `CleanedUp`
    /// (this node was the source) or `Abandoned` (the target of an abandoned move).
    removed: Mutex<HashMap<String, MovePhase>>,
    /// One driver, bind or cleanup of a channel at a time.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    rejections: AtomicU64,
    spurious: AtomicU64,
}

impl std::fmt::Debug for Moves {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Moves")
            .field("own", &self.inner.own)
            .field("rejections", &self.phase_rejections())
            .field("spurious_cleanups", &self.spurious_cleanups())
            .finish()
    }
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn node_id_of(bytes: &[u8; 32]) -> Option<NodeId> {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    NodeId::from_hex(&hex).ok()
}

fn move_node(addr: &NodeAddr) -> MoveNode {
    MoveNode {
        node_id: *addr.node_id.as_bytes(),
        host_port: addr.host_port.clone(),
    }
}

fn node_addr(n: &MoveNode) -> Option<NodeAddr> {
    Some(NodeAddr {
        node_id: node_id_of(&n.node_id)?,
        host_port: n.host_port.clone(),
    })
}

impl Moves {
    pub fn new(store: Arc<Store>, own: NodeId) -> Moves {
        Moves::with_config(store, own, MoveConfig::default())
    }

    pub fn with_config(store: Arc<Store>, own: NodeId, config: MoveConfig) -> Moves {
        Moves {
            inner: Arc::new(Inner {
                store,
                own,
                config,
                channels: RwLock::new(HashMap::new()),
                removed: Mutex::new(HashMap::new()),
                locks: Mutex::new(HashMap::new()),
                rejections: AtomicU64::new(0),
                spurious: AtomicU64::new(0),
            }),
        }
    }

    /// Phase messages refused because the peer is not the one bound for that message (or no
    /// move of the channel is bound here): `replication_move_rejections`.
    pub fn phase_rejections(&self) -> u64 {
        self.inner.rejections.load(Ordering::Relaxed)
    }

    /// Cleanups from the bound coordinator that changed nothing: another move's id, this
    /// node not the source, a repeat of a cleanup already done, or a handoff that could not
    /// be verified (`replication_move_spurious_cleanups`).
    pub fn spurious_cleanups(&self) -> u64 {
        self.inner.spurious.load(Ordering::Relaxed)
    }

    /// Registers a replicated channel this node runs (the coordinator changes its membership;
    /// the source shuts it down at cleanup).
    pub fn attach(&self, channel: Arc<ReplicatedChannel>) {
        self.inner
            .removed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(channel.channel());
        self.inner
            .channels
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(channel.channel().to_string(), channel);
    }

    /// Whether `channel` is registered (a source's cleanup unregisters the channel it handed
    /// off).
    pub fn is_attached(&self, channel: &str) -> bool {
        self.inner
            .channels
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(channel)
    }

    /// Forgets a channel registered with [`Moves::attach`].
    pub fn detach(&self, channel: &str) -> Option<Arc<ReplicatedChannel>> {
        self.inner
            .channels
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(channel)
    }

    /// How a move removed `channel`'s copy from this node since it started, if one did:
    /// `CleanedUp` (the replica moved away) or `Abandoned` (this node was the target of a move
    /// that was abandoned). A later [`Moves::attach`] of the channel clears it.
    pub fn removed_copy(&self, channel: &str) -> Option<MovePhase> {
        self.inner
            .removed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(channel)
            .copied()
    }

    /// [`Moves::detach`] of a channel whose copy a move removed (`how`: its row's phase).
    fn detach_removed(&self, channel: &str, how: MovePhase) {
        self.inner
            .removed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(channel.to_string(), how);
        self.detach(channel);
    }

    fn attached(&self, channel: &str) -> Result<Arc<ReplicatedChannel>, MoveError> {
        self.inner
            .channels
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(channel)
            .cloned()
            .ok_or_else(|| MoveError::Usage {
                channel: channel.to_string(),
                reason: "the channel is not open on this node".into(),
            })
    }

    pub(crate) fn lock(&self, channel: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.inner
            .locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(channel.to_string())
            .or_default()
            .clone()
    }

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
        self.bind_locked(spec).await
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

    async fn rebind_locked(&self, spec: &MoveSpec) -> Result<MoveRecord, MoveError> {
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

    async fn bind_locked(&self, spec: &MoveSpec) -> Result<MoveRecord, MoveError> {
        self.bind_at(spec, MovePhase::Bound, None).await
    }

    /// Binds `spec` like [`Moves::bind`]; a new row starts at `phase` with `cutover`, a row
    /// of the same move before `phase` moves on to it.
    async fn bind_at(
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
    async fn replaceable(&self, channel: &str, old: &MoveRow) -> Result<bool, MoveError> {
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
        if !ch.status().is_leader
            && self.joint_finished_by_leader(&ch, &spec.to).await
            && cut_over(&ch, &spec.from, &spec.to)
        {
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
    /// left (`membership::finish_left_joint`). True once the group's membership is no longer
    /// joint; false at once when it is not joint with `to` a new voter, or after the wait.
    async fn joint_finished_by_leader(&self, ch: &ReplicatedChannel, to: &NodeAddr) -> bool {
        let configs = ch.voter_configs();
        let joint_to = configs.len() > 1
            && configs
                .last()
                .is_some_and(|newest| newest.contains(&raft_id(&to.node_id)));
        if !joint_to {
            return false;
        }
        let deadline = Instant::now() + self.inner.config.handoff;
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if ch.voter_configs().len() <= 1 {
                return true;
            }
        }
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
        let mut done = Vec::new();
        if row.phase != MovePhase::Abandoned {
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
    /// began it no longer leads (or is gone): this node must lead the group, must not be
    /// driving another move of it, and the source must hold the move bound with this node as
    /// its coordinator (rebound to it first: `Moves::rebind`), which its `move/v1/state` shows
    /// by answering this node for that id. Nothing is written before those checks pass.
    async fn take_over(&self, spec: &MoveSpec, bound: Option<&MoveRow>) -> Result<(), MoveError> {
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
        self.leading(&ch)?;
        if spec.from.node_id == self.inner.own {
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

    /// Adds `to` as a learner again when the group's latest membership lacks it: the learner
    /// entry an earlier step found in the log may not have been committed, and a new leader
    /// may have dropped it. Returns what it did, for the phase's detail.
    async fn learner_again(
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

    fn leading(&self, ch: &ReplicatedChannel) -> Result<(), MoveError> {
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
    async fn caught_up(
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
    async fn voters_know_target(
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
    async fn wait_handoff(
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
    async fn ask_state(
        &self,
        channel: &str,
        row: &MoveRow,
        to: &NodeAddr,
    ) -> Result<HandoffState, MoveError> {
        self.call(channel, to, METHOD_MOVE_STATE, &StateRequest { id: row.id })
            .await
    }

    async fn call_cleanup(
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

    async fn call<Req: Serialize, Resp: serde::de::DeserializeOwned + Serialize>(
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
    async fn call_answer<Req: Serialize, Resp: serde::de::DeserializeOwned + Serialize>(
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
    async fn handed_over(&self, channel: &str, old: &MoveRow) -> bool {
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

    /// The source's side of `move/v1/cleanup` (and the coordinator's own cleanup when it is
    /// the source), with the channel's lock held.
    async fn cleanup_locked(
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

    /// The source's and the target's side of `move/v1/abandon`, with the channel's lock
    /// held. The source keeps its copy: it checks that the target is no voter in the group
    /// it runs (no cutover) and commits `Abandoned`. The target checks that it is no voter
    /// in the membership it holds and removes its copy with `Abandoned` (the coordinator
    /// removed it from the group before). A repeat answers `AlreadyAbandoned`.
    async fn abandon_locked(&self, channel: &str, id: u64) -> Result<AbandonReply, RpcError> {
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

    /// Stops this node's group of `channel` and removes its copy: unpins every pin of the
    /// channel and forgets its raft state, committing `done` as its move row in the same
    /// transaction; then unregisters the channel. Returns the pins removed. With the
    /// channel's lock held.
    async fn remove_copy(&self, channel: &str, done: MoveRow) -> Result<u64, RpcError> {
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

    /// This node's applied state of `channel`, as `move/v1/state` answers it.
    async fn handoff_state(&self, channel: &str) -> Result<HandoffState, MoveError> {
        let state = self.read_state(channel).await?;
        Ok(state.map(|s| handoff_of(&s)).unwrap_or(HandoffState {
            applied: None,
            voters: Vec::new(),
            learners: Vec::new(),
        }))
    }

    async fn read_row(&self, channel: &str) -> Result<Option<MoveRow>, MoveError> {
        let store = self.inner.store.clone();
        let ch = channel.to_string();
        tokio::task::spawn_blocking(move || store.read_extension(NAMESPACE, |r| read_move(r, &ch)))
            .await
            .map_err(|e| usage(channel, e.to_string()))?
            .map_err(|source| MoveError::Store {
                channel: channel.to_string(),
                source: Box::new(source),
            })
    }

    async fn read_previous_row(&self, channel: &str) -> Result<Option<MoveRow>, MoveError> {
        let store = self.inner.store.clone();
        let ch = channel.to_string();
        tokio::task::spawn_blocking(move || {
            store.read_extension(NAMESPACE, |r| read_previous_move(r, &ch))
        })
        .await
        .map_err(|e| usage(channel, e.to_string()))?
        .map_err(|source| MoveError::Store {
            channel: channel.to_string(),
            source: Box::new(source),
        })
    }

    async fn read_previous_handoff(
        &self,
        channel: &str,
    ) -> Result<Option<HandoffState>, MoveError> {
        let store = self.inner.store.clone();
        let ch = channel.to_string();
        tokio::task::spawn_blocking(move || {
            store.read_extension(NAMESPACE, |r| read_previous_handoff(r, &ch))
        })
        .await
        .map_err(|e| usage(channel, e.to_string()))?
        .map_err(|source| MoveError::Store {
            channel: channel.to_string(),
            source: Box::new(source),
        })
    }

    async fn read_state(&self, channel: &str) -> Result<Option<StateRow>, MoveError> {
        let store = self.inner.store.clone();
        let ch = channel.to_string();
        tokio::task::spawn_blocking(move || {
            store.read_extension(NAMESPACE, |r| {
                read_channel_row::<StateRow>(r, STATE_TABLE, &ch)
            })
        })
        .await
        .map_err(|e| usage(channel, e.to_string()))?
        .map_err(|source| MoveError::Store {
            channel: channel.to_string(),
            source: Box::new(source),
        })
    }

    async fn write_row(&self, channel: &str, row: &MoveRow) -> Result<(), MoveError> {
        self.write_rows(channel, row, None).await
    }

    /// Writes the channel's move row and, if given, its previous move row (with the applied
    /// state that made it give way, or keeping the stored one), in one transaction.
    async fn write_rows(
        &self,
        channel: &str,
        row: &MoveRow,
        previous: Option<(MoveRow, Option<HandoffState>)>,
    ) -> Result<(), MoveError> {
        let store = self.inner.store.clone();
        let write = |change| -> Box<dyn ExtensionOp> {
            Box::new(RaftWrite {
                channel: channel.to_string(),
                change,
            })
        };
        let mut ops = vec![write(Change::Move(row.clone()))];
        if let Some((previous, handoff)) = previous {
            ops.push(write(Change::PreviousMove {
                row: previous,
                handoff,
            }));
        }
        tokio::task::spawn_blocking(move || store.commit_ops(ops))
            .await
            .map_err(|e| usage(channel, e.to_string()))?
            .map_err(|source| MoveError::Store {
                channel: channel.to_string(),
                source: Box::new(source),
            })?;
        Ok(())
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
                .map_err(|e| Denied(e.message)),
        )
    }

    /// The call's channel, bound move and (for `move/v1/state`) the previous move this node
    /// was the target of, if `peer` may send `method` for one of those moves.
    fn admit(
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
    fn refuse(&self, channel: &str, peer: &NodeId, method: &str, why: String) -> RpcError {
        self.inner.rejections.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(channel, %peer, method, why, "move phase message refused");
        RpcError::new(ErrorKind::PermissionDenied, why)
    }
}

/// The error for a phase message `node` failed with `e`: an answer that refused it keeps the
/// class a node client gives that answer (`NodeError::from_rpc`: a refusal is exit 4, "try
/// later" is busy), not an I/O error; anything else (the session lost, no answer in time, a
/// failure of the node's own) is `Unreachable`.
fn answer_error(channel: &str, node: &NodeAddr, method: &str, e: &RpcError) -> MoveError {
    match NodeError::from_rpc(e).class() {
        ErrorClass::Io => MoveError::Unreachable {
            channel: channel.to_string(),
            node: node.clone(),
            reason: format!("{method}: {e}"),
        },
        class => MoveError::Refused {
            channel: channel.to_string(),
            node: node.clone(),
            class,
            reason: format!("{method}: {}", e.message),
        },
    }
}

/// Whether `peer` may ask this node's handoff state for `row`'s move: its coordinator or its
/// source.
fn may_ask_state(row: &MoveRow, peer: &NodeId) -> bool {
    row.coordinator == *peer.as_bytes() || row.from.node_id == *peer.as_bytes()
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

/// Whether the target's applied state shows the handoff: its applied membership (committed,
/// since applied) has the target as a voter and the source neither as a voter nor a learner,
/// and it applied at least the cutover's index and what the source applied (`own_applied`).
fn verify_handoff(
    row: &MoveRow,
    state: &HandoffState,
    cutover: u64,
    own_applied: Option<u64>,
) -> Result<(), String> {
    let applied = state.applied.unwrap_or(0);
    if state.applied.is_none() || applied < cutover {
        return Err(format!(
            "the target applied {} of the cutover at {cutover}",
            opt(state.applied)
        ));
    }
    if let Some(own) = own_applied
        && applied < own
    {
        return Err(format!(
            "the target applied {applied}, behind the source's {own}"
        ));
    }
    if !state.voters.contains(&row.to.node_id) {
        return Err("the target's applied membership does not make it a voter".into());
    }
    if state.voters.contains(&row.from.node_id) || state.learners.contains(&row.from.node_id) {
        return Err("the target's applied membership still has the source".into());
    }
    Ok(())
}

fn handoff_of(state: &StateRow) -> HandoffState {
    let membership = state.membership.membership();
    let full = |id: u64| membership.get_node(&id).map(|m| m.node_id);
    HandoffState {
        applied: state.last_applied.map(|l| l.index),
        voters: membership.voter_ids().filter_map(full).collect(),
        learners: membership.learner_ids().filter_map(full).collect(),
    }
}

/// Whether `to` is a node of the group's latest membership (a learner or a voter).
fn in_group(ch: &ReplicatedChannel, to: &NodeAddr) -> bool {
    ch.membership_nodes()
        .get(&raft_id(&to.node_id))
        .is_some_and(|m| m.is(&to.node_id))
}

/// Whether the group's latest membership already has the target as a voter and not the
/// source (a cutover done by an earlier run), and this node applied it: a membership entry
/// only appended may be dropped by a new leader, while an applied one is committed. (Not yet
/// applied here: the move takes the cutover step again, which openraft refuses while a change
/// is in flight, so a resume fails until the entry is committed or dropped.)
fn cut_over(ch: &ReplicatedChannel, from: &NodeAddr, to: &NodeAddr) -> bool {
    let (voters, index) = ch.voters();
    let applied = ch.status().applied;
    voters.contains(&raft_id(&to.node_id))
        && !voters.contains(&raft_id(&from.node_id))
        && !ch.membership_nodes().contains_key(&raft_id(&from.node_id))
        && index.is_some_and(|i| applied.is_some_and(|a| a >= i))
}

/// The voters a cutover makes: the group's newest voter set (the new one of a joint
/// membership a cutover cut off left, whose final entry this one then proposes) without the
/// source, with the target.
fn cutover_voters(ch: &ReplicatedChannel, from: &NodeAddr, to: &NodeAddr) -> Vec<NodeAddr> {
    let newest = ch.voter_configs().pop().unwrap_or_default();
    let nodes = ch.membership_nodes();
    let mut voters: Vec<NodeAddr> = newest
        .iter()
        .filter(|id| **id != raft_id(&from.node_id) && **id != raft_id(&to.node_id))
        .filter_map(|id| nodes.get(id).and_then(|m| m.addr()))
        .collect();
    voters.push(to.clone());
    voters
}

fn same_move(row: &MoveRow, spec: &MoveSpec) -> bool {
    row.id == spec.id
        && row.from.node_id == *spec.from.node_id.as_bytes()
        && row.to.node_id == *spec.to.node_id.as_bytes()
}

fn record_of(channel: &str, row: &MoveRow) -> Result<MoveRecord, MoveError> {
    let invalid = || usage(channel, "the bound move names an invalid node id".into());
    Ok(MoveRecord {
        channel: channel.to_string(),
        id: row.id,
        from: node_addr(&row.from).ok_or_else(invalid)?,
        to: node_addr(&row.to).ok_or_else(invalid)?,
        coordinator: node_id_of(&row.coordinator).ok_or_else(invalid)?,
        phase: row.phase,
        started_unix_ms: row.started_unix_ms,
        cutover: row.cutover,
    })
}

fn check_spec(spec: &MoveSpec) -> Result<(), MoveError> {
    let channel = spec.channel.as_str();
    check_channel_name(channel).map_err(|e| usage(channel, e.to_string()))?;
    if spec.from.node_id == spec.to.node_id {
        return Err(usage(
            channel,
            "the source and the target are the same node".into(),
        ));
    }
    if raft_id(&spec.from.node_id) == raft_id(&spec.to.node_id) {
        return Err(usage(
            channel,
            "the source and the target have the same raft id".into(),
        ));
    }
    if spec.coordinator == spec.to.node_id {
        return Err(usage(
            channel,
            "the target cannot coordinate its own move (it is not a member yet)".into(),
        ));
    }
    for a in [&spec.from, &spec.to] {
        if a.host_port.len() > MAX_HOST_PORT_LEN {
            return Err(usage(
                channel,
                format!("address {a} is over {MAX_HOST_PORT_LEN} bytes"),
            ));
        }
    }
    Ok(())
}

fn usage(channel: &str, reason: String) -> MoveError {
    MoveError::Usage {
        channel: channel.to_string(),
        reason,
    }
}

fn abandoned(channel: &str, id: u64) -> MoveError {
    usage(
        channel,
        format!("move {id} was abandoned; start a new move (a new id)"),
    )
}

fn busy_running(channel: &str) -> MoveError {
    MoveError::Busy {
        channel: channel.to_string(),
        reason: "a move of this channel is already being driven or cleaned up here".into(),
    }
}

fn hex8(id: &[u8; 32]) -> String {
    id.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_answered_keeps_its_class() {
        let node = format!("{}@127.0.0.1:9", "ab".repeat(32))
            .parse::<NodeAddr>()
            .unwrap();
        let class = |kind: ErrorKind| {
            let e = answer_error("c", &node, METHOD_MOVE_ABANDON, &RpcError::new(kind, "why"));
            (matches!(e, MoveError::Refused { .. }), e.class())
        };
        assert_eq!(
            class(ErrorKind::PermissionDenied),
            (true, ErrorClass::Refused)
        );
        assert_eq!(
            class(ErrorKind::FailedPrecondition),
            (true, ErrorClass::Refused)
        );
        assert_eq!(class(ErrorKind::Unavailable), (true, ErrorClass::Busy));
        assert_eq!(class(ErrorKind::NotFound), (true, ErrorClass::NotFound));
        // Not an answer of the node's: the session went, no answer in time, its own failure.
        assert_eq!(class(ErrorKind::Disconnected), (false, ErrorClass::Io));
        assert_eq!(class(ErrorKind::DeadlineExceeded), (false, ErrorClass::Io));
        assert_eq!(class(ErrorKind::Internal), (false, ErrorClass::Io));
        let refused = answer_error(
            "c",
            &node,
            METHOD_MOVE_ABANDON,
            &RpcError::new(ErrorKind::FailedPrecondition, "the target is a voter"),
        );
        assert!(
            refused
                .to_string()
                .contains("refused: move/v1/abandon: the target is a voter"),
            "{refused}"
        );
    }
}
