//! Checkpointed (resumable) uploads: the engine side of durable streaming staging.
//!
//! A [`ResumableWriter`] runs the same write path as [`crate::BlobWriter`]
//! ([`crate::writer::WritePath`]), but its commit policy attaches a [`StagingCheckpoint`] to the
//! batch every `interval_bytes` of input, at every leaf close and when the last checkpoint is
//! older than `max_age_ms`: the checkpoint and the index entries of the chunks and nodes it
//! covers land in ONE redb transaction. After a crash, [`Store::resume_upload`] rebuilds the
//! tree builder from the checkpoint and restarts chunking at `last_chunk_byte_offset` (a chunk
//! boundary), so the finished blob equals an uninterrupted upload's, ref for ref. Chunks that
//! landed after the checkpoint are found in the index and not stored again.
//!
//! The publisher replays its input from [`StagingCheckpoint::replay_offset`], the start of the
//! last covered chunk: those bytes are re-hashed and compared with the checkpoint (a different
//! input is [`StagingError::ReplayMismatch`]), then chunking continues.
//!
//! GC protection: a stored checkpoint holds +1 on every object its tree state names (open leaf
//! chunks, pending nodes); see [`crate::staging_table`]. Finishing, aborting and
//! [`Store::release_abandoned_staging`] release those holds in their transaction.

use std::time::Duration;

use crate::checkpoint::StagingCheckpoint;
use crate::chunking::{Chunker, ChunkingStrategy};
use crate::codec::{Encoding, Hash};
use crate::error::StoreError;
use crate::index::{Batch, IndexError, Pin, blob_id, check_pin_name};
use crate::staging_table::{self, StagingOp, StagingTableError};
use crate::store::{Store, now_ms};
use crate::tree::{StateError, TreeBuilder, TreePolicy};
use crate::writer::{CommitPolicy, Pending, PutOutcome, WritePath};

/// Default bytes of input between two checkpoints.
pub const DEFAULT_CHECKPOINT_INTERVAL: u64 = 64 * 1024 * 1024;
/// Default age after which an upload's next chunk triggers a checkpoint (keeps live but slow
/// uploads from looking abandoned).
pub const DEFAULT_CHECKPOINT_MAX_AGE_MS: u64 = 10 * 60 * 1000;
/// Default grace period after which an upload with no checkpoint is abandoned.
pub const DEFAULT_ABANDON_GRACE: Duration = Duration::from_secs(24 * 60 * 60);

/// When a resumable upload commits a checkpoint. Not persisted: a resumed upload may use
/// another cadence without changing the blob it builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointCadence {
    /// Commit a checkpoint once this many input bytes are covered since the last one.
    pub interval_bytes: u64,
    /// Also commit one whenever a leaf node is completed.
    pub at_leaf_close: bool,
    /// Also commit one when the last is older than this (milliseconds).
    pub max_age_ms: u64,
}

impl Default for CheckpointCadence {
    fn default() -> Self {
        CheckpointCadence {
            interval_bytes: DEFAULT_CHECKPOINT_INTERVAL,
            at_leaf_close: true,
            max_age_ms: DEFAULT_CHECKPOINT_MAX_AGE_MS,
        }
    }
}

/// How a resumable upload starts.
#[derive(Debug, Clone)]
pub struct ResumableConfig {
    /// Stable id the publisher keeps to resume (see [`staging_table::valid_staging_id`]).
    pub staging_id: String,
    /// Pin label of the finished blob.
    pub pin_name: String,
    pub chunking: ChunkingStrategy,
    pub tree: TreePolicy,
    pub cadence: CheckpointCadence,
}

/// Why a resumable upload operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StagingError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("invalid staging id {0:?}: use 1..=64 characters of A-Z a-z 0-9 . _ -")]
    InvalidId(String),
    #[error("staging upload {0:?} does not exist (finished, aborted or released as abandoned)")]
    NotFound(String),
    #[error("staging id {0:?} already exists; resume or abort it")]
    Exists(String),
    #[error(
        "replayed input differs from the original upload: bytes {start}..{end} hash to {}, \
         the checkpoint holds {}",
        crate::error::short_hex(actual),
        crate::error::short_hex(expected)
    )]
    ReplayMismatch {
        start: u64,
        end: u64,
        expected: Hash,
        actual: Hash,
    },
    #[error("input ended at offset {ended_at}, before the replayed chunk ending at {needed}")]
    ReplayTooShort { ended_at: u64, needed: u64 },
    #[error("checkpointed tree state is inconsistent: {0}")]
    State(#[from] StateError),
    #[error("this upload handle failed earlier; resume the upload from its last checkpoint")]
    Failed,
}

