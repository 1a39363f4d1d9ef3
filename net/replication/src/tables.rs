//! The replication tables in the store's index (namespace `raft`, docs/REPLICATION.md §2):
//! a channel's vote, log, log bounds and applied state, written only through the engine's
//! extension seam, each write in one engine transaction.
//!
//! Every value is a version byte (2) followed by the postcard encoding of its row type; a
//! value with another version, that does not decode or that has trailing bytes is reported as
//! corrupted, never guessed at.

use std::collections::HashMap;
use std::sync::Arc;

use net_mesh_engine::codec::Hash;
use net_mesh_engine::{
    ErrorClass, Extension, ExtensionError, ExtensionOp, ExtensionReader, ExtensionTxn,
};
use net_mesh_rpc::rpc::written_as_decoded;
use redb::ReadableTable;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::types::{LogId, StoredMembership};

/// The extension namespace of the replication tables.
pub const NAMESPACE: &str = "raft";
/// Key: channel name. Value: the vote ([`VoteRow`]).
pub const VOTE_TABLE: &str = "vote_v1";
/// Key: (channel name, log index). Value: the entry ([`crate::types::Entry`]).
pub const LOG_TABLE: &str = "log_v1";
/// Key: channel name. Value: the log's bounds ([`LogMetaRow`]).
pub const LOG_META_TABLE: &str = "log_meta_v1";
/// Key: channel name. Value: what the channel's pins reflect ([`StateRow`]).
pub const STATE_TABLE: &str = "state_v1";
/// Key: (channel name, blob id bytes). Value: a hold on a blob's roots until its pin is
/// applied or the hold expires ([`PrefetchRow`]).
pub const PREFETCH_TABLE: &str = "prefetch_v1";
/// Key: channel name. Value: the replica move of that channel this node takes part in
/// ([`MoveRow`]; at most one per channel).
pub const MOVES_TABLE: &str = "moves_v1";

/// Key: channel name. Value: the last move this node was the target of that a newer move's
/// binding replaced in [`MOVES_TABLE`] before its source cleaned up ([`MoveRow`]): its
/// coordinator and source can still ask this node's handoff state (`move/v1/state`) to finish
/// it.
pub const PREVIOUS_MOVE_TABLE: &str = "moves_previous_v1";
/// Channel name → [`HandoffState`]: on a target, its applied state when its previous move's
/// row gave way ([`PREVIOUS_MOVE_TABLE`]), which is what it answers about that move.
pub const PREVIOUS_HANDOFF_TABLE: &str = "moves_previous_handoff_v1";
/// Most node ids a stored [`HandoffState`] lists (voters and learners together).
pub const MAX_HANDOFF_NODES: usize = 1024;
/// Key: channel name. Value: a snapshot this member received and has not installed yet
/// ([`PendingSnapshotRow`]; written before the log the snapshot covers is purged, dropped by
/// the install's transaction).
pub const PENDING_SNAPSHOT_TABLE: &str = "pending_snapshot_v1";

/// Longest snapshot id a snapshot may carry (a leader of this build names its snapshots
/// `TERM-INDEX`).
pub const MAX_SNAPSHOT_ID_LEN: usize = 64;

/// Longest `host_port` a [`MoveRow`] keeps (a DNS name of 253 bytes and a port fit).
pub const MAX_HOST_PORT_LEN: usize = 270;

/// The version byte every value starts with.
pub const ROW_VERSION: u8 = 2;

/// A stored vote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteRow {
    pub vote: openraft::Vote<u64>,
}

/// A channel's log bound: the last purged log id (the committed one is not stored, see
/// `log_store`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogMetaRow {
    pub last_purged: Option<LogId>,
}

/// What a channel's pin set reflects: the last applied log id and the membership in force.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateRow {
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
}

/// A blob's objects held for a pin not applied yet (fetched for the leader's prefetch request,
/// or for a snapshot being installed, or held by the leader while it proposes): one hold on
/// each of `roots` (per entry, repeats included) until the pin is applied in this channel
/// (the apply transaction drops the row and its holds) or `expires_unix_ms` passes (GC's
/// stale-hold release drops it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrefetchRow {
    pub roots: Vec<[u8; 32]>,
    pub expires_unix_ms: u64,
}

/// A snapshot received from the leader whose install has not committed: openraft's meta (last
/// log id, membership, id) and the body as received ([`crate::state_machine::SnapshotBody`]
/// encoded as a row). Kept so that a member stopped or crashed while fetching the snapshot's
/// objects (after openraft purged the log the snapshot covers) finishes that install when its
/// group opens again, instead of starting with its applied state behind its log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingSnapshotRow {
    pub last_log_id: Option<LogId>,
    pub membership: StoredMembership,
    pub snapshot_id: String,
    pub body: Vec<u8>,
}

