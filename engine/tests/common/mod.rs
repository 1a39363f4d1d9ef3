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
    manifest_max_refs: net_mesh_engine::tree::DEFAULT_MANIFEST_MAX_REFS,
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

/// XORs one payload byte of object `hash` in its segment file (`at` bytes into the payload)
/// and fsyncs the file.
pub fn flip_payload_byte(store: &Store, hash: &Hash, at: u64) {
    toggle_payload_byte(store, hash, at).sync_all().unwrap();
}

/// XORs payload byte `at` of object `hash` with 0x40, without fsync (a second call undoes it).
/// Reads see the change at once: the page cache backs both `pread` and the read-only mappings.
/// Returns the open segment file.
pub fn toggle_payload_byte(store: &Store, hash: &Hash, at: u64) -> std::fs::File {
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
    f
}

const OBJECTS_TABLE: redb::TableDefinition<&[u8; 32], &[u8]> =
    redb::TableDefinition::new("objects_v1");

/// Removes the index entries of `hashes` from the (closed) store in `dir`; returns what it
/// removed so [`restore_index_entries`] can put it back. Simulates lost objects.
pub fn remove_index_entries(dir: &Path, hashes: &[Hash]) -> Vec<(Hash, Vec<u8>)> {
    let db = redb::Database::create(dir.join("index.redb")).unwrap();
    let txn = db.begin_write().unwrap();
    let mut removed = Vec::new();
    {
        let mut t = txn.open_table(OBJECTS_TABLE).unwrap();
        for h in hashes {
            if let Some(v) = t.remove(h).unwrap() {
                removed.push((*h, v.value().to_vec()));
            }
        }
    }
    txn.commit().unwrap();
    removed
}

/// Puts back entries removed by [`remove_index_entries`] (store closed).
pub fn restore_index_entries(dir: &Path, saved: &[(Hash, Vec<u8>)]) {
    let db = redb::Database::create(dir.join("index.redb")).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut t = txn.open_table(OBJECTS_TABLE).unwrap();
        for (h, v) in saved {
            t.insert(h, v.as_slice()).unwrap();
        }
    }
    txn.commit().unwrap();
}

/// Every combination of `size` items out of `0..n`, in lexicographic order.
pub fn combinations(n: usize, size: usize) -> Vec<Vec<usize>> {
    fn go(start: usize, n: usize, left: usize, cur: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
        if left == 0 {
            out.push(cur.clone());
            return;
        }
        for i in start..n {
            cur.push(i);
            go(i + 1, n, left - 1, cur, out);
            cur.pop();
        }
    }
    let mut out = Vec::new();
    go(0, n, size, &mut Vec::new(), &mut out);
    out
}

/// The chunk lists of a blob (the Manifest's, or every leaf's in order), with their encoding.
pub fn chunk_lists(
    store: &Store,
    r: &net_mesh_engine::BlobRef,
) -> Vec<Vec<net_mesh_engine::ChunkRef>> {
    use net_mesh_engine::BlobRef;
    use net_mesh_engine::codec::{InternalNode, LeafNode};
    use net_mesh_segments::RecordKind;
    fn walk(store: &Store, hash: &Hash, level: u8, out: &mut Vec<Vec<net_mesh_engine::ChunkRef>>) {
        let kind = if level == 0 {
            RecordKind::LeafNode
        } else {
            RecordKind::InternalNode
        };
        let e = store.reader().unwrap().object(hash).unwrap().unwrap();
        let bytes = store.segments().read(e.loc, kind, hash).unwrap();
        if level == 0 {
            out.push(LeafNode::decode(&bytes).unwrap().chunks);
        } else {
            for c in InternalNode::decode(&bytes).unwrap().children {
                walk(store, &c.hash, level - 1, out);
            }
        }
    }
    match r {
        BlobRef::Small { .. } => Vec::new(),
        BlobRef::Manifest { chunks, .. } => vec![chunks.clone()],
        BlobRef::Tree {
            root_hash, depth, ..
        } => {
            let mut out = Vec::new();
            walk(store, root_hash, depth - 1, &mut out);
            out
        }
    }
}
