//! Staging's tables in the store's index, through the engine's extension seam (namespace
//! `staging`, docs/FORMAT.md §4.1):
//! - `ext.staging.uploads_v1`: staging id → [`StagingCheckpoint`] of every live upload;
//! - `ext.staging.finished_v1`: staging id → [`FinishedUpload`] of every upload that finished
//!   within the abandonment grace, so a publisher killed after its finalize committed still
//!   learns its ref.
//!
//! Changes ride in a batch as [`StagingOp`]s and are applied inside the batch's one write
//! transaction. The holds a checkpoint keeps (+1 per object its tree state names, see
//! `TreeState::held_objects`) are recomputed there from the stored old checkpoint and the new
//! one, so they can never drift from what is stored.
#![deny(clippy::arithmetic_side_effects)]

use std::collections::HashMap;
use std::time::Duration;

use net_mesh_engine::codec::Hash;
use net_mesh_engine::{
    ErrorClass, Extension, ExtensionError, ExtensionOp, ExtensionReader, ExtensionTxn,
};
use redb::{ReadableTable, ReadableTableMetadata};

use crate::checkpoint::StagingCheckpoint;
use crate::finished::FinishedUpload;

/// The extension namespace of staging's tables.
pub const NAMESPACE: &str = "staging";
/// Live uploads: staging id → checkpoint.
pub const UPLOADS_TABLE: &str = "uploads_v1";
/// Finished uploads: staging id → finished record.
pub const FINISHED_TABLE: &str = "finished_v1";
/// The table name older builds kept live uploads under (renamed at open).
pub const LEGACY_UPLOADS_TABLE: &str = "staging_v1";

/// Longest staging id in bytes.
pub const MAX_STAGING_ID: usize = 64;

/// Whether `id` is a valid staging id: 1..=64 bytes of `[A-Za-z0-9._-]`.
pub fn valid_staging_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_STAGING_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// Why a staging change was refused.
#[derive(Debug, thiserror::Error)]
pub enum StagingTableError {
    #[error("staging id {0:?} already exists")]
    Exists(String),
    #[error("staging upload {0:?} already finished; `staging resume` gives its ref")]
    Finished(String),
    #[error("staging upload {0:?} does not exist (aborted or released as abandoned)")]
    NotFound(String),
    #[error("staging upload {id:?} moved on: stored seq {found}, this handle expected {expected}")]
    SeqMismatch {
        id: String,
        expected: u64,
        found: u64,
    },
}

impl StagingTableError {
    fn class(&self) -> ErrorClass {
        match self {
            StagingTableError::NotFound(_) => ErrorClass::NotFound,
            StagingTableError::Exists(_)
            | StagingTableError::Finished(_)
            | StagingTableError::SeqMismatch { .. } => ErrorClass::Refused,
        }
    }
}

fn refuse(e: StagingTableError) -> ExtensionError {
    ExtensionError::refused(NAMESPACE, e.class(), e)
}

fn corrupted(table: &str, id: &str, reason: impl std::fmt::Display) -> ExtensionError {
    ExtensionError::Corrupted {
        namespace: NAMESPACE,
        table: table.to_string(),
        reason: format!("{id:?}: {reason}"),
    }
}

fn decode_checkpoint(id: &str, bytes: &[u8]) -> Result<StagingCheckpoint, ExtensionError> {
    StagingCheckpoint::decode(bytes).map_err(|e| corrupted(UPLOADS_TABLE, id, e))
}

fn add_holds(txn: &mut ExtensionTxn<'_>, checkpoint: &StagingCheckpoint, hold: bool) {
    for hash in checkpoint.tree.held_objects() {
        if hold {
            txn.hold(hash);
        } else {
            txn.release(hash);
        }
    }
}

/// One change to staging's tables, applied in a batch's transaction.
#[derive(Debug, Clone)]
pub enum StagingOp {
    /// Store `checkpoint` under `id`. `expect_seq`: `None` = the id must be new (neither live
    /// nor recently finished); `Some(s)` = the stored checkpoint must have seq `s` (it was not
    /// released or taken over meanwhile).
    Put {
        id: String,
        expect_seq: Option<u64>,
        checkpoint: Box<StagingCheckpoint>,
    },
    /// Remove `id` and release its holds. `expect_seq` as for `Put`, except that `None`
    /// removes whatever is stored and a missing id is not an error.
    Delete { id: String, expect_seq: Option<u64> },
    /// Remove the checkpoint of `id` (which must have seq `expect_seq`), release its holds and
    /// record `finished` under `id` (the batch pins the blob in the same transaction).
    Finish {
        id: String,
        expect_seq: u64,
        finished: FinishedUpload,
    },
}

