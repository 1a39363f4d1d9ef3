//! `net-mesh-engine` is the content-addressed blob engine: it cuts bytes into chunks (FastCDC or
//! fixed), stores chunks and BLAKE3 Merkle tree nodes as records in segment files, indexes them
//! in one redb database (locations, reference counts, pinned roots, committed segment lengths,
//! and the tables of crates built on it), and reads blobs back — whole or by range — verifying
//! every node and chunk against the hash its parent holds before a byte leaves the engine. It
//! must never know about the network or about the crates built on it (they come in through the
//! extension seam, `index::extension`), never let the index point at bytes that are not
//! durable, and never panic on bytes read from disk.
//!
//! Modules by concept, each depending only on those before it in this list (no cycles):
//! `class` (error classes) and `codec`; pure code with no I/O — `chunking`, `tree`, `erasure`
//! (layout and codec); `storage` (the backends); `index` (tables, the one commit, the extension
//! seam); `in_flight` (what live uploads hold); `error`; `store` (the one place a store is
//! opened); `write` (the one write path and the importer) and `read` (verified reads); `repair`
//! and `gc` (GC and compaction); `fsck`.

pub mod chunking;
pub mod class;
pub mod codec;
pub mod erasure;
pub mod error;
pub mod fsck;
pub mod gc;
mod in_flight;
pub mod index;
pub mod progress;
pub mod read;
pub mod repair;
#[cfg(feature = "sim")]
pub mod sim_index;
pub mod storage;
pub mod store;
pub mod tree;
pub mod write;

pub use chunking::{ChunkingError, ChunkingStrategy};
pub use codec::{BlobRef, ChunkRef, ChunkRole, Encoding, Hash};
pub use erasure::{ErasureError, RsParams};
pub use error::{BlobError, Classify, ErrorClass, OpenError, StoreError};
#[cfg(feature = "testing")]
pub use gc::GcPhase;
pub use gc::{GcError, GcOptions, GcReport};
pub use index::extension::{Extension, ExtensionError, ExtensionOp, ExtensionReader, ExtensionTxn};
pub use index::{ChannelInfo, DEFAULT_CHANNEL, Unpinned, check_channel_name};
pub use net_mesh_segments::RecordKind as ObjectKind;
pub use progress::{Progress, Stage};
pub use read::{BlobStat, ChunkParts, ObjectSource, fetch_range_from, joined};
pub use repair::{RepairError, RepairReport};
pub use storage::{IndexStorage, StoreBackends};
pub use store::{OpenOptions, ReadStats, Store, StoreConfig};
pub use tree::TreePolicy;
pub use write::{
    BlobWriter, CommitPolicy, ImportError, Importer, Object, OpenBatch, PutOutcome, Upload,
};
