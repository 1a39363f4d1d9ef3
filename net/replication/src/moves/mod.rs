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

mod abandon;
mod bind;
mod callee;
mod drive;
mod rows;

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

/// Whether every voter set of the group (one, or the two of a joint membership) has both
/// `from` and `to` (full node ids): a move from `from` to `to` never ran, as its target was a
/// voter before it (no step of a move makes the target a voter while the source stays one),
/// and it never will (`begin` refuses a target that is a voter). Abandoning such a move only
/// releases the nodes bound to it; both keep their copies.
fn both_voters(ch: &ReplicatedChannel, from: &[u8; 32], to: &[u8; 32]) -> bool {
    let configs = ch.voter_configs();
    !configs.is_empty()
        && configs
            .iter()
            .all(|c| c.contains(&raft_id_of(from)) && c.contains(&raft_id_of(to)))
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