impl PendingSnapshotRow {
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.snapshot_id.len() > MAX_SNAPSHOT_ID_LEN {
            return Err(format!(
                "snapshot id of {} bytes (most {MAX_SNAPSHOT_ID_LEN})",
                self.snapshot_id.len()
            ));
        }
        if self.body.len() as u64 > crate::types::MAX_SNAPSHOT_LEN {
            return Err(format!(
                "snapshot body of {} bytes (most {})",
                self.body.len(),
                crate::types::MAX_SNAPSHOT_LEN
            ));
        }
        Ok(())
    }
}

/// Reads a channel's pending snapshot ([`PENDING_SNAPSHOT_TABLE`]), checking its bounds.
pub fn read_pending_snapshot(
    reader: &ExtensionReader<'_>,
    channel: &str,
) -> Result<Option<PendingSnapshotRow>, ExtensionError> {
    let row: Option<PendingSnapshotRow> =
        read_channel_row(reader, PENDING_SNAPSHOT_TABLE, channel)?;
    if let Some(r) = &row {
        r.check()
            .map_err(|e| corrupted(PENDING_SNAPSHOT_TABLE, e))?;
    }
    Ok(row)
}

/// The phase a replica move has reached (docs/REPLICATION.md, replica moves). The order is the
/// order of the phases (`SourceForgotten` between `Left` and `CleanedUp`, whatever its stored
/// index); a move only ever moves forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MovePhase {
    /// Bound on this node (a participant told of the move, or the coordinator that started
    /// it); nothing done yet.
    Bound,
    /// The target is in the group as a learner (its membership entry is committed).
    LearnerAdded,
    /// The target matched the committed index of the group.
    CaughtUp,
    /// The voters are the old ones less the source plus the target (committed).
    CutOver,
    /// The target has applied a membership without the source, at or past the cutover.
    Left,
    /// The source removed its copy of the channel.
    CleanedUp,
    /// Given up before the cutover ([`crate::Moves::abandon`]): the target left the group
    /// (on the coordinator), the source keeps its copy and is free for another move (on the
    /// source), the target removed its copy (on the target). Like `CleanedUp`, an end.
    Abandoned,
    /// On the coordinator: the source left the group (`Left`) but could not be told to remove
    /// its copy, and the operator gave it up ([`crate::Moves::forget_source`]). An end for
    /// the coordinator (free for another move); resumed, the move still asks the source to
    /// clean up (then `CleanedUp`).
    SourceForgotten,
}

impl MovePhase {
    /// The phase's place in a move (see the type's docs).
    fn rank(self) -> u8 {
        match self {
            MovePhase::Bound => 0,
            MovePhase::LearnerAdded => 1,
            MovePhase::CaughtUp => 2,
            MovePhase::CutOver => 3,
            MovePhase::Left => 4,
            MovePhase::SourceForgotten => 5,
            MovePhase::CleanedUp => 6,
            MovePhase::Abandoned => 7,
        }
    }

    /// Whether the move is over on the node holding this phase: nothing of it runs or waits
    /// there, and another move of the channel may replace it.
    pub fn is_end(self) -> bool {
        matches!(
            self,
            MovePhase::CleanedUp | MovePhase::Abandoned | MovePhase::SourceForgotten
        )
    }
}

impl PartialOrd for MovePhase {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for MovePhase {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.rank().cmp(&other.rank())
    }
}

impl MovePhase {
    /// The phase's name as the CLI prints it.
    pub fn name(self) -> &'static str {
        match self {
            MovePhase::Bound => "bound",
            MovePhase::LearnerAdded => "learner_added",
            MovePhase::CaughtUp => "caught_up",
            MovePhase::CutOver => "cut_over",
            MovePhase::Left => "left",
            MovePhase::CleanedUp => "cleaned_up",
            MovePhase::Abandoned => "abandoned",
            MovePhase::SourceForgotten => "source_forgotten",
        }
    }
}

/// A node of a move as a row keeps it: full node id and address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveNode {
    pub node_id: [u8; 32],
    pub host_port: String,
}

/// A replica move this node takes part in (as its coordinator, its source or its target).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveRow {
    /// Chosen by whoever started the move; every phase message names it.
    pub id: u64,
    pub from: MoveNode,
    pub to: MoveNode,
    /// The only node whose phase messages this node accepts.
    pub coordinator: [u8; 32],
    pub phase: MovePhase,
    pub started_unix_ms: u64,
    /// The log index of the membership entry that made the cutover (once known).
    pub cutover: Option<u64>,
}

impl MoveRow {
    pub(crate) fn check(&self) -> Result<(), String> {
        for n in [&self.from, &self.to] {
            if n.host_port.len() > MAX_HOST_PORT_LEN {
                return Err(format!(
                    "host_port of {} bytes (most {MAX_HOST_PORT_LEN})",
                    n.host_port.len()
                ));
            }
        }
        Ok(())
    }
}

/// Reads a channel's move row ([`MOVES_TABLE`]), checking its bounds.
pub fn read_move(
    reader: &ExtensionReader<'_>,
    channel: &str,
) -> Result<Option<MoveRow>, ExtensionError> {
    read_move_in(reader, MOVES_TABLE, channel)
}

