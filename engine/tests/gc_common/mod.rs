//! Helpers for the GC, compaction and fsck tests: small-segment stores and raw index edits
//! through the documented redb layout (docs/FORMAT.md §3).
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use net_mesh_engine::codec::Hash;
use net_mesh_engine::fsck::{FsckOptions, FsckReport, ProblemKind, ReadData};
use net_mesh_engine::{GcOptions, Store, StoreConfig, TreePolicy};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

// The engine tests' shared helpers; only what GC and fsck tests need is re-exported.
#[path = "../common/mod.rs"]
mod shared;
#[allow(unused_imports)] // each test file uses some of them
pub use shared::{SMALL_CDC, fetch_all as fetch, random_bytes};

/// Small segments (so most data sits in sealed ones) and small batches.
pub fn config(tree: TreePolicy) -> StoreConfig {
    StoreConfig {
        chunking: SMALL_CDC,
        tree,
        segment_roll_size: 64 * 1024,
        batch_bytes: 32 * 1024,
    }
}

pub fn open(dir: &Path) -> Store {
    Store::open(dir, config(TreePolicy::default())).unwrap()
}

pub fn open_tree(dir: &Path, tree: TreePolicy) -> Store {
    Store::open(dir, config(tree)).unwrap()
}

pub fn gc_now() -> GcOptions {
    GcOptions {
        grace: Duration::ZERO,
        ..GcOptions::default()
    }
}

pub fn seg_dir(dir: &Path) -> PathBuf {
    dir.join("segments")
}

pub fn seg_path(dir: &Path, segment: u64) -> PathBuf {
    seg_dir(dir).join(net_mesh_segments::segment_file_name(segment))
}

pub fn fsck(dir: &Path, read_data: ReadData, repair: bool) -> FsckReport {
    net_mesh_engine::fsck::fsck(
        dir,
        net_mesh_engine::OpenOptions::new(config(TreePolicy::default())),
        &FsckOptions {
            read_data,
            repair,
            ..FsckOptions::default()
        },
    )
    .unwrap()
}

pub fn kinds(report: &FsckReport) -> Vec<ProblemKind> {
    report
        .problems
        .iter()
        .filter(|p| p.severity != net_mesh_engine::fsck::Severity::Info)
        .map(|p| p.kind)
        .collect()
}

pub fn hex(h: &Hash) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

const OBJECTS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("objects_v1");

/// Rewrites an object's stored reference count (bytes 22..30 of its entry, FORMAT.md §3.2).
/// The store must be closed.
pub fn set_refcount(dir: &Path, hash: &Hash, count: u64) {
    let db = redb::Database::open(dir.join("index.redb")).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut t = txn.open_table(OBJECTS).unwrap();
        let mut v = t.get(hash).unwrap().unwrap().value().to_vec();
        v[22..30].copy_from_slice(&count.to_le_bytes());
        t.insert(hash, v.as_slice()).unwrap();
    }
    txn.commit().unwrap();
}

/// Reads an object's stored reference count. The store must be closed.
pub fn refcount(dir: &Path, hash: &Hash) -> Option<u64> {
    let db = redb::Database::open(dir.join("index.redb")).unwrap();
    let txn = db.begin_read().unwrap();
    let t = txn.open_table(OBJECTS).unwrap();
    t.get(hash)
        .unwrap()
        .map(|v| u64::from_le_bytes(v.value()[22..30].try_into().unwrap()))
}

/// XORs one payload byte (`at` bytes into the payload) of the record at `loc`.
pub fn flip_payload_byte(dir: &Path, loc: net_mesh_segments::RecordLoc, at: u64) {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(seg_path(dir, loc.segment))
        .unwrap();
    let pos = loc.offset + net_mesh_segments::codec::RECORD_HEADER_LEN as u64 + at;
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(pos)).unwrap();
    f.read_exact(&mut b).unwrap();
    b[0] ^= 0x40;
    f.seek(SeekFrom::Start(pos)).unwrap();
    f.write_all(&b).unwrap();
    f.sync_all().unwrap();
}

/// The index entry of `hash`.
pub fn entry(store: &Store, hash: &Hash) -> net_mesh_engine::index::ObjectEntry {
    store.reader().unwrap().object(hash).unwrap().unwrap()
}

/// A chunk of `blob` stored in a sealed segment (not the active one).
pub fn sealed_chunk(store: &Store, blob: &net_mesh_engine::BlobRef) -> Hash {
    let active = store.segments().active_segment();
    store
        .blob_chunks(blob)
        .unwrap()
        .into_iter()
        .map(|c| c.hash)
        .find(|h| entry(store, h).loc.segment != active)
        .expect("a chunk in a sealed segment")
}
