//! Checkpointed (resumable) uploads on the engine's one write path.
//!
//! A [`StagingHandle`] runs an engine [`Upload`] with its own commit policy, [`Checkpointer`]:
//! it attaches a [`StagingCheckpoint`] to the batch every `interval_bytes` of input, at every
//! leaf close and when the last checkpoint is older than `max_age_ms`, so the checkpoint and the
//! index entries of the chunks and nodes it covers land in ONE transaction. After a crash,
//! [`resume`] rebuilds the tree builder from the checkpoint and restarts chunking at
//! `last_chunk_byte_offset` (a chunk boundary), so the finished blob equals an uninterrupted
//! upload's, ref for ref. Chunks that landed after the checkpoint are found in the index and not
//! stored again.
//!
//! The publisher replays its input from [`StagingCheckpoint::replay_offset`], the start of the
//! last covered chunk: those bytes are re-hashed and compared with the checkpoint (a different
//! input is [`StagingError::ReplayMismatch`]), then chunking continues.
//!
//! Finishing pins the blob (or holds it, for a replicated channel's pin), removes the checkpoint
//! (releasing its holds) and records the ref, the channel and the pin name under the staging id,
//! all in one transaction; resuming a finished id within the abandonment grace returns them
//! ([`Resumed::Finished`]).

use net_mesh_engine::codec::Hash;
use net_mesh_engine::error::short_hex;
use net_mesh_engine::index::IndexError;
use net_mesh_engine::index::{PinName, blob_id, check_pin_name};
use net_mesh_engine::tree::TreeBuilder;
use net_mesh_engine::write::FinishedUpload as BuiltBlob;
use net_mesh_engine::{
    BlobRef, ChunkingStrategy, Classify, CommitPolicy, Encoding, ErrorClass, ExtensionError,
    ExtensionOp, OpenBatch, PutOutcome, Store, StoreError, Upload,
};

use crate::StagingConfig;
use crate::checkpoint::StagingCheckpoint;
use crate::finished::FinishedUpload;
use crate::table::{self, NAMESPACE, StagingOp, StagingTableError};

/// Default bytes of input between two checkpoints.
pub const DEFAULT_CHECKPOINT_INTERVAL: u64 = 64 * 1024 * 1024;
/// Default age after which an upload's next chunk triggers a checkpoint (keeps live but slow
/// uploads from looking abandoned).
pub const DEFAULT_CHECKPOINT_MAX_AGE_MS: u64 = 10 * 60 * 1000;

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

/// Why a resumable upload operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StagingError {
    #[error(transparent)]
    Store(StoreError),
    #[error("invalid staging id {0:?}: use 1..=64 characters of A-Z a-z 0-9 . _ -")]
    InvalidId(String),
    #[error("staging upload {0:?} does not exist (aborted, or released as abandoned)")]
    NotFound(String),
    #[error("staging id {0:?} already exists; resume or abort it")]
    Exists(String),
    #[error("staging upload {0:?} already finished; `staging resume` gives its ref")]
    Finished(String),
    #[error("staging upload {id:?} moved on (resumed or taken over elsewhere): {detail}")]
    Conflict { id: String, detail: String },
    #[error(
        "replayed input differs from the original upload: bytes {start}..{end} hash to {}, \
         the checkpoint holds {}",
        short_hex(actual),
        short_hex(expected)
    )]
    ReplayMismatch {
        start: u64,
        end: u64,
        expected: Hash,
        actual: Hash,
    },
    #[error("input ended at offset {ended_at}, before the replayed chunk ending at {needed}")]
    ReplayTooShort { ended_at: u64, needed: u64 },
    #[error("this upload handle failed earlier; resume the upload from its last checkpoint")]
    Failed,
}

impl Classify for StagingError {
    fn class(&self) -> ErrorClass {
        match self {
            StagingError::Store(e) => e.class(),
            StagingError::InvalidId(_) | StagingError::ReplayTooShort { .. } => ErrorClass::Usage,
            StagingError::NotFound(_) => ErrorClass::NotFound,
            StagingError::Exists(_) | StagingError::Finished(_) | StagingError::Conflict { .. } => {
                ErrorClass::Refused
            }
            StagingError::ReplayMismatch { .. } => ErrorClass::Refused,
            StagingError::Failed => ErrorClass::Refused,
        }
    }
}

impl From<StoreError> for StagingError {
    /// Gives refusals decided inside the index transaction their staging meaning.
    fn from(e: StoreError) -> Self {
        if let StoreError::Index(IndexError::Extension(ExtensionError::Refused {
            namespace: NAMESPACE,
            source,
            ..
        })) = &e
            && let Some(refusal) = source.downcast_ref::<StagingTableError>()
        {
            return match refusal {
                StagingTableError::NotFound(id) => StagingError::NotFound(id.clone()),
                StagingTableError::Exists(id) => StagingError::Exists(id.clone()),
                StagingTableError::Finished(id) => StagingError::Finished(id.clone()),
                StagingTableError::SeqMismatch { id, .. } => StagingError::Conflict {
                    id: id.clone(),
                    detail: refusal.to_string(),
                },
            };
        }
        StagingError::Store(e)
    }
}