/// Reads a channel's previous move row ([`PREVIOUS_MOVE_TABLE`]), checking its bounds.
pub fn read_previous_move(
    reader: &ExtensionReader<'_>,
    channel: &str,
) -> Result<Option<MoveRow>, ExtensionError> {
    read_move_in(reader, PREVIOUS_MOVE_TABLE, channel)
}

/// Response of `move/v1/state` (and a [`PREVIOUS_HANDOFF_TABLE`] value): the target's applied
/// state of the channel (its `ext.raft.state_v1` row: committed, since it is applied).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoffState {
    /// The last log index applied on the target.
    pub applied: Option<u64>,
    /// Full node ids of the voters of the applied membership (every configuration).
    pub voters: Vec<[u8; 32]>,
    /// Full node ids of the learners of the applied membership.
    pub learners: Vec<[u8; 32]>,
}

/// Reads the applied state a target kept when its previous move's row gave way
/// ([`PREVIOUS_HANDOFF_TABLE`]), checking its bounds.
pub fn read_previous_handoff(
    reader: &ExtensionReader<'_>,
    channel: &str,
) -> Result<Option<HandoffState>, ExtensionError> {
    let row: Option<HandoffState> = read_channel_row(reader, PREVIOUS_HANDOFF_TABLE, channel)?;
    if let Some(r) = &row {
        check_handoff(r).map_err(|e| corrupted(PREVIOUS_HANDOFF_TABLE, e))?;
    }
    Ok(row)
}

/// The bounds of a stored [`HandoffState`]: at most [`MAX_HANDOFF_NODES`] node ids.
pub fn check_handoff(state: &HandoffState) -> Result<(), String> {
    let nodes = state.voters.len().saturating_add(state.learners.len());
    if nodes > MAX_HANDOFF_NODES {
        return Err(format!("{nodes} node ids (most {MAX_HANDOFF_NODES})"));
    }
    Ok(())
}

fn read_move_in(
    reader: &ExtensionReader<'_>,
    table: &str,
    channel: &str,
) -> Result<Option<MoveRow>, ExtensionError> {
    let row: Option<MoveRow> = read_channel_row(reader, table, channel)?;
    if let Some(r) = &row {
        r.check().map_err(|e| corrupted(table, e))?;
    }
    Ok(row)
}

/// Encodes a row: the version byte, then postcard.
pub fn encode_row<T: Serialize>(row: &T) -> Result<Vec<u8>, ExtensionError> {
    let out = vec![ROW_VERSION];
    postcard::to_extend(row, out).map_err(|e| corrupted("(encode)", e.to_string()))
}

/// Decodes a row of `table`: version byte, postcard as [`encode_row`] writes it, no trailing
/// bytes.
pub fn decode_row<T: DeserializeOwned + Serialize>(
    table: &str,
    bytes: &[u8],
) -> Result<T, ExtensionError> {
    let Some((&version, body)) = bytes.split_first() else {
        return Err(corrupted(table, "empty value".into()));
    };
    if version == 1 {
        return Err(corrupted(
            table,
            "value version 1 (written by a pre-release whose raft terms could have two \
             leaders; this release reads version 2 only: recreate the channel)"
                .into(),
        ));
    }
    if version != ROW_VERSION {
        return Err(corrupted(table, format!("value version {version}")));
    }
    let (row, rest) =
        postcard::take_from_bytes::<T>(body).map_err(|e| corrupted(table, e.to_string()))?;
    if !rest.is_empty() {
        return Err(corrupted(table, format!("{} trailing bytes", rest.len())));
    }
    if !written_as_decoded(&row, body) {
        return Err(corrupted(
            table,
            "not the row's own encoding (e.g. an over-long varint)".into(),
        ));
    }
    Ok(row)
}

fn corrupted(table: &str, reason: String) -> ExtensionError {
    ExtensionError::Corrupted {
        namespace: NAMESPACE,
        table: table.to_string(),
        reason,
    }
}

/// The replication extension: register it when opening a store that holds replicated channels
/// (`OpenOptions::extension(net_mesh_replication::extension())`). Its only object references
/// are the prefetch holds ([`PREFETCH_TABLE`]), which it counts for fsck and releases when they
/// expire (GC); the channel's pins hold the rest, in the engine's own table.
#[derive(Debug, Default)]
pub struct RaftExtension;

/// The extension to register with the store.
pub fn extension() -> Arc<dyn Extension> {
    Arc::new(RaftExtension)
}

