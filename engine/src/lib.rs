//! `net-mesh-engine` is the content-addressed blob engine: it cuts bytes into chunks (FastCDC or
//! fixed), stores chunks and BLAKE3 Merkle tree nodes as records in segment files, indexes them
//! in one redb database (locations, reference counts, pinned roots, committed segment lengths),
//! and reads blobs back — whole or by range — verifying every node and chunk against the hash
//! its parent holds before a byte leaves the engine. It must never know about the network, never
//! let the index point at bytes that are not durable, and never panic on bytes read from disk.
//!
//! Layers: `codec`, `chunking`, `tree` and `erasure` are pure (no I/O); `index`, `store`,
//! `write`, `fetch` (with `erasure_read`) and `repair` do the I/O, through the backends named
//! in `storage` (real files by default; `sim_index`, feature `sim`, for power-loss tests).

pub mod chunking;
pub mod codec;
pub mod erasure;
mod erasure_read;
pub mod error;
pub mod fetch;
mod gear;
pub mod index;
mod parity_pipeline;
pub mod repair;
#[cfg(feature = "sim")]
pub mod sim_index;
pub mod storage;
pub mod store;
pub mod tree;
pub mod write;

// GC, compaction and fsck.
pub mod compact;
pub mod fsck;
pub mod gc;
pub mod stripe;
pub use gc::{GcError, GcOptions, GcPhase, GcReport};

pub use chunking::{ChunkingError, ChunkingStrategy};
pub use codec::{BlobRef, ChunkRef, ChunkRole, Encoding, Hash};
pub use erasure::{ErasureError, RsParams};
pub use error::{BlobError, Classify, ErrorClass, OpenError, StoreError};
pub use fetch::BlobStat;
pub use index::extension::{Extension, ExtensionError, ExtensionOp, ExtensionReader, ExtensionTxn};
pub use repair::{RepairError, RepairReport};
pub use storage::{IndexStorage, StoreBackends};
pub use store::{OpenOptions, ReadStats, Store, StoreConfig};
pub use tree::TreePolicy;
pub use write::{BlobWriter, CommitPolicy, OpenBatch, PutOutcome, Upload};