/// The commit policy of resumable uploads (see the module docs).
#[derive(Debug)]
pub(crate) struct Checkpointer {
    id: String,
    /// Seq of the checkpoint stored in the index (the next one is `seq + 1`).
    seq: u64,
    created_unix_ms: u64,
    pub(crate) chunking: ChunkingStrategy,
    pin_name: String,
    pin_name_given: bool,
    /// Channel the finished blob is pinned in.
    channel: String,
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
            pin_name_given: self.pin_name_given,
            channel: self.channel.clone(),
            tree: tree.export_state(),
        }
    }

    /// Attaches the next checkpoint to the open batch and commits both in one transaction.
    fn commit(
        &mut self,
        tree: &TreeBuilder,
        batch: &mut OpenBatch<'_>,
    ) -> Result<(), StagingError> {
        let now = now_ms();
        let next = self.seq.saturating_add(1);
        batch.push_op(Box::new(StagingOp::Put {
            id: self.id.clone(),
            expect_seq: Some(self.seq),
            checkpoint: Box::new(self.checkpoint(tree, next, now)),
        }));
        net_mesh_segments::failpoint::hit("staging.checkpoint.before_commit");
        batch.commit()?;
        net_mesh_segments::failpoint::hit("staging.checkpoint.after_commit");
        self.seq = next;
        self.covered = tree.total_bytes();
        self.last_unix_ms = now;
        self.completed_leaves = tree.completed_leaves();
        Ok(())
    }
}

impl CommitPolicy for Checkpointer {
    type Error = StagingError;

    fn after_chunk(
        &mut self,
        tree: &TreeBuilder,
        batch: &mut OpenBatch<'_>,
    ) -> Result<(), StagingError> {
        // Every batch commit carries a checkpoint (same fdatasync cadence as a plain upload),
        // and there is one at least every `interval_bytes`.
        let due = batch.is_full()
            || tree.total_bytes().saturating_sub(self.covered) >= self.cadence.interval_bytes
            || (self.cadence.at_leaf_close && tree.completed_leaves() != self.completed_leaves)
            || now_ms().saturating_sub(self.last_unix_ms) >= self.cadence.max_age_ms;
        if due {
            self.commit(tree, batch)?;
        }
        Ok(())
    }
}

/// The replayed last chunk still being checked.
#[derive(Debug)]
pub(crate) struct ReplayCheck {
    hasher: blake3::Hasher,
    start: u64,
    end: u64,
    remaining: u64,
    expected: Hash,
}

/// Checks the head of `data` against a resume's replayed last chunk (`replay`, cleared once
/// every replayed byte matched) and returns the bytes after it, the new input.
pub(crate) fn past_replay<'d>(
    replay: &mut Option<ReplayCheck>,
    data: &'d [u8],
) -> Result<&'d [u8], StagingError> {
    let Some(check) = replay else {
        return Ok(data);
    };
    let take = usize::try_from(check.remaining)
        .unwrap_or(usize::MAX)
        .min(data.len());
    let (head, rest) = data.split_at_checked(take).unwrap_or((data, &[]));
    check.hasher.update(head);
    check.remaining = check.remaining.saturating_sub(head.len() as u64);
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
        *replay = None;
    }
    Ok(rest)
}

/// A live resumable upload: `write` any number of times, then `finish` (or `abort`). Dropping
/// it leaves the upload resumable from its last checkpoint.
#[derive(Debug)]
pub struct StagingHandle<'s> {
    pub(crate) upload: Upload<'s>,
    pub(crate) ckpt: Checkpointer,
    pub(crate) replay: Option<ReplayCheck>,
    pub(crate) failed: bool,
    /// Its input stopped before the end ([`crate::InputEnd::Stopped`]): bytes after the last
    /// chunk cut may be gone, so it takes no more input and does not finish; a checkpoint
    /// still commits what was cut.
    pub(crate) stopped: bool,
}