impl Extension for RaftExtension {
    fn namespace(&self) -> &'static str {
        NAMESPACE
    }

    fn on_open(&self, txn: &mut ExtensionTxn<'_>) -> Result<(), ExtensionError> {
        txn.open_table::<&str, &[u8]>(VOTE_TABLE)?;
        txn.open_table::<(&str, u64), &[u8]>(LOG_TABLE)?;
        txn.open_table::<&str, &[u8]>(LOG_META_TABLE)?;
        txn.open_table::<&str, &[u8]>(STATE_TABLE)?;
        txn.open_table::<(&str, &[u8]), &[u8]>(PREFETCH_TABLE)?;
        txn.open_table::<&str, &[u8]>(MOVES_TABLE)?;
        txn.open_table::<&str, &[u8]>(PENDING_SNAPSHOT_TABLE)?;
        txn.open_table::<&str, &[u8]>(PREVIOUS_MOVE_TABLE)?;
        txn.open_table::<&str, &[u8]>(PREVIOUS_HANDOFF_TABLE)?;
        Ok(())
    }

    fn holds(&self, reader: &ExtensionReader<'_>) -> Result<HashMap<Hash, u64>, ExtensionError> {
        let mut holds: HashMap<Hash, u64> = HashMap::new();
        let Some(t) = reader.open_table::<(&str, &[u8]), &[u8]>(PREFETCH_TABLE)? else {
            return Ok(holds);
        };
        for row in t.iter()? {
            let (_, v) = row?;
            let row: PrefetchRow = decode_row(PREFETCH_TABLE, v.value())?;
            for root in row.roots {
                let n = holds.entry(root).or_insert(0);
                *n = n.saturating_add(1);
            }
        }
        Ok(holds)
    }

    fn release_stale(&self, txn: &mut ExtensionTxn<'_>) -> Result<(), ExtensionError> {
        let now = txn.now_unix_ms();
        let mut stale: Vec<(String, Vec<u8>, PrefetchRow)> = Vec::new();
        {
            let t = txn.open_table::<(&str, &[u8]), &[u8]>(PREFETCH_TABLE)?;
            for row in t.iter()? {
                let (k, v) = row?;
                let row: PrefetchRow = decode_row(PREFETCH_TABLE, v.value())?;
                if row.expires_unix_ms <= now {
                    let (channel, id) = k.value();
                    stale.push((channel.to_string(), id.to_vec(), row));
                }
            }
        }
        for (channel, id, row) in stale {
            txn.open_table::<(&str, &[u8]), &[u8]>(PREFETCH_TABLE)?
                .remove((channel.as_str(), id.as_slice()))?;
            for root in row.roots {
                txn.release(root);
            }
            let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
            txn.released(format!("prefetch {channel} {hex}"));
        }
        Ok(())
    }
}

/// A write to one channel's replication tables, committed in an engine transaction.
#[derive(Debug)]
pub struct RaftWrite {
    pub channel: String,
    pub change: Change,
}

/// What a [`RaftWrite`] changes.
#[derive(Debug)]
pub enum Change {
    Vote(VoteRow),
    /// Entries (index, encoded value) appended to the log.
    Append(Vec<(u64, Vec<u8>)>),
    /// Removes entries from this index on.
    Truncate(u64),
    /// Removes entries up to this log id (inclusive) and records it as purged; while the log
    /// holds the entry at this index, never past the applied state (entries not applied stay;
    /// nothing goes when nothing is applied).
    Purge(LogId),
    /// Holds `roots` of blob `blob_id` until its pin is applied or `hold_ms` pass (a row that
    /// exists has its expiry pushed later; its holds are not taken twice).
    PrefetchHold {
        blob_id: Hash,
        roots: Vec<Hash>,
        hold_ms: u64,
    },
    /// Drops the prefetch rows of these blobs (if any) and their holds: their pins are applied.
    ReleasePrefetch(Vec<Hash>),
    /// Writes the channel's move row (refused if its bounds do not hold).
    Move(MoveRow),
    /// Writes the channel's previous move row ([`PREVIOUS_MOVE_TABLE`]) and, if given, the
    /// applied state that made it give way ([`PREVIOUS_HANDOFF_TABLE`]; none keeps the stored
    /// one: the same move's row rebound to another coordinator).
    PreviousMove {
        row: MoveRow,
        handoff: Option<HandoffState>,
    },
    /// Records a received snapshot not installed yet (refused if its bounds do not hold).
    /// Written only if it reaches past both the applied state and the pending snapshot stored
    /// (if any): a stored snapshot may already cover a purged log, so it is never replaced by
    /// one that reaches less far.
    PendingSnapshot(PendingSnapshotRow),
    /// Drops the channel's pending snapshot if it reaches no further than this log id (its
    /// install commits, or the applied state is past it); a newer one stays.
    DropPendingSnapshot(Option<LogId>),
    /// The source's cleanup after a move: drops every replication row of the channel (vote,
    /// log, log bounds, applied state, pending snapshot, prefetch rows and their holds) and writes the move row
    /// (phase [`MovePhase::CleanedUp`]), in the transaction that unpins the channel's pins.
    Forget(MoveRow),
    /// Sets the applied state. Refused when the stored state is already at or past it
    /// (`allow_equal` lets a snapshot of the same point install again).
    Applied {
        state: StateRow,
        allow_equal: bool,
    },
}

/// Why a [`Change::Applied`] was refused.
#[derive(Debug, thiserror::Error)]
#[error("channel {channel}: applied state is at {stored:?}, refusing to move it to {new:?}")]
pub struct AppliedRegression {
    pub channel: String,
    pub stored: Option<LogId>,
    pub new: Option<LogId>,
}