impl ExtensionOp for StagingOp {
    fn namespace(&self) -> &'static str {
        NAMESPACE
    }

    fn apply(&self, txn: &mut ExtensionTxn<'_>) -> Result<(), ExtensionError> {
        match self {
            StagingOp::Put {
                id,
                expect_seq,
                checkpoint,
            } => {
                let old = txn
                    .open_table::<&str, &[u8]>(UPLOADS_TABLE)?
                    .get(id.as_str())?
                    .map(|v| v.value().to_vec());
                match (expect_seq, old) {
                    (None, Some(_)) => return Err(refuse(StagingTableError::Exists(id.clone()))),
                    (None, None) => {
                        let finished = txn.open_table::<&str, &[u8]>(FINISHED_TABLE)?;
                        if finished.get(id.as_str())?.is_some() {
                            return Err(refuse(StagingTableError::Finished(id.clone())));
                        }
                    }
                    (Some(_), None) => {
                        return Err(refuse(StagingTableError::NotFound(id.clone())));
                    }
                    (Some(expected), Some(old)) => {
                        let old = decode_checkpoint(id, &old)?;
                        check_seq(id, *expected, old.seq)?;
                        add_holds(txn, &old, false);
                    }
                }
                add_holds(txn, checkpoint, true);
                txn.open_table::<&str, &[u8]>(UPLOADS_TABLE)?
                    .insert(id.as_str(), checkpoint.encode().as_slice())?;
                net_mesh_segments::failpoint::hit("staging.checkpoint.in_txn");
            }
            StagingOp::Delete { id, expect_seq } => {
                let old = txn
                    .open_table::<&str, &[u8]>(UPLOADS_TABLE)?
                    .remove(id.as_str())?
                    .map(|v| v.value().to_vec());
                let Some(old) = old else {
                    if expect_seq.is_some() {
                        return Err(refuse(StagingTableError::NotFound(id.clone())));
                    }
                    return Ok(());
                };
                let old = decode_checkpoint(id, &old)?;
                if let Some(expected) = expect_seq {
                    check_seq(id, *expected, old.seq)?;
                }
                add_holds(txn, &old, false);
            }
            StagingOp::Finish {
                id,
                expect_seq,
                finished,
            } => {
                let old = txn
                    .open_table::<&str, &[u8]>(UPLOADS_TABLE)?
                    .remove(id.as_str())?
                    .map(|v| v.value().to_vec());
                let old = old.ok_or_else(|| refuse(StagingTableError::NotFound(id.clone())))?;
                let old = decode_checkpoint(id, &old)?;
                check_seq(id, *expect_seq, old.seq)?;
                add_holds(txn, &old, false);
                txn.open_table::<&str, &[u8]>(FINISHED_TABLE)?
                    .insert(id.as_str(), finished.encode().as_slice())?;
            }
        }
        Ok(())
    }
}

fn check_seq(id: &str, expected: u64, found: u64) -> Result<(), ExtensionError> {
    if expected != found {
        return Err(refuse(StagingTableError::SeqMismatch {
            id: id.to_string(),
            expected,
            found,
        }));
    }
    Ok(())
}

/// Staging as an extension of the store: owns the tables, counts the holds of live uploads
/// for fsck, and releases uploads idle for longer than `abandon_grace` (and forgets finished
/// ones older than that) when GC asks.
#[derive(Debug, Clone, Copy)]
pub struct Staging {
    pub abandon_grace: Duration,
}

impl Default for Staging {
    fn default() -> Self {
        Staging {
            abandon_grace: crate::DEFAULT_ABANDON_GRACE,
        }
    }
}