impl StagingHandle<'_> {
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
        self.upload.tree().total_bytes()
    }

    pub(crate) fn usable(&self) -> Result<(), StagingError> {
        if self.failed || self.stopped {
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

    fn write_inner(&mut self, data: &[u8]) -> Result<(), StagingError> {
        let data = past_replay(&mut self.replay, data)?;
        if data.is_empty() {
            return Ok(());
        }
        self.upload.write(data, &mut self.ckpt)
    }

    /// Commits a checkpoint now (covering every chunk cut so far).
    pub fn checkpoint(&mut self) -> Result<(), StagingError> {
        if self.failed {
            return Err(StagingError::Failed);
        }
        let (tree, batch) = self.upload.parts();
        let result = self.ckpt.commit(tree, batch);
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    /// The channel the finished blob will be pinned in.
    pub fn channel(&self) -> &str {
        &self.ckpt.channel
    }

    /// The name the finished blob is pinned under.
    pub fn pin_name(&self) -> &str {
        &self.ckpt.pin_name
    }

    /// Whether the user gave [`StagingHandle::pin_name`] (kept in the checkpoint, so a resumed
    /// upload knows it too): finishing then renames the blob's pin if its channel pins it
    /// already.
    pub fn pin_name_given(&self) -> bool {
        self.ckpt.pin_name_given
    }

    /// Ends the input: builds the blob, pins it in the upload's channel, removes the
    /// checkpoint (releasing its holds) and records the ref under the staging id, all in one
    /// transaction. A channel that no longer exists is refused
    /// ([`StoreError::NoSuchChannel`]) before anything is pinned: checked first, and again
    /// inside that transaction, which it refuses whole; the upload stays live and resumable.
    pub fn finish(self) -> Result<PutOutcome, StagingError> {
        self.finish_keeping(Keep::Pin)
    }

    /// [`StagingHandle::finish`] that pins nothing: `hold(blob_ref)` gives the extension op
    /// that keeps the blob's objects instead (a replicated channel's hold until its pin is
    /// applied), committed in the same transaction as the blob and the finished record.
    pub fn finish_held(
        self,
        hold: impl FnOnce(&BlobRef) -> Box<dyn ExtensionOp>,
    ) -> Result<PutOutcome, StagingError> {
        self.finish_keeping(Keep::Hold(Box::new(hold)))
    }

    fn finish_keeping(self, keep: Keep<'_>) -> Result<PutOutcome, StagingError> {
        self.usable()?;
        if !self.upload.store().has_channel(&self.ckpt.channel)? {
            return Err(StoreError::NoSuchChannel(self.ckpt.channel.clone()).into());
        }
        if let Some(check) = &self.replay {
            return Err(StagingError::ReplayTooShort {
                ended_at: check.end.saturating_sub(check.remaining),
                needed: check.end,
            });
        }
        let Self {
            upload, mut ckpt, ..
        } = self;
        let BuiltBlob {
            blob_ref,
            chunks,
            mut batch,
        } = upload.finish(&mut ckpt)?;
        match keep {
            Keep::Pin => batch.pin_named_in(
                &ckpt.channel,
                &blob_ref,
                &PinName {
                    name: ckpt.pin_name.clone(),
                    given: ckpt.pin_name_given,
                },
            ),
            Keep::Hold(hold) => batch.push_op(hold(&blob_ref)),
        }
        batch.push_op(Box::new(StagingOp::Finish {
            id: ckpt.id.clone(),
            expect_seq: ckpt.seq,
            finished: FinishedUpload {
                finished_unix_ms: now_ms(),
                chunks,
                channel: ckpt.channel.clone(),
                name: ckpt.pin_name.clone(),
                name_given: ckpt.pin_name_given,
                blob_ref: blob_ref.clone(),
            },
        }));
        net_mesh_segments::failpoint::hit("staging.finalize.before_commit");
        batch.commit()?;
        Ok(PutOutcome {
            blob_id: blob_id(&blob_ref),
            blob_ref,
            chunks,
            new_chunks: batch.new_chunks(),
            new_bytes: batch.new_bytes(),
        })
    }

    /// Abandons the upload: removes its checkpoint and releases its holds at once. Objects it
    /// stored stay until GC finds them unreferenced.
    pub fn abort(self) -> Result<(), StagingError> {
        let Self {
            mut upload, ckpt, ..
        } = self;
        let batch = upload.batch();
        batch.push_op(Box::new(StagingOp::Delete {
            id: ckpt.id.clone(),
            expect_seq: Some(ckpt.seq),
        }));
        batch.commit()?;
        Ok(())
    }
}

/// What keeps a finished upload's blob: its pin, or an extension's hold.
enum Keep<'a> {
    Pin,
    Hold(HoldOf<'a>),
}

/// The extension op that holds a finished blob, given its ref.
type HoldOf<'a> = Box<dyn FnOnce(&BlobRef) -> Box<dyn ExtensionOp> + 'a>;

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Starts a resumable upload whose blob is pinned in `channel`: commits its first (empty)
/// checkpoint, so the staging id can be resumed from the moment this returns. The store must be
/// open with the [`crate::Staging`] extension. A bad channel name or one the store does not
/// have is refused before anything is written.
pub fn begin<'s>(
    store: &'s Store,
    channel: &str,
    config: StagingConfig,
) -> Result<StagingHandle<'s>, StagingError> {
    let staging_id = config.staging_id.unwrap_or_else(crate::new_staging_id);
    if !table::valid_staging_id(&staging_id) {
        return Err(StagingError::InvalidId(staging_id));
    }
    check_pin_name(&config.pin_name).map_err(StoreError::from)?;
    if !store.has_channel(channel)? {
        return Err(StoreError::NoSuchChannel(channel.to_string()).into());
    }
    let upload = Upload::new(store, config.chunking, config.tree, Encoding::Plain)?;
    let now = now_ms();
    let ckpt = Checkpointer {
        id: staging_id,
        seq: 0,
        created_unix_ms: now,
        chunking: config.chunking,
        pin_name: config.pin_name,
        pin_name_given: config.pin_name_given,
        channel: channel.to_string(),
        cadence: config.cadence,
        covered: 0,
        last_unix_ms: now,
        completed_leaves: 0,
    };
    store.commit_ops(vec![Box::new(StagingOp::Put {
        id: ckpt.id.clone(),
        expect_seq: None,
        checkpoint: Box::new(ckpt.checkpoint(upload.tree(), 0, now)),
    })])?;
    Ok(StagingHandle {
        upload,
        ckpt,
        replay: None,
        failed: false,
        stopped: false,
    })
}