impl ExtensionOp for RaftWrite {
    fn namespace(&self) -> &'static str {
        NAMESPACE
    }

    fn apply(&self, txn: &mut ExtensionTxn<'_>) -> Result<(), ExtensionError> {
        let channel = self.channel.as_str();
        match &self.change {
            Change::Vote(row) => {
                let mut t = txn.open_table::<&str, &[u8]>(VOTE_TABLE)?;
                t.insert(channel, encode_row(row)?.as_slice())?;
            }
            Change::Append(entries) => {
                let mut t = txn.open_table::<(&str, u64), &[u8]>(LOG_TABLE)?;
                for (index, value) in entries {
                    t.insert((channel, *index), value.as_slice())?;
                }
            }
            Change::Truncate(from) => {
                let mut t = txn.open_table::<(&str, u64), &[u8]>(LOG_TABLE)?;
                t.retain_in((channel, *from)..=(channel, u64::MAX), |_, _| false)?;
            }
            Change::Purge(upto) => {
                // openraft queues the purge behind a snapshot install without waiting for it;
                // purging past what is applied would leave, if the install never commits, a
                // member missing entries nobody applied. So while the log holds every entry
                // up to `upto`, only applied entries go now and the install's own transaction
                // purges the rest (state_machine::install). A log that ends before `upto` (a
                // member behind the snapshot, the usual case) is purged whole up to it as
                // openraft asks: keeping its entries would leave a hole once entries after
                // `upto` are appended, and openraft cannot load a log with a hole.
                let holds_upto = txn
                    .open_table::<(&str, u64), &[u8]>(LOG_TABLE)?
                    .get((channel, upto.index))?
                    .is_some();
                let applied = {
                    let t = txn.open_table::<&str, &[u8]>(STATE_TABLE)?;
                    let state: Option<StateRow> = match t.get(channel)? {
                        Some(v) => Some(decode_row(STATE_TABLE, v.value())?),
                        None => None,
                    };
                    state.and_then(|s| s.last_applied)
                };
                let upto = match applied {
                    _ if !holds_upto => *upto,
                    None => return Ok(()),
                    Some(a) if a.index < upto.index => a,
                    Some(_) => *upto,
                };
                {
                    let mut t = txn.open_table::<(&str, u64), &[u8]>(LOG_TABLE)?;
                    t.retain_in((channel, 0)..=(channel, upto.index), |_, _| false)?;
                }
                update_meta(txn, channel, |m| {
                    if m.last_purged.is_none_or(|p| p.index < upto.index) {
                        m.last_purged = Some(upto);
                    }
                })?;
            }
            Change::PrefetchHold {
                blob_id,
                roots,
                hold_ms,
            } => {
                let expires_unix_ms = txn.now_unix_ms().saturating_add(*hold_ms);
                let old: Option<PrefetchRow> = {
                    let t = txn.open_table::<(&str, &[u8]), &[u8]>(PREFETCH_TABLE)?;
                    let v = t.get((channel, blob_id.as_slice()))?;
                    match v {
                        Some(v) => Some(decode_row(PREFETCH_TABLE, v.value())?),
                        None => None,
                    }
                };
                let row = match old {
                    Some(old) => PrefetchRow {
                        expires_unix_ms: expires_unix_ms.max(old.expires_unix_ms),
                        roots: old.roots,
                    },
                    None => {
                        for root in roots {
                            txn.hold(*root);
                        }
                        PrefetchRow {
                            roots: roots.clone(),
                            expires_unix_ms,
                        }
                    }
                };
                txn.open_table::<(&str, &[u8]), &[u8]>(PREFETCH_TABLE)?
                    .insert((channel, blob_id.as_slice()), encode_row(&row)?.as_slice())?;
            }
            Change::ReleasePrefetch(blob_ids) => {
                for blob_id in blob_ids {
                    let removed = txn
                        .open_table::<(&str, &[u8]), &[u8]>(PREFETCH_TABLE)?
                        .remove((channel, blob_id.as_slice()))?
                        .map(|v| v.value().to_vec());
                    if let Some(bytes) = removed {
                        let row: PrefetchRow = decode_row(PREFETCH_TABLE, &bytes)?;
                        for root in row.roots {
                            txn.release(root);
                        }
                    }
                }
            }
            Change::Move(row) => write_move(txn, channel, row)?,
            Change::PreviousMove { row, handoff } => {
                row.check().map_err(|e| corrupted(PREVIOUS_MOVE_TABLE, e))?;
                txn.open_table::<&str, &[u8]>(PREVIOUS_MOVE_TABLE)?
                    .insert(channel, encode_row(row)?.as_slice())?;
                if let Some(handoff) = handoff {
                    check_handoff(handoff).map_err(|e| corrupted(PREVIOUS_HANDOFF_TABLE, e))?;
                    txn.open_table::<&str, &[u8]>(PREVIOUS_HANDOFF_TABLE)?
                        .insert(channel, encode_row(handoff)?.as_slice())?;
                }
            }
            Change::PendingSnapshot(row) => {
                row.check()
                    .map_err(|e| corrupted(PENDING_SNAPSHOT_TABLE, e))?;
                let applied: Option<StateRow> =
                    match txn.open_table::<&str, &[u8]>(STATE_TABLE)?.get(channel)? {
                        Some(v) => Some(decode_row(STATE_TABLE, v.value())?),
                        None => None,
                    };
                let applied = applied.and_then(|s| s.last_applied);
                let mut t = txn.open_table::<&str, &[u8]>(PENDING_SNAPSHOT_TABLE)?;
                let stored: Option<PendingSnapshotRow> = match t.get(channel)? {
                    Some(v) => Some(decode_row(PENDING_SNAPSHOT_TABLE, v.value())?),
                    None => None,
                };
                let reaches = stored.and_then(|p| p.last_log_id).max(applied);
                if row.last_log_id > reaches {
                    t.insert(channel, encode_row(row)?.as_slice())?;
                }
            }
            Change::DropPendingSnapshot(upto) => {
                let mut t = txn.open_table::<&str, &[u8]>(PENDING_SNAPSHOT_TABLE)?;
                let stored: Option<PendingSnapshotRow> = match t.get(channel)? {
                    Some(v) => Some(decode_row(PENDING_SNAPSHOT_TABLE, v.value())?),
                    None => None,
                };
                if stored.is_some_and(|p| p.last_log_id <= *upto) {
                    t.remove(channel)?;
                }
            }
            Change::Forget(row) => {
                txn.open_table::<&str, &[u8]>(VOTE_TABLE)?.remove(channel)?;
                txn.open_table::<(&str, u64), &[u8]>(LOG_TABLE)?
                    .retain_in((channel, 0)..=(channel, u64::MAX), |_, _| false)?;
                txn.open_table::<&str, &[u8]>(LOG_META_TABLE)?
                    .remove(channel)?;
                txn.open_table::<&str, &[u8]>(STATE_TABLE)?
                    .remove(channel)?;
                txn.open_table::<&str, &[u8]>(PENDING_SNAPSHOT_TABLE)?
                    .remove(channel)?;
                let mut held: Vec<(Vec<u8>, PrefetchRow)> = Vec::new();
                {
                    let t = txn.open_table::<(&str, &[u8]), &[u8]>(PREFETCH_TABLE)?;
                    let empty: &[u8] = &[];
                    for item in t.range((channel, empty)..)? {
                        let (k, v) = item?;
                        let (c, id) = k.value();
                        if c != channel {
                            break;
                        }
                        held.push((id.to_vec(), decode_row(PREFETCH_TABLE, v.value())?));
                    }
                }
                for (id, row) in held {
                    txn.open_table::<(&str, &[u8]), &[u8]>(PREFETCH_TABLE)?
                        .remove((channel, id.as_slice()))?;
                    for root in row.roots {
                        txn.release(root);
                    }
                }
                write_move(txn, channel, row)?;
            }
            Change::Applied { state, allow_equal } => {
                let mut t = txn.open_table::<&str, &[u8]>(STATE_TABLE)?;
                let stored: Option<StateRow> = match t.get(channel)? {
                    Some(v) => Some(decode_row(STATE_TABLE, v.value())?),
                    None => None,
                };
                let stored = stored.and_then(|s| s.last_applied);
                let moves_back = match (&stored, &state.last_applied) {
                    (None, _) => false,
                    (Some(_), None) => true,
                    (Some(old), Some(new)) => {
                        old.index > new.index || (old.index == new.index && !allow_equal)
                    }
                };
                if moves_back {
                    return Err(ExtensionError::refused(
                        NAMESPACE,
                        ErrorClass::Refused,
                        AppliedRegression {
                            channel: channel.to_string(),
                            stored,
                            new: state.last_applied,
                        },
                    ));
                }
                t.insert(channel, encode_row(state)?.as_slice())?;
            }
        }
        Ok(())
    }
}

