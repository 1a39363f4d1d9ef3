//! The `staging_v1` redb table: one [`StagingCheckpoint`] per live resumable upload, keyed by
//! its staging id (docs/FORMAT.md §4.1).
//!
//! Checkpoint changes ride in a [`crate::index::Batch`] and are applied by [`apply`] inside the
//! batch's one write transaction. The reference counts a checkpoint holds (+1 per object its
//! tree state names, see [`crate::tree::TreeState::held_objects`]) are recomputed there from the
//! stored old checkpoint and the new one, so the counts can never drift from what is stored.
#![deny(clippy::arithmetic_side_effects)]

use std::collections::HashMap;

use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use crate::checkpoint::StagingCheckpoint;
use crate::codec::Hash;
use crate::index::IndexError;

/// Table of live uploads: staging id → encoded checkpoint (§4.2).
pub const STAGING: TableDefinition<&str, &[u8]> = TableDefinition::new("staging_v1");

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

/// One change to the staging table, applied in a batch's transaction.
#[derive(Debug, Clone)]
pub enum StagingOp {
    /// Store `checkpoint` under `id`. `expect_seq`: `None` = the id must be new; `Some(s)` = the
    /// stored checkpoint must have seq `s` (it was not released or taken over meanwhile).
    Put {
        id: String,
        expect_seq: Option<u64>,
        checkpoint: Box<StagingCheckpoint>,
    },
    /// Remove `id` and release its references. `expect_seq` as for `Put`, except that `None`
    /// removes whatever is stored and a missing id is not an error.
    Delete { id: String, expect_seq: Option<u64> },
    /// Remove `id` only if its last checkpoint is older than `idle_before_unix_ms` (abandoned
    /// uploads; decided inside the transaction, so a concurrent checkpoint wins).
    ReleaseIfIdle {
        id: String,
        idle_before_unix_ms: u64,
    },
}

/// Why a staging change was refused.
#[derive(Debug, thiserror::Error)]
pub enum StagingTableError {
    #[error("staging id {0:?} already exists")]
    Exists(String),
    #[error("staging upload {0:?} does not exist (finished, aborted or released as abandoned)")]
    NotFound(String),
    #[error("staging upload {id:?} moved on: stored seq {found}, this handle expected {expected}")]
    SeqMismatch {
        id: String,
        expected: u64,
        found: u64,
    },
    #[error("staging checkpoint {id:?} is corrupted: {reason}")]
    Corrupted { id: String, reason: String },
}

impl StagingTableError {
    /// A refused change that says nothing about durability (the store stays usable).
    pub fn is_conflict(&self) -> bool {
        !matches!(self, StagingTableError::Corrupted { .. })
    }
}

fn decode(id: &str, bytes: &[u8]) -> Result<StagingCheckpoint, StagingTableError> {
    StagingCheckpoint::decode(bytes).map_err(|e| StagingTableError::Corrupted {
        id: id.to_string(),
        reason: e.to_string(),
    })
}

fn add_holds(deltas: &mut HashMap<Hash, i64>, checkpoint: &StagingCheckpoint, sign: i64) {
    for hash in checkpoint.tree.held_objects() {
        let d = deltas.entry(hash).or_insert(0);
        *d = d.saturating_add(sign);
    }
}

/// Applies `ops` in `txn`, adding the reference-count changes of the holds to `deltas` (which
/// the caller applies to the objects table in the same transaction).
pub(crate) fn apply(
    txn: &WriteTransaction,
    ops: &[StagingOp],
    deltas: &mut HashMap<Hash, i64>,
) -> Result<(), IndexError> {
    if ops.is_empty() {
        return Ok(());
    }
    let mut table = txn.open_table(STAGING)?;
    for op in ops {
        match op {
            StagingOp::Put {
                id,
                expect_seq,
                checkpoint,
            } => {
                let old = table.get(id.as_str())?.map(|v| v.value().to_vec());
                match (expect_seq, old) {
                    (None, Some(_)) => {
                        return Err(IndexError::Staging(StagingTableError::Exists(id.clone())));
                    }
                    (Some(_), None) => {
                        return Err(IndexError::Staging(StagingTableError::NotFound(id.clone())));
                    }
                    (None, None) => {}
                    (Some(expected), Some(old)) => {
                        let old = decode(id, &old).map_err(IndexError::Staging)?;
                        if old.seq != *expected {
                            return Err(IndexError::Staging(StagingTableError::SeqMismatch {
                                id: id.clone(),
                                expected: *expected,
                                found: old.seq,
                            }));
                        }
                        add_holds(deltas, &old, -1);
                    }
                }
                add_holds(deltas, checkpoint, 1);
                table.insert(id.as_str(), checkpoint.encode().as_slice())?;
                net_mesh_segments::failpoint::hit("staging.checkpoint.in_txn");
            }
            StagingOp::Delete { id, expect_seq } => {
                let Some(old) = table.remove(id.as_str())?.map(|v| v.value().to_vec()) else {
                    if expect_seq.is_some() {
                        return Err(IndexError::Staging(StagingTableError::NotFound(id.clone())));
                    }
                    continue;
                };
                let old = decode(id, &old).map_err(IndexError::Staging)?;
                if let Some(expected) = expect_seq
                    && old.seq != *expected
                {
                    return Err(IndexError::Staging(StagingTableError::SeqMismatch {
                        id: id.clone(),
                        expected: *expected,
                        found: old.seq,
                    }));
                }
                add_holds(deltas, &old, -1);
            }
            StagingOp::ReleaseIfIdle {
                id,
                idle_before_unix_ms,
            } => {
                let Some(old) = table.get(id.as_str())?.map(|v| v.value().to_vec()) else {
                    continue;
                };
                let old = decode(id, &old).map_err(IndexError::Staging)?;
                if old.last_checkpoint_unix_ms < *idle_before_unix_ms {
                    table.remove(id.as_str())?;
                    add_holds(deltas, &old, -1);
                }
            }
        }
    }
    Ok(())
}

/// Every stored checkpoint, in id order. A checkpoint that does not decode is reported as an
/// error naming its id.
pub fn list(db: &redb::Database) -> Result<Vec<(String, StagingCheckpoint)>, IndexError> {
    let txn = db.begin_read()?;
    let table = match txn.open_table(STAGING) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for row in table.iter()? {
        let (k, v) = row?;
        let id = k.value().to_string();
        let checkpoint = decode(&id, v.value()).map_err(IndexError::Staging)?;
        out.push((id, checkpoint));
    }
    Ok(out)
}

/// The checkpoint stored under `id`, if any.
pub fn get(db: &redb::Database, id: &str) -> Result<Option<StagingCheckpoint>, IndexError> {
    let txn = db.begin_read()?;
    let table = match txn.open_table(STAGING) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    match table.get(id)? {
        Some(v) => Ok(Some(decode(id, v.value()).map_err(IndexError::Staging)?)),
        None => Ok(None),
    }
}
