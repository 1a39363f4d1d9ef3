//! `net-mesh-staging`: durable, resumable streaming uploads. A publisher begins an upload, gets
//! a stable staging id, appends bytes of any sizes and finalizes into a pinned blob; if it is
//! killed at any instant it resumes from the last checkpoint with
//! [`resume_streaming_store`], replays its input from the returned offset, and the finished blob
//! is byte-for-byte and ref-for-ref identical to an uninterrupted upload.
//!
//! This crate is the API and the listing/abandonment policy; the checkpointed write path, the
//! checkpoint format (docs/FORMAT.md §4) and the one-transaction commit live in the engine
//! (`net_mesh_engine::resumable`). It must never write to the store except through the engine,
//! never know about the network, and never panic on a checkpoint read from disk.

use std::time::Duration;

pub use net_mesh_engine::checkpoint::StagingCheckpoint;
pub use net_mesh_engine::resumable::{
    CheckpointCadence, DEFAULT_ABANDON_GRACE, DEFAULT_CHECKPOINT_INTERVAL, StagingError,
};
use net_mesh_engine::resumable::{ResumableConfig, ResumableWriter};
pub use net_mesh_engine::staging_table::valid_staging_id;
use net_mesh_engine::{ChunkingStrategy, PutOutcome, Store, StoreError, TreePolicy};

/// How a streaming upload starts.
#[derive(Debug, Clone)]
pub struct StagingConfig {
    /// The id to use; `None` generates a fresh random one.
    pub staging_id: Option<String>,
    /// Pin label of the finished blob.
    pub pin_name: String,
    pub chunking: ChunkingStrategy,
    pub tree: TreePolicy,
    pub cadence: CheckpointCadence,
}

impl StagingConfig {
    /// The store's chunking and tree policy, default checkpoint cadence, a generated id.
    pub fn for_store(store: &Store) -> StagingConfig {
        StagingConfig {
            staging_id: None,
            pin_name: String::new(),
            chunking: store.config().chunking,
            tree: store.config().tree,
            cadence: CheckpointCadence::default(),
        }
    }
}

/// A live upload. Dropping it without [`finalize_streaming_store`] or
/// [`abort_streaming_store`] leaves the upload resumable from its last checkpoint.
#[derive(Debug)]
pub struct StagingHandle<'s> {
    writer: ResumableWriter<'s>,
}

impl StagingHandle<'_> {
    /// The stable id to persist for [`resume_streaming_store`].
    pub fn staging_id(&self) -> &str {
        self.writer.staging_id()
    }

    /// Input bytes covered by the last durable checkpoint.
    pub fn checkpointed_bytes(&self) -> u64 {
        self.writer.checkpointed_bytes()
    }

    /// Input bytes cut into chunks so far (durable or not).
    pub fn chunked_bytes(&self) -> u64 {
        self.writer.chunked_bytes()
    }

    /// Commits a checkpoint now.
    pub fn checkpoint(&mut self) -> Result<(), StagingError> {
        self.writer.checkpoint()
    }
}

/// A fresh staging id: 32 lowercase hex digits from BLAKE3 over the clock, the pid, a counter
/// and a stack address (unique enough for ids; not a secret).
pub fn new_staging_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = blake3::Hasher::new();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    h.update(&nanos.to_le_bytes());
    h.update(&std::process::id().to_le_bytes());
    h.update(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    let local = 0u8;
    h.update(&(std::ptr::addr_of!(local) as usize).to_le_bytes());
    h.finalize()
        .as_bytes()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Starts an upload and commits its first checkpoint: from the moment this returns, the
/// staging id can be resumed.
pub fn begin_streaming_store(
    store: &Store,
    config: StagingConfig,
) -> Result<StagingHandle<'_>, StagingError> {
    let staging_id = config.staging_id.unwrap_or_else(new_staging_id);
    let writer = store.begin_upload(ResumableConfig {
        staging_id,
        pin_name: config.pin_name,
        chunking: config.chunking,
        tree: config.tree,
        cadence: config.cadence,
    })?;
    Ok(StagingHandle { writer })
}

/// Appends the next bytes of the input (any sizes, any number of calls).
pub fn append_to_stream(handle: &mut StagingHandle<'_>, bytes: &[u8]) -> Result<(), StagingError> {
    handle.writer.write(bytes)
}

/// Ends the input, commits and pins the blob, and removes the checkpoint, in one transaction.
pub fn finalize_streaming_store(handle: StagingHandle<'_>) -> Result<PutOutcome, StagingError> {
    handle.writer.finish()
}

/// Abandons the upload and releases its references at once.
pub fn abort_streaming_store(handle: StagingHandle<'_>) -> Result<(), StagingError> {
    handle.writer.abort()
}

/// Aborts an upload by id (no live handle needed). Returns false if it did not exist.
pub fn abort_staging_id(store: &Store, staging_id: &str) -> Result<bool, StagingError> {
    Ok(store.abort_upload(staging_id)?)
}

/// Continues `staging_id` after a crash. Returns the handle and the input offset from which
/// the publisher must replay its input (the start of the last checkpointed chunk; those bytes
/// are re-hashed to check the input is the same, then chunking continues).
pub fn resume_streaming_store<'s>(
    store: &'s Store,
    staging_id: &str,
    cadence: CheckpointCadence,
) -> Result<(StagingHandle<'s>, u64), StagingError> {
    let (writer, offset) = store.resume_upload(staging_id, cadence)?;
    Ok((StagingHandle { writer }, offset))
}

/// What `list_staging` shows of one live upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagingInfo {
    pub staging_id: String,
    /// Input bytes durably covered by the last checkpoint (`last_chunk_byte_offset`).
    pub bytes_committed: u64,
    /// Where a resumed publisher replays from.
    pub resume_offset: u64,
    pub seq: u64,
    pub chunks: u64,
    pub created_unix_ms: u64,
    pub last_checkpoint_unix_ms: u64,
    pub chunking: ChunkingStrategy,
    pub pin_name: String,
}

impl StagingInfo {
    fn from_checkpoint(staging_id: String, c: &StagingCheckpoint) -> StagingInfo {
        StagingInfo {
            staging_id,
            bytes_committed: c.last_chunk_byte_offset(),
            resume_offset: c.replay_offset(),
            seq: c.seq,
            chunks: c.tree.chunk_count,
            created_unix_ms: c.created_unix_ms,
            last_checkpoint_unix_ms: c.last_checkpoint_unix_ms,
            chunking: c.chunking,
            pin_name: c.pin_name.clone(),
        }
    }
}

/// Every live upload, in id order.
pub fn list_staging(store: &Store) -> Result<Vec<StagingInfo>, StagingError> {
    Ok(store
        .staging_uploads()?
        .into_iter()
        .map(|(id, c)| StagingInfo::from_checkpoint(id, &c))
        .collect())
}

/// Releases uploads with no checkpoint for `grace` (default [`DEFAULT_ABANDON_GRACE`]); GC
/// calls this (through the engine's `Store::release_abandoned_staging`) before collecting.
pub fn release_abandoned(store: &Store, grace: Duration) -> Result<Vec<String>, StoreError> {
    store.release_abandoned_staging(grace)
}
