//! Typed errors, one enum per operation family: opening a store, writing blobs, reading blobs.
//! Corruption is kept apart from I/O so callers (and the CLI's exit code 3) can tell them apart.

use std::path::PathBuf;

use net_mesh_segments::SegmentError;

use crate::chunking::ChunkingError;
pub use crate::class::{Classify, ErrorClass, hex, short_hex};
use crate::codec::{BlobRef, DecodeError, Hash};
use crate::erasure::ErasureError;
use crate::index::{ChannelNameError, IndexError, PinNameTooLong};
use crate::tree::{PolicyError, StateError};

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("store {dir} is locked by pid {pid}")]
    Locked { dir: PathBuf, pid: String },
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("index: {0}")]
    Index(#[from] IndexError),
    #[error("segments: {0}")]
    Segments(#[from] SegmentError),
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// Why a blob could not be stored (or pinned / unpinned).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store handle is poisoned by an earlier durability failure; reopen the store")]
    Poisoned,
    #[error("reading input: {0}")]
    Input(std::io::Error),
    #[error("segments: {0}")]
    Segments(#[from] SegmentError),
    #[error("index: {0}")]
    Index(#[from] IndexError),
    #[error("chunking: {0}")]
    Chunking(#[from] ChunkingError),
    #[error("tree policy: {0}")]
    Policy(#[from] PolicyError),
    #[error("blob is too large for the tree format: {0}")]
    TooLarge(&'static str),
    #[error("erasure coding: {0}")]
    Erasure(#[from] ErasureError),
    #[error("no pinned blob matches {0:?}")]
    NotPinned(String),
    #[error("{0:?} is neither a blob ref (`nm1…`) nor an id prefix of 4 to 64 hex digits")]
    BadPrefix(String),
    #[error("{0:?} matches more than one pinned blob; give more characters")]
    Ambiguous(String),
    /// The pin row an id prefix names does not decode, so its blob is unknown. Unpinning it
    /// by its full id removes the row.
    #[error(
        "pin row {} does not decode ({source}); unpin it by its full id to remove the row",
        hex(id)
    )]
    PinUndecodable {
        /// The row's key, the full blob id it claims.
        id: Hash,
        source: IndexError,
    },
    /// A pin name longer than `index::MAX_PIN_NAME` bytes; refused before anything is written.
    #[error(transparent)]
    PinName(#[from] PinNameTooLong),
    /// A channel name that breaks the rule (`index::check_channel_name`); refused before
    /// anything is written.
    #[error(transparent)]
    ChannelName(#[from] ChannelNameError),
    /// A pin into a channel the store does not have; refused inside the commit's transaction,
    /// so nothing of the batch is written and the handle stays usable.
    #[error("no channel named {0}")]
    NoSuchChannel(String),
    /// An exported tree state (a checkpoint's) does not hold together.
    #[error("tree state is inconsistent: {0}")]
    TreeState(#[from] StateError),
}

/// Longest ref text [`BlobError::NotInStore`] names a blob by; a longer one (a Manifest's) is
/// named by its id.
const MAX_NAMED_REF: usize = 128;

/// Why reading a blob failed. Every integrity failure stops the read before any unverified byte
/// reaches the sink.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error(
        "hash chain mismatch at depth {at_depth}: parent holds {}, object hashes to {}",
        short_hex(parent_hash),
        short_hex(child_hash)
    )]
    ChainMismatch {
        at_depth: u8,
        parent_hash: Hash,
        child_hash: Hash,
    },
    #[error(
        "chunk {index} hash mismatch: expected {}, read bytes hash to {}",
        short_hex(expected),
        short_hex(actual)
    )]
    ChunkHashMismatch {
        index: u64,
        expected: Hash,
        actual: Hash,
    },
    #[error("object {} ({what}) is not in the store", short_hex(hash))]
    Missing { hash: Hash, what: &'static str },
    /// An object the read's index snapshot placed in a segment that compaction has since
    /// removed, and that no fresh snapshot has any more: GC deleted it while the read ran
    /// (its blob was unpinned meanwhile). The blob went away; nothing is damaged.
    #[error(
        "object {} ({what}) was deleted while it was read: its blob was unpinned and \
         collected by gc meanwhile",
        short_hex(hash)
    )]
    RemovedWhileRead { hash: Hash, what: &'static str },
    /// The blob itself is absent: the first object a read of it asks for (a Tree's root node,
    /// a Small blob's chunk, a Manifest's first chunk read) is not in the store, nor is any
    /// other object the read asked for. An object missing below one that is there stays
    /// [`BlobError::Missing`] (damage, not absence).
    #[error("blob {blob} is not in the store")]
    NotInStore {
        /// The blob's ref text, or `id <hex>` for a ref too long to print (a Manifest's).
        blob: String,
    },
    /// A blob a channel pins that reads as [`BlobError::NotInStore`]: its root object (and
    /// every other object the read asked for) is lost to index or segment damage. Damage, not
    /// absence (fsck reports it as `missing_object`).
    #[error(
        "blob {blob} is pinned (in channel {channel}) but its root object is missing: \
         run `fsck`, then `fsck --repair`"
    )]
    PinnedButLost {
        /// Named as in [`BlobError::NotInStore`].
        blob: String,
        /// A channel that pins it (the first by name).
        channel: String,
    },
    #[error("object {} is corrupted: {reason}", short_hex(hash))]
    Corrupted { hash: Hash, reason: String },
    #[error("tree node {} does not decode: {source}", short_hex(hash))]
    BadNode { hash: Hash, source: DecodeError },
    #[error("range {start}..{end} is invalid for a blob of {size} bytes")]
    InvalidRange { start: u64, end: u64, size: u64 },
    #[error("segments: {0}")]
    Segments(#[from] SegmentError),
    #[error("index: {0}")]
    Index(#[from] IndexError),
    #[error("writing output: {0}")]
    Sink(std::io::Error),
    /// More chunks of an erasure-coded stripe are missing or corrupt than its parity covers.
    #[error(
        "stripe {stripe} is unrecoverable: {lost} of its chunks are missing or corrupt, \
         at most {tolerated} can be rebuilt"
    )]
    Unrecoverable {
        stripe: u32,
        lost: usize,
        tolerated: usize,
    },
    /// An erasure-coded chunk list is malformed, or a rebuilt chunk fails its hash.
    #[error("erasure-coded stripe: {0}")]
    Stripe(ErasureError),
}

impl From<ErasureError> for BlobError {
    fn from(e: ErasureError) -> Self {
        match e {
            ErasureError::TooManyLost {
                stripe,
                lost,
                tolerated,
            } => BlobError::Unrecoverable {
                stripe,
                lost,
                tolerated,
            },
            other => BlobError::Stripe(other),
        }
    }
}

impl BlobError {
    /// [`BlobError::NotInStore`] for `blob_ref`.
    pub fn not_in_store(blob_ref: &BlobRef) -> BlobError {
        BlobError::NotInStore {
            blob: named_blob(blob_ref),
        }
    }

    /// `self`, or [`BlobError::PinnedButLost`] when it is [`BlobError::NotInStore`] and
    /// `pinned_in` names a channel that pins the blob.
    pub fn lost_if_pinned(self, pinned_in: Option<String>) -> BlobError {
        match (self, pinned_in) {
            (BlobError::NotInStore { blob }, Some(channel)) => {
                BlobError::PinnedButLost { blob, channel }
            }
            (other, _) => other,
        }
    }

    /// True when the failure means stored data is damaged or missing.
    pub fn is_integrity(&self) -> bool {
        self.class() == ErrorClass::Integrity
    }
}

/// How errors name a blob: its ref text, or `id <hex>` for a ref too long to print.
fn named_blob(blob_ref: &BlobRef) -> String {
    let text = blob_ref.to_text();
    if text.len() <= MAX_NAMED_REF {
        text
    } else {
        format!("id {}", hex(&crate::index::blob_id(blob_ref)))
    }
}

/// The class of a segment store error.
pub fn segment_error_class(e: &SegmentError) -> ErrorClass {
    match e {
        _ if e.is_corruption() => ErrorClass::Integrity,
        SegmentError::UnknownSegment(_) | SegmentError::OutOfBounds { .. } => ErrorClass::Integrity,
        SegmentError::InvalidCommittedLength { .. } => ErrorClass::Integrity,
        SegmentError::Io { .. } | SegmentError::SyncFailed { .. } | SegmentError::Poisoned => {
            ErrorClass::Io
        }
        SegmentError::ActiveSegment(_) | SegmentError::Unsettled(_) | SegmentError::ReadOnly => {
            ErrorClass::Refused
        }
        _ => ErrorClass::Usage,
    }
}

impl Classify for OpenError {
    fn class(&self) -> ErrorClass {
        match self {
            OpenError::Locked { .. } => ErrorClass::Busy,
            OpenError::Io { .. } => ErrorClass::Io,
            OpenError::Index(e) => e.class(),
            OpenError::Segments(e) => segment_error_class(e),
            OpenError::Config(_) => ErrorClass::Usage,
        }
    }
}

impl Classify for StoreError {
    fn class(&self) -> ErrorClass {
        match self {
            StoreError::Poisoned | StoreError::Input(_) => ErrorClass::Io,
            StoreError::Segments(e) => segment_error_class(e),
            StoreError::Index(e) => e.class(),
            StoreError::Chunking(_)
            | StoreError::Policy(_)
            | StoreError::TooLarge(_)
            | StoreError::Erasure(_)
            | StoreError::PinName(_)
            | StoreError::ChannelName(_) => ErrorClass::Usage,
            StoreError::NotPinned(_) | StoreError::NoSuchChannel(_) => ErrorClass::NotFound,
            StoreError::Ambiguous(_) | StoreError::BadPrefix(_) => ErrorClass::Usage,
            StoreError::TreeState(_) | StoreError::PinUndecodable { .. } => ErrorClass::Integrity,
        }
    }
}

impl Classify for BlobError {
    fn class(&self) -> ErrorClass {
        match self {
            BlobError::ChainMismatch { .. }
            | BlobError::ChunkHashMismatch { .. }
            | BlobError::Missing { .. }
            | BlobError::Corrupted { .. }
            | BlobError::BadNode { .. }
            | BlobError::Unrecoverable { .. }
            | BlobError::Stripe(_) => ErrorClass::Integrity,
            BlobError::Segments(e) => segment_error_class(e),
            BlobError::Index(e) => e.class(),
            BlobError::InvalidRange { .. } => ErrorClass::Usage,
            BlobError::NotInStore { .. } | BlobError::RemovedWhileRead { .. } => {
                ErrorClass::NotFound
            }
            BlobError::PinnedButLost { .. } => ErrorClass::Integrity,
            BlobError::Sink(_) => ErrorClass::Io,
        }
    }
}
