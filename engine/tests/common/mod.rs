//! Helpers for the engine's integration tests.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use net_mesh_engine::codec::Hash;
use net_mesh_engine::{ChunkingStrategy, Store, StoreConfig, TreePolicy};
use net_mesh_segments::codec::RECORD_HEADER_LEN;
use net_mesh_segments::segment_file_name;

pub const SMALL_CDC: ChunkingStrategy = ChunkingStrategy::Cdc {
    avg: 4096,
    min: 1024,
    max: 16384,
};
pub const TINY_TREE: TreePolicy = TreePolicy {
    leaf_fanout: 2,
    internal_fanout: 2,
};

pub fn config(chunking: ChunkingStrategy, tree: TreePolicy) -> StoreConfig {
    StoreConfig {
        chunking,
        tree,
        ..StoreConfig::default()
    }
}

pub fn open(dir: &Path, chunking: ChunkingStrategy, tree: TreePolicy) -> Store {
    Store::open(dir, config(chunking, tree)).unwrap()
}

/// Deterministic pseudo-random bytes.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn fetch_all(store: &Store, r: &net_mesh_engine::BlobRef) -> Vec<u8> {
    let mut out = Vec::new();
    store.fetch(r, &mut out).unwrap();
    out
}

/// XORs one payload byte of object `hash` in its segment file (`at` bytes into the payload).
pub fn flip_payload_byte(store: &Store, hash: &Hash, at: u64) {
    let entry = store
        .reader()
        .unwrap()
        .object(hash)
        .unwrap()
        .expect("object in index");
    let path = store
        .dir()
        .join("segments")
        .join(segment_file_name(entry.loc.segment));
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let pos = entry.loc.offset + RECORD_HEADER_LEN as u64 + at;
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(pos)).unwrap();
    f.read_exact(&mut b).unwrap();
    b[0] ^= 0x40;
    f.seek(SeekFrom::Start(pos)).unwrap();
    f.write_all(&b).unwrap();
    f.sync_all().unwrap();
}