impl StagingError {
    /// True when stored data is damaged (a checkpoint that does not decode, a missing object).
    pub fn is_integrity(&self) -> bool {
        match self {
            StagingError::Store(StoreError::Index(e)) => e.is_corruption(),
            StagingError::State(_) => true,
            _ => false,
        }
    }
}

/// Maps refusals decided inside the index transaction to their staging meaning.
fn staging_error(e: StoreError) -> StagingError {
    match e {
        StoreError::Index(IndexError::Staging(StagingTableError::NotFound(id))) => {
            StagingError::NotFound(id)
        }
        StoreError::Index(IndexError::Staging(StagingTableError::Exists(id))) => {
            StagingError::Exists(id)
        }
        other => StagingError::Store(other),
    }
}

/// The commit policy of resumable uploads (see the module docs).
#[derive(Debug)]
struct Checkpointer {
    id: String,
    /// Seq of the checkpoint stored in the index (the next one is `seq + 1`).
    seq: u64,
    created_unix_ms: u64,
    chunking: ChunkingStrategy,
    pin_name: String,
    cadence: CheckpointCadence,
    /// Input covered by the stored checkpoint.
    covered: u64,
    last_unix_ms: u64,
    completed_leaves: u64,
}

impl Checkpointer {
    fn checkpoint(&self, tree: &TreeBuilder, seq: u64, now: u64) -> StagingCheckpoint {
        StagingCheckpoint {
            seq,
            created_unix_ms: self.created_unix_ms,
            last_checkpoint_unix_ms: now,
            chunking: self.chunking,
            pin_name: self.pin_name.clone(),
            tree: tree.export_state(),
        }
    }

    /// Attaches the next checkpoint to the open batch and commits both in one transaction.
    fn commit(&mut self, tree: &TreeBuilder, pending: &mut Pending<'_>) -> Result<(), StoreError> {
        let now = now_ms();
        let next = self.seq.saturating_add(1);
        pending.batch.staging.push(StagingOp::Put {
            id: self.id.clone(),
            expect_seq: Some(self.seq),
            checkpoint: Box::new(self.checkpoint(tree, next, now)),
        });
        net_mesh_segments::failpoint::hit("staging.checkpoint.before_commit");
        pending.commit()?;
        net_mesh_segments::failpoint::hit("staging.checkpoint.after_commit");
        self.seq = next;
        self.covered = tree.total_bytes();
        self.last_unix_ms = now;
        self.completed_leaves = tree.completed_leaves();
        Ok(())
    }
}

impl CommitPolicy for Checkpointer {
    fn after_chunk(
        &mut self,
        tree: &TreeBuilder,
        pending: &mut Pending<'_>,
    ) -> Result<(), StoreError> {
        // Every batch commit carries a checkpoint (same fdatasync cadence as a plain upload),
        // and there is one at least every `interval_bytes`.
        let due = pending.batch_full()
            || tree.total_bytes().saturating_sub(self.covered) >= self.cadence.interval_bytes
            || (self.cadence.at_leaf_close && tree.completed_leaves() != self.completed_leaves)
            || now_ms().saturating_sub(self.last_unix_ms) >= self.cadence.max_age_ms;
        if due {
            self.commit(tree, pending)?;
        }
        Ok(())
    }
}

/// The replayed last chunk still being checked.
#[derive(Debug)]
struct ReplayCheck {
    hasher: blake3::Hasher,
    start: u64,
    end: u64,
    remaining: u64,
    expected: Hash,
}

/// A resumable upload in progress: `write` any number of times, then `finish` (or `abort`).
pub struct ResumableWriter<'s> {
    path: WritePath<'s>,
    ckpt: Checkpointer,
    replay: Option<ReplayCheck>,
    failed: bool,
}

impl std::fmt::Debug for ResumableWriter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResumableWriter")
            .field("staging_id", &self.ckpt.id)
            .field("seq", &self.ckpt.seq)
            .field("chunked_bytes", &self.path.tree.total_bytes())
            .finish()
    }
}

impl<'s> ResumableWriter<'s> {
    pub fn staging_id(&self) -> &str {
        &self.ckpt.id
    }

    /// Seq of the last committed checkpoint.
    pub fn checkpoint_seq(&self) -> u64 {
        self.ckpt.seq
    }

    /// Input bytes covered by the last committed checkpoint.
    pub fn checkpointed_bytes(&self) -> u64 {
        self.ckpt.covered
    }

    /// Input bytes cut into chunks so far.
    pub fn chunked_bytes(&self) -> u64 {
        self.path.tree.total_bytes()
    }

    fn usable(&self) -> Result<(), StagingError> {
        if self.failed {
            return Err(StagingError::Failed);
        }
        Ok(())
    }

