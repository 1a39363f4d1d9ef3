//! The replication extension and its one write op ([`RaftWrite`]): every change to the
//! replication tables goes through it, each in one engine transaction.

use std::collections::HashMap;
use std::sync::Arc;

use net_mesh_engine::codec::Hash;
use net_mesh_engine::{
    ErrorClass, Extension, ExtensionError, ExtensionOp, ExtensionReader, ExtensionTxn,
};
use redb::ReadableTable;

use crate::types::LogId;

use super::*;

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