/// What resuming a staging id found.
#[derive(Debug)]
pub enum Resumed<'s> {
    /// The upload is live: replay the input from `offset` into `writer`, then finish it.
    Live {
        writer: Box<StagingHandle<'s>>,
        offset: u64,
    },
    /// The upload already finished (within the abandonment grace): its outcome, and the
    /// channel and name its finish pinned the blob under (or, when it was held for a
    /// replicated channel, the pin that is to be proposed), and whether the user gave that
    /// name (false for a record of an older build, which did not keep it). Nothing new was
    /// stored by this call, so `new_chunks` and `new_bytes` are 0.
    Finished {
        outcome: PutOutcome,
        channel: String,
        name: String,
        name_given: bool,
    },
}

/// Continues the upload `staging_id` from its last checkpoint, or reports that it finished.
pub fn resume<'s>(
    store: &'s Store,
    staging_id: &str,
    cadence: CheckpointCadence,
) -> Result<Resumed<'s>, StagingError> {
    if !table::valid_staging_id(staging_id) {
        return Err(StagingError::InvalidId(staging_id.to_string()));
    }
    let (stored, finished) = store.read_extension(NAMESPACE, |r| {
        Ok((
            table::upload(r, staging_id)?,
            table::finished(r, staging_id)?,
        ))
    })?;
    let stored = match (stored, finished) {
        (Some(stored), _) => stored,
        (None, Some(done)) => {
            return Ok(Resumed::Finished {
                outcome: PutOutcome {
                    blob_id: blob_id(&done.blob_ref),
                    blob_ref: done.blob_ref,
                    chunks: done.chunks,
                    new_chunks: 0,
                    new_bytes: 0,
                },
                channel: done.channel,
                name: done.name,
                name_given: done.name_given,
            });
        }
        (None, None) => return Err(StagingError::NotFound(staging_id.to_string())),
    };
    let offset = stored.replay_offset();
    let replay = stored.last_chunk().map(|(expected, size)| ReplayCheck {
        hasher: blake3::Hasher::new(),
        start: offset,
        end: stored.last_chunk_byte_offset(),
        remaining: u64::from(size),
        expected,
    });
    let covered = stored.last_chunk_byte_offset();
    let completed_leaves = stored.tree.completed_leaves;
    let upload = Upload::resume(store, stored.chunking, stored.tree)?;
    let ckpt = Checkpointer {
        id: staging_id.to_string(),
        seq: stored.seq,
        created_unix_ms: stored.created_unix_ms,
        chunking: stored.chunking,
        pin_name: stored.pin_name,
        pin_name_given: stored.pin_name_given,
        channel: stored.channel,
        cadence,
        covered,
        last_unix_ms: now_ms(),
        completed_leaves,
    };
    let writer = StagingHandle {
        upload,
        ckpt,
        replay,
        failed: false,
        stopped: false,
    };
    Ok(Resumed::Live {
        writer: Box::new(writer),
        offset,
    })
}

/// Aborts the upload `staging_id` by id (e.g. from another process after a crash): removes its
/// checkpoint and releases its holds. Returns false when it did not exist.
pub fn abort_id(store: &Store, staging_id: &str) -> Result<bool, StagingError> {
    let live = store.read_extension(NAMESPACE, |r| table::upload(r, staging_id))?;
    if live.is_none() {
        return Ok(false);
    }
    store.commit_ops(vec![Box::new(StagingOp::Delete {
        id: staging_id.to_string(),
        expect_seq: None,
    })])?;
    Ok(true)
}