fn write_move(
    txn: &mut ExtensionTxn<'_>,
    channel: &str,
    row: &MoveRow,
) -> Result<(), ExtensionError> {
    row.check().map_err(|e| corrupted(MOVES_TABLE, e))?;
    txn.open_table::<&str, &[u8]>(MOVES_TABLE)?
        .insert(channel, encode_row(row)?.as_slice())?;
    Ok(())
}

fn update_meta(
    txn: &mut ExtensionTxn<'_>,
    channel: &str,
    change: impl FnOnce(&mut LogMetaRow),
) -> Result<(), ExtensionError> {
    let mut t = txn.open_table::<&str, &[u8]>(LOG_META_TABLE)?;
    let mut meta: LogMetaRow = match t.get(channel)? {
        Some(v) => decode_row(LOG_META_TABLE, v.value())?,
        None => LogMetaRow::default(),
    };
    change(&mut meta);
    t.insert(channel, encode_row(&meta)?.as_slice())?;
    Ok(())
}

/// Whether this store holds replication state of `channel`: an applied state, log bounds, a
/// log entry, or a snapshot received and not installed (a member that crashed while it
/// installed its first snapshot, before anything else of the group was stored here).
pub fn holds_state(reader: &ExtensionReader<'_>, channel: &str) -> Result<bool, ExtensionError> {
    Ok(
        read_channel_row::<StateRow>(reader, STATE_TABLE, channel)?.is_some()
            || read_channel_row::<LogMetaRow>(reader, LOG_META_TABLE, channel)?.is_some()
            || read_last_log(reader, channel)?.is_some()
            || read_pending_snapshot(reader, channel)?.is_some(),
    )
}