    /// Adds the next bytes of the input. After a resume, the first bytes are the replayed last
    /// chunk, which is checked against the checkpoint and not stored again.
    pub fn write(&mut self, data: &[u8]) -> Result<(), StagingError> {
        self.usable()?;
        let result = self.write_inner(data);
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    fn write_inner(&mut self, mut data: &[u8]) -> Result<(), StagingError> {
        if let Some(check) = &mut self.replay {
            let take = usize::try_from(check.remaining)
                .unwrap_or(usize::MAX)
                .min(data.len());
            let (head, rest) = data.split_at_checked(take).unwrap_or((data, &[]));
            check.hasher.update(head);
            check.remaining = check.remaining.saturating_sub(head.len() as u64);
            data = rest;
            if check.remaining == 0 {
                let actual = *check.hasher.finalize().as_bytes();
                if actual != check.expected {
                    return Err(StagingError::ReplayMismatch {
                        start: check.start,
                        end: check.end,
                        expected: check.expected,
                        actual,
                    });
                }
                self.replay = None;
            }
        }
        if data.is_empty() {
            return Ok(());
        }
        self.path.write(data, &mut self.ckpt).map_err(staging_error)
    }

    /// Commits a checkpoint now (covering every chunk cut so far).
    pub fn checkpoint(&mut self) -> Result<(), StagingError> {
        self.usable()?;
        let Self { path, ckpt, .. } = self;
        let result = ckpt.commit(&path.tree, &mut path.pending);
        if result.is_err() {
            self.failed = true;
        }
        result.map_err(staging_error)
    }

    /// Ends the input: builds the blob, pins it and removes the checkpoint (releasing its
    /// holds), all in one transaction.
    pub fn finish(self) -> Result<PutOutcome, StagingError> {
        self.usable()?;
        if let Some(check) = &self.replay {
            return Err(StagingError::ReplayTooShort {
                ended_at: check.end.saturating_sub(check.remaining),
                needed: check.end,
            });
        }
        let Self { path, mut ckpt, .. } = self;
        let (blob_ref, chunks, mut pending) = path.finish_tree(&mut ckpt).map_err(staging_error)?;
        pending.batch.pins_add.push(Pin {
            blob_ref: blob_ref.clone(),
            name: ckpt.pin_name.clone(),
            created_unix_ms: now_ms(),
        });
        pending.batch.staging.push(StagingOp::Delete {
            id: ckpt.id.clone(),
            expect_seq: Some(ckpt.seq),
        });
        net_mesh_segments::failpoint::hit("staging.finalize.before_commit");
        pending.commit().map_err(staging_error)?;
        Ok(PutOutcome {
            blob_id: blob_id(&blob_ref),
            blob_ref,
            chunks,
            new_chunks: pending.new_chunks,
            new_bytes: pending.new_bytes,
        })
    }

    /// Abandons the upload: removes its checkpoint and releases its holds at once. Objects it
    /// stored stay until GC finds them unreferenced.
    pub fn abort(self) -> Result<(), StagingError> {
        let Self { path, ckpt, .. } = self;
        let mut pending = path.pending;
        pending.batch.staging.push(StagingOp::Delete {
            id: ckpt.id.clone(),
            expect_seq: Some(ckpt.seq),
        });
        pending.commit().map_err(staging_error)?;
        Ok(())
    }
}

impl Store {
    /// Starts a resumable upload: commits its first (empty) checkpoint, so the staging id can
    /// be resumed from the moment this returns.
    pub fn begin_upload(
        &self,
        config: ResumableConfig,
    ) -> Result<ResumableWriter<'_>, StagingError> {
        if !staging_table::valid_staging_id(&config.staging_id) {
            return Err(StagingError::InvalidId(config.staging_id));
        }
        check_pin_name(&config.pin_name).map_err(StoreError::from)?;
        self.check_writable()?;
        let tree = TreeBuilder::new(config.tree, Encoding::Plain).map_err(StoreError::from)?;
        let chunker = Chunker::new(config.chunking).map_err(StoreError::from)?;
        let now = now_ms();
        let ckpt = Checkpointer {
            id: config.staging_id,
            seq: 0,
            created_unix_ms: now,
            chunking: config.chunking,
            pin_name: config.pin_name,
            cadence: config.cadence,
            covered: 0,
            last_unix_ms: now,
            completed_leaves: 0,
        };
        let mut batch = Batch::default();
        batch.staging.push(StagingOp::Put {
            id: ckpt.id.clone(),
            expect_seq: None,
            checkpoint: Box::new(ckpt.checkpoint(&tree, 0, now)),
        });
        self.commit_batch(batch).map_err(staging_error)?;
        Ok(ResumableWriter {
            path: WritePath {
                chunker,
                tree,
                pending: Pending::new(self)?,
                stripes: None,
            },
            ckpt,
            replay: None,
            failed: false,
        })
    }

