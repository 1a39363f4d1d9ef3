//! `net-mesh-engine` is the content-addressed blob engine: it cuts bytes into chunks (FastCDC or
//! fixed), stores chunks and BLAKE3 Merkle tree nodes as records in segment files, indexes them
//! in one redb database (locations, reference counts, pinned roots, committed segment lengths),
//! and reads blobs back — whole or by range — verifying every node and chunk against the hash
//! its parent holds before a byte leaves the engine. It must never know about the network, never
//! let the index point at bytes that are not durable, and never panic on bytes read from disk.
//!
//! Layers: `codec`, `chunking`, `tree` and `erasure` are pure (no I/O); `index`, `store`,
//! `writer`, `fetch` (with `erasure_read`) and `repair` do the I/O, through the backends named
//! in `storage` (real files by default; `sim_index`, feature `sim`, for power-loss tests).

pub mod chunking;
pub mod codec;
pub mod erasure;
mod erasure_read;
pub mod error;
pub mod fetch;
mod gear;
mod in_flight;
pub mod index;
mod parity_pipeline;
pub mod repair;
#[cfg(feature = "sim")]
pub mod sim_index;
pub mod storage;
pub mod store;
pub mod tree;
pub mod writer;

// Resumable uploads (staging): checkpoint codec, the staging_v1 table, the checkpointed writer.
pub mod checkpoint;
pub mod resumable;
pub mod staging_table;

pub use checkpoint::StagingCheckpoint;

// GC, compaction and fsck.
pub mod compact;
pub mod fsck;
pub mod gc;
pub mod stripe;
pub use gc::{GcError, GcOptions, GcPhase, GcReport};

pub use chunking::{ChunkingError, ChunkingStrategy};
pub use codec::{BlobRef, ChunkRef, ChunkRole, Encoding, Hash};
pub use erasure::{ErasureError, RsParams};
pub use error::{BlobError, OpenError, StoreError};
pub use fetch::BlobStat;
pub use repair::{RepairError, RepairReport};
pub use resumable::{CheckpointCadence, ResumableConfig, ResumableWriter, StagingError};
pub use storage::{IndexStorage, StoreBackends};
pub use store::{ReadStats, Store, StoreConfig};
pub use tree::TreePolicy;
pub use writer::{BlobWriter, PutOutcome};
