//! `net-mesh-staging`: durable, resumable streaming uploads. A publisher begins an upload, gets
//! a stable staging id, appends bytes of any sizes and finalizes into a pinned blob; if it is
//! killed at any instant it resumes from the last checkpoint with [`resume_streaming_store`],
//! replays its input from the returned offset, and the finished blob is byte-for-byte and
//! ref-for-ref identical to an uninterrupted upload. A publisher killed after its finalize
//! committed learns its ref by resuming too, for the abandonment grace.
//!
//! Staging is an extension of the engine ([`Staging`], registered when the store opens): its
//! checkpoints live in its own tables of the store's index (docs/FORMAT.md §4), written in the
//! same transaction as the chunks and nodes they cover, and hold +1 on every object their tree
//! state names so GC keeps them. It runs the engine's one write path with its own commit policy.
//! It must never open the index or the segments itself (only through the engine's seam), never
//! know about the network, and never panic on a checkpoint read from disk.

pub mod checkpoint;
mod cursor;
pub mod finished;
mod pipeline;
pub mod table;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use net_mesh_engine::{
    ChunkingStrategy, DEFAULT_CHANNEL, OpenOptions, PutOutcome, Store, TreePolicy,
};

pub use checkpoint::StagingCheckpoint;
pub use pipeline::{CHUNKS_IN_FLIGHT, InputEnd, Piece};
pub use table::{Staging, valid_staging_id};
pub use writer::{
    CheckpointCadence, DEFAULT_CHECKPOINT_INTERVAL, DEFAULT_CHECKPOINT_MAX_AGE_MS, Resumed,
    StagingError, StagingHandle,
};

/// Default grace after which an upload with no checkpoint is abandoned (and a finished
/// upload's record is forgotten).
pub const DEFAULT_ABANDON_GRACE: Duration = Duration::from_secs(24 * 60 * 60);

/// `options` with the staging extension registered (abandonment grace `abandon_grace`).
pub fn with_staging(options: OpenOptions, abandon_grace: Duration) -> OpenOptions {
    options.extension(Arc::new(Staging { abandon_grace }))
}

/// How a streaming upload starts.
#[derive(Debug, Clone)]
pub struct StagingConfig {
    /// The id to use; `None` generates a fresh random one.
    pub staging_id: Option<String>,
    /// Pin label of the finished blob.
    pub pin_name: String,
    /// Whether the user gave `pin_name`: then it also renames the blob's pin if the channel
    /// pins the blob already (`index::PinName`); a default name never does.
    pub pin_name_given: bool,
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
            pin_name_given: false,
            chunking: store.config().chunking,
            tree: store.config().tree,
            cadence: CheckpointCadence::default(),
        }
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

/// Starts an upload pinned in channel `default` when it finishes
/// ([`begin_streaming_store_in`]).
pub fn begin_streaming_store(
    store: &Store,
    config: StagingConfig,
) -> Result<StagingHandle<'_>, StagingError> {
    writer::begin(store, DEFAULT_CHANNEL, config)
}

/// Starts an upload whose blob is pinned in `channel` when it finishes, and commits its first
/// checkpoint: from the moment this returns, the staging id can be resumed. The store must be
/// open with the [`Staging`] extension. A bad channel name, or a channel the store does not
/// have, is refused before anything is written; finishing refuses if the channel no longer
/// exists.
pub fn begin_streaming_store_in<'s>(
    store: &'s Store,
    channel: &str,
    config: StagingConfig,
) -> Result<StagingHandle<'s>, StagingError> {
    writer::begin(store, channel, config)
}

/// Appends the next bytes of the input (any sizes, any number of calls).
pub fn append_to_stream(handle: &mut StagingHandle<'_>, bytes: &[u8]) -> Result<(), StagingError> {
    handle.write(bytes)
}

/// Ends the input, commits and pins the blob, and removes the checkpoint, in one transaction.
pub fn finalize_streaming_store(handle: StagingHandle<'_>) -> Result<PutOutcome, StagingError> {
    handle.finish()
}

/// Abandons the upload and releases its references at once.
pub fn abort_streaming_store(handle: StagingHandle<'_>) -> Result<(), StagingError> {
    handle.abort()
}

/// Aborts an upload by id (no live handle needed). Returns false if it did not exist.
pub fn abort_staging_id(store: &Store, staging_id: &str) -> Result<bool, StagingError> {
    writer::abort_id(store, staging_id)
}

/// Continues `staging_id` after a crash: [`Resumed::Live`] with the handle and the input offset
/// from which the publisher must replay its input (the start of the last checkpointed chunk;
/// those bytes are re-hashed to check the input is the same, then chunking continues), or
/// [`Resumed::Finished`] with the blob when the upload already finished.
pub fn resume_streaming_store<'s>(
    store: &'s Store,
    staging_id: &str,
    cadence: CheckpointCadence,
) -> Result<Resumed<'s>, StagingError> {
    writer::resume(store, staging_id, cadence)
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
    /// Channel the finished blob is pinned in.
    pub channel: String,
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
            channel: c.channel.clone(),
        }
    }
}

/// Every live upload with its checkpoint, in id order.
pub fn checkpoints(store: &Store) -> Result<Vec<(String, StagingCheckpoint)>, StagingError> {
    Ok(store.read_extension(table::NAMESPACE, table::uploads)?)
}

/// The checkpoint of live upload `staging_id`, if any.
pub fn checkpoint_of(
    store: &Store,
    staging_id: &str,
) -> Result<Option<StagingCheckpoint>, StagingError> {
    Ok(store.read_extension(table::NAMESPACE, |r| table::upload(r, staging_id))?)
}

/// How many live uploads the store holds (what [`list_staging`] lists, counted without
/// decoding a checkpoint).
pub fn staged_upload_count(store: &Store) -> Result<u64, StagingError> {
    Ok(store.read_extension(table::NAMESPACE, table::upload_count)?)
}

/// Every live upload, in id order.
pub fn list_staging(store: &Store) -> Result<Vec<StagingInfo>, StagingError> {
    Ok(checkpoints(store)?
        .into_iter()
        .map(|(id, c)| StagingInfo::from_checkpoint(id, &c))
        .collect())
}