    /// Continues the upload `staging_id` from its last checkpoint. Returns the writer and the
    /// input offset from which the publisher must replay its input.
    pub fn resume_upload(
        &self,
        staging_id: &str,
        cadence: CheckpointCadence,
    ) -> Result<(ResumableWriter<'_>, u64), StagingError> {
        self.check_writable()?;
        let stored = self
            .staging_checkpoint(staging_id)?
            .ok_or_else(|| StagingError::NotFound(staging_id.to_string()))?;
        let replay_from = stored.replay_offset();
        let replay = stored.last_chunk().map(|(expected, size)| ReplayCheck {
            hasher: blake3::Hasher::new(),
            start: replay_from,
            end: stored.last_chunk_byte_offset(),
            remaining: u64::from(size),
            expected,
        });
        let chunker = Chunker::new(stored.chunking).map_err(StoreError::from)?;
        let covered = stored.last_chunk_byte_offset();
        let completed_leaves = stored.tree.completed_leaves;
        let tree = TreeBuilder::from_state(stored.tree)?;
        let ckpt = Checkpointer {
            id: staging_id.to_string(),
            seq: stored.seq,
            created_unix_ms: stored.created_unix_ms,
            chunking: stored.chunking,
            pin_name: stored.pin_name,
            cadence,
            covered,
            last_unix_ms: now_ms(),
            completed_leaves,
        };
        let writer = ResumableWriter {
            path: WritePath {
                chunker,
                tree,
                pending: Pending::new(self)?,
                stripes: None,
            },
            ckpt,
            replay,
            failed: false,
        };
        Ok((writer, replay_from))
    }

    /// The stored checkpoint of `staging_id`, if the upload is live.
    pub fn staging_checkpoint(
        &self,
        staging_id: &str,
    ) -> Result<Option<StagingCheckpoint>, StoreError> {
        Ok(staging_table::get(self.index.database(), staging_id)?)
    }

    /// Every live resumable upload with its checkpoint, in id order.
    pub fn staging_uploads(&self) -> Result<Vec<(String, StagingCheckpoint)>, StoreError> {
        Ok(staging_table::list(self.index.database())?)
    }

    /// Reference counts held by live staging checkpoints, per object (fsck adds these to the
    /// counts it derives from parent nodes and pins before comparing with the index).
    pub fn staging_holds(&self) -> Result<std::collections::HashMap<Hash, u64>, StoreError> {
        let mut holds = std::collections::HashMap::new();
        for (_, checkpoint) in self.staging_uploads()? {
            for hash in checkpoint.tree.held_objects() {
                let n: &mut u64 = holds.entry(hash).or_insert(0);
                *n = n.saturating_add(1);
            }
        }
        Ok(holds)
    }

    /// Aborts the upload `staging_id` by id (e.g. from another process after a crash): removes
    /// its checkpoint and releases its holds. Returns false when it did not exist.
    pub fn abort_upload(&self, staging_id: &str) -> Result<bool, StoreError> {
        if self.staging_checkpoint(staging_id)?.is_none() {
            return Ok(false);
        }
        let mut batch = Batch::default();
        batch.staging.push(StagingOp::Delete {
            id: staging_id.to_string(),
            expect_seq: None,
        });
        self.commit_batch(batch)?;
        Ok(true)
    }

    /// Releases every upload whose last checkpoint is older than `grace` (abandoned: no append
    /// committed for that long): removes its checkpoint and drops its holds, so GC may reclaim
    /// what only it referenced. The age is re-checked inside the releasing transaction, so an
    /// upload that checkpoints concurrently survives. Returns the released staging ids.
    pub fn release_abandoned_staging(&self, grace: Duration) -> Result<Vec<String>, StoreError> {
        let grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
        let idle_before_unix_ms = now_ms().saturating_sub(grace_ms);
        let stale: Vec<String> = self
            .staging_uploads()?
            .into_iter()
            .filter(|(_, c)| c.last_checkpoint_unix_ms < idle_before_unix_ms)
            .map(|(id, _)| id)
            .collect();
        if stale.is_empty() {
            return Ok(stale);
        }
        let batch = Batch {
            staging: stale
                .iter()
                .map(|id| StagingOp::ReleaseIfIdle {
                    id: id.clone(),
                    idle_before_unix_ms,
                })
                .collect(),
            ..Batch::default()
        };
        self.commit_batch(batch)?;
        Ok(stale)
    }
}
