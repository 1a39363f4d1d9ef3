//! The replication tables in the store's index (namespace `raft`, docs/REPLICATION.md §2):
//! a channel's vote, log, log bounds and applied state, written only through the engine's
//! extension seam, each write in one engine transaction.
//!
//! Every value is a version byte (2) followed by the postcard encoding of its row type; a
//! value with another version, that does not decode or that has trailing bytes is reported as
//! corrupted, never guessed at.

use net_mesh_engine::codec::Hash;
use net_mesh_engine::{ExtensionError, ExtensionReader};
use net_mesh_rpc::rpc::written_as_decoded;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::types::{LogId, StoredMembership};

mod moves;
mod write;

pub use moves::{
    HandoffState, MoveNode, MovePhase, MoveRow, check_handoff, read_move, read_previous_handoff,
    read_previous_move,
};
pub use write::{AppliedRegression, Change, RaftExtension, RaftWrite, extension};

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
mod tests;