/// Reads one channel-keyed row of `table`.
pub fn read_channel_row<T: DeserializeOwned + Serialize>(
    reader: &ExtensionReader<'_>,
    table: &str,
    channel: &str,
) -> Result<Option<T>, ExtensionError> {
    let Some(t) = reader.open_table::<&str, &[u8]>(table)? else {
        return Ok(None);
    };
    match t.get(channel)? {
        Some(v) => Ok(Some(decode_row(table, v.value())?)),
        None => Ok(None),
    }
}

/// The blob ids `channel` holds prefetched objects for (rows of [`PREFETCH_TABLE`]).
pub fn read_prefetched(
    reader: &ExtensionReader<'_>,
    channel: &str,
) -> Result<Vec<Hash>, ExtensionError> {
    let Some(t) = reader.open_table::<(&str, &[u8]), &[u8]>(PREFETCH_TABLE)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let empty: &[u8] = &[];
    for row in t.range((channel, empty)..)? {
        let (k, _) = row?;
        let (c, id) = k.value();
        if c != channel {
            break;
        }
        if let Ok(id) = <[u8; 32]>::try_from(id) {
            out.push(id);
        }
    }
    Ok(out)
}

/// The encoded log entries of `channel` with index in `start..end`, in index order.
pub fn read_log_range(
    reader: &ExtensionReader<'_>,
    channel: &str,
    start: u64,
    end: u64,
) -> Result<Vec<(u64, Vec<u8>)>, ExtensionError> {
    let Some(t) = reader.open_table::<(&str, u64), &[u8]>(LOG_TABLE)? else {
        return Ok(Vec::new());
    };
    if start >= end {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for item in t.range((channel, start)..(channel, end))? {
        let (k, v) = item?;
        out.push((k.value().1, v.value().to_vec()));
    }
    Ok(out)
}

/// The last encoded log entry of `channel`, if any.
pub fn read_last_log(
    reader: &ExtensionReader<'_>,
    channel: &str,
) -> Result<Option<(u64, Vec<u8>)>, ExtensionError> {
    let Some(t) = reader.open_table::<(&str, u64), &[u8]>(LOG_TABLE)? else {
        return Ok(None);
    };
    match t.range((channel, 0)..=(channel, u64::MAX))?.next_back() {
        Some(item) => {
            let (k, v) = item?;
            Ok(Some((k.value().1, v.value().to_vec())))
        }
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_empty_state_row_encodes_as_docs_replication_md_says() {
        let bytes = encode_row(&StateRow::default()).unwrap();
        assert_eq!(bytes, [2, 0, 0, 0, 0]);
        assert_eq!(
            decode_row::<StateRow>(STATE_TABLE, &bytes).unwrap(),
            StateRow::default()
        );
    }

    #[test]
    fn a_log_id_is_term_then_index() {
        // openraft's `single-term-leader`: a committed leader is named by its term alone.
        let row = StateRow {
            last_applied: Some(openraft::LogId::new(
                openraft::CommittedLeaderId::new(3, 0),
                5,
            )),
            ..StateRow::default()
        };
        let bytes = encode_row(&row).unwrap();
        assert_eq!(bytes, [2, 1, 3, 5, 0, 0, 0]);
        assert_eq!(decode_row::<StateRow>(STATE_TABLE, &bytes).unwrap(), row);
    }

    #[test]
    fn rows_with_another_version_trailing_bytes_or_over_long_varints_are_corrupted() {
        assert!(matches!(
            decode_row::<StateRow>(STATE_TABLE, &[3, 0, 0, 0, 0]),
            Err(ExtensionError::Corrupted { .. })
        ));
        // Version 1: a pre-release's rows (leader ids with a node id), named in the error.
        match decode_row::<StateRow>(STATE_TABLE, &[1, 0, 0, 0, 0]) {
            Err(ExtensionError::Corrupted { reason, .. }) => {
                assert!(reason.contains("version 1"), "{reason}");
            }
            other => panic!("a version 1 row decoded: {other:?}"),
        }
        assert!(matches!(
            decode_row::<StateRow>(STATE_TABLE, &[2, 0, 0, 0, 0, 0]),
            Err(ExtensionError::Corrupted { .. })
        ));
        assert!(matches!(
            decode_row::<StateRow>(STATE_TABLE, &[]),
            Err(ExtensionError::Corrupted { .. })
        ));
        // [2, 1, 3, 5, 0, 0, 0] with the index 5 written in two bytes.
        match decode_row::<StateRow>(STATE_TABLE, &[2, 1, 3, 0x85, 0, 0, 0, 0]) {
            Err(ExtensionError::Corrupted { reason, .. }) => {
                assert!(reason.contains("own encoding"), "{reason}");
            }
            other => panic!("an over-long varint decoded: {other:?}"),
        }
    }

    #[test]
    fn a_prefetch_row_is_roots_then_expiry() {
        let row = PrefetchRow {
            roots: vec![[7; 32]],
            expires_unix_ms: 300,
        };
        let mut want = vec![2, 1];
        want.extend([7; 32]);
        want.extend([0xac, 0x02]);
        assert_eq!(encode_row(&row).unwrap(), want);
        assert_eq!(
            decode_row::<PrefetchRow>(PREFETCH_TABLE, &want).unwrap(),
            row
        );
    }

    #[test]
    fn a_kept_handoff_is_applied_voters_learners() {
        let kept = HandoffState {
            applied: Some(9),
            voters: vec![[2; 32]],
            learners: Vec::new(),
        };
        let mut want = vec![2, 1, 9, 1];
        want.extend([2; 32]);
        want.push(0);
        assert_eq!(encode_row(&kept).unwrap(), want);
        assert_eq!(
            decode_row::<HandoffState>(PREVIOUS_HANDOFF_TABLE, &want).unwrap(),
            kept
        );
        let too_many = HandoffState {
            voters: vec![[2; 32]; MAX_HANDOFF_NODES + 1],
            ..kept
        };
        assert!(check_handoff(&too_many).is_err());
    }

    #[test]
    fn a_move_row_is_id_nodes_coordinator_phase_start_cutover() {
        let row = MoveRow {
            id: 300,
            from: MoveNode {
                node_id: [1; 32],
                host_port: "a:1".into(),
            },
            to: MoveNode {
                node_id: [2; 32],
                host_port: "b:2".into(),
            },
            coordinator: [3; 32],
            phase: MovePhase::CutOver,
            started_unix_ms: 5,
            cutover: Some(7),
        };
        let mut want = vec![2, 0xac, 0x02];
        want.extend([1; 32]);
        want.extend([3, b'a', b':', b'1']);
        want.extend([2; 32]);
        want.extend([3, b'b', b':', b'2']);
        want.extend([3; 32]);
        want.extend([3, 5, 1, 7]);
        assert_eq!(encode_row(&row).unwrap(), want);
        assert_eq!(decode_row::<MoveRow>(MOVES_TABLE, &want).unwrap(), row);
        // The phase is the fourth byte from the end: `SourceForgotten` is 7 (added after
        // `Abandoned`, 6), and no index past it decodes.
        let forgotten = MoveRow {
            phase: MovePhase::SourceForgotten,
            ..row.clone()
        };
        let mut want_forgotten = want.clone();
        let phase_at = want.len() - 4;
        want_forgotten[phase_at] = 7;
        assert_eq!(encode_row(&forgotten).unwrap(), want_forgotten);
        assert_eq!(
            decode_row::<MoveRow>(MOVES_TABLE, &want_forgotten).unwrap(),
            forgotten
        );
        want_forgotten[phase_at] = 8;
        assert!(decode_row::<MoveRow>(MOVES_TABLE, &want_forgotten).is_err());
        assert!(MovePhase::Left < MovePhase::SourceForgotten);
        assert!(MovePhase::SourceForgotten < MovePhase::CleanedUp);
        let mut too_long = row.clone();
        too_long.to.host_port = "x".repeat(MAX_HOST_PORT_LEN + 1);
        assert!(too_long.check().is_err());
    }

    #[test]
    fn a_pending_snapshot_row_is_last_log_id_membership_id_body() {
        let row = PendingSnapshotRow {
            last_log_id: Some(openraft::LogId::new(
                openraft::CommittedLeaderId::new(3, 0),
                5,
            )),
            membership: StoredMembership::default(),
            snapshot_id: "3-5".into(),
            body: vec![2, 0],
        };
        let want = [2, 1, 3, 5, 0, 0, 0, 3, b'3', b'-', b'5', 2, 2, 0];
        assert_eq!(encode_row(&row).unwrap(), want);
        assert_eq!(
            decode_row::<PendingSnapshotRow>(PENDING_SNAPSHOT_TABLE, &want).unwrap(),
            row
        );
        let mut long_id = row.clone();
        long_id.snapshot_id = "x".repeat(MAX_SNAPSHOT_ID_LEN + 1);
        assert!(long_id.check().is_err());
        assert!(row.check().is_ok());
    }

    #[test]
    fn a_vote_row_is_term_voted_for_committed() {
        let row = VoteRow {
            vote: openraft::Vote::new_committed(3, 258),
        };
        assert_eq!(encode_row(&row).unwrap(), [2, 3, 1, 0x82, 0x02, 1]);
        let bytes = encode_row(&row).unwrap();
        assert_eq!(decode_row::<VoteRow>(VOTE_TABLE, &bytes).unwrap(), row);
    }
}