impl Extension for Staging {
    fn namespace(&self) -> &'static str {
        NAMESPACE
    }

    fn on_open(&self, txn: &mut ExtensionTxn<'_>) -> Result<(), ExtensionError> {
        // Stores written before the extension seam kept live uploads in `staging_v1`.
        if txn.adopt_legacy_table(LEGACY_UPLOADS_TABLE, UPLOADS_TABLE)? {
            tracing::info!("staging: renamed table staging_v1 to ext.staging.uploads_v1");
        }
        txn.open_table::<&str, &[u8]>(UPLOADS_TABLE)?;
        txn.open_table::<&str, &[u8]>(FINISHED_TABLE)?;
        Ok(())
    }

    fn holds(&self, reader: &ExtensionReader<'_>) -> Result<HashMap<Hash, u64>, ExtensionError> {
        let mut holds: HashMap<Hash, u64> = HashMap::new();
        for (_, checkpoint) in uploads(reader)? {
            for hash in checkpoint.tree.held_objects() {
                let n = holds.entry(hash).or_insert(0);
                *n = n.saturating_add(1);
            }
        }
        Ok(holds)
    }

    fn release_stale(&self, txn: &mut ExtensionTxn<'_>) -> Result<(), ExtensionError> {
        let grace_ms = u64::try_from(self.abandon_grace.as_millis()).unwrap_or(u64::MAX);
        let before = txn.now_unix_ms().saturating_sub(grace_ms);
        let mut stale = Vec::new();
        {
            let table = txn.open_table::<&str, &[u8]>(UPLOADS_TABLE)?;
            for row in table.iter()? {
                let (k, v) = row?;
                let id = k.value().to_string();
                let checkpoint = decode_checkpoint(&id, v.value())?;
                if checkpoint.last_checkpoint_unix_ms < before {
                    stale.push((id, checkpoint));
                }
            }
        }
        for (id, checkpoint) in stale {
            txn.open_table::<&str, &[u8]>(UPLOADS_TABLE)?
                .remove(id.as_str())?;
            add_holds(txn, &checkpoint, false);
            txn.released(id);
        }
        let mut expired = Vec::new();
        {
            let table = txn.open_table::<&str, &[u8]>(FINISHED_TABLE)?;
            for row in table.iter()? {
                let (k, v) = row?;
                let id = k.value().to_string();
                let finished = FinishedUpload::decode(v.value())
                    .map_err(|e| corrupted(FINISHED_TABLE, &id, e))?;
                if finished.finished_unix_ms < before {
                    expired.push(id);
                }
            }
        }
        let mut table = txn.open_table::<&str, &[u8]>(FINISHED_TABLE)?;
        for id in expired {
            table.remove(id.as_str())?;
        }
        Ok(())
    }
}

/// Every live upload with its checkpoint, in id order.
pub fn uploads(
    reader: &ExtensionReader<'_>,
) -> Result<Vec<(String, StagingCheckpoint)>, ExtensionError> {
    let Some(table) = reader.open_table::<&str, &[u8]>(UPLOADS_TABLE)? else {
        return Ok(Vec::new());
    };
    // Grown as rows are read: the table's stored length is not trusted to size an allocation.
    let mut out = Vec::new();
    for row in table.iter()? {
        let (k, v) = row?;
        let id = k.value().to_string();
        let checkpoint = decode_checkpoint(&id, v.value())?;
        out.push((id, checkpoint));
    }
    Ok(out)
}

/// How many live uploads there are (rows counted, not decoded: a status or a metrics scrape
/// costs nothing per upload).
pub fn upload_count(reader: &ExtensionReader<'_>) -> Result<u64, ExtensionError> {
    let Some(table) = reader.open_table::<&str, &[u8]>(UPLOADS_TABLE)? else {
        return Ok(0);
    };
    Ok(table.len()?)
}

/// The checkpoint of live upload `id`, if any.
pub fn upload(
    reader: &ExtensionReader<'_>,
    id: &str,
) -> Result<Option<StagingCheckpoint>, ExtensionError> {
    let Some(table) = reader.open_table::<&str, &[u8]>(UPLOADS_TABLE)? else {
        return Ok(None);
    };
    match table.get(id)? {
        Some(v) => Ok(Some(decode_checkpoint(id, v.value())?)),
        None => Ok(None),
    }
}

/// The finished record of `id`, if it finished within the abandonment grace.
pub fn finished(
    reader: &ExtensionReader<'_>,
    id: &str,
) -> Result<Option<FinishedUpload>, ExtensionError> {
    let Some(table) = reader.open_table::<&str, &[u8]>(FINISHED_TABLE)? else {
        return Ok(None);
    };
    match table.get(id)? {
        Some(v) => Ok(Some(
            FinishedUpload::decode(v.value()).map_err(|e| corrupted(FINISHED_TABLE, id, e))?,
        )),
        None => Ok(None),
    }
}
