//! A flipped byte in a chunk, a leaf or an internal node at any depth stops the read with the
//! exact typed error, and no corrupt byte reaches the sink.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::*;
use net_mesh_engine::codec::{Hash, InternalNode, LeafNode};
use net_mesh_engine::{BlobError, BlobRef, ChunkingStrategy, Store, TreePolicy};
use net_mesh_segments::RecordKind;

const FIXED: ChunkingStrategy = ChunkingStrategy::Fixed { size: 1024 };

fn read_node(store: &Store, hash: &Hash, kind: RecordKind) -> Vec<u8> {
    let e = store.reader().unwrap().object(hash).unwrap().unwrap();
    store.segments().read(e.loc, kind, hash).unwrap().to_vec()
}

/// The first node at each level along the leftmost path: (hash, kind) by depth from the root.
fn leftmost_path(store: &Store, r: &BlobRef) -> (Vec<(Hash, RecordKind)>, Hash) {
    let BlobRef::Tree {
        root_hash, depth, ..
    } = r
    else {
        panic!("not a tree")
    };
    let mut path = Vec::new();
    let mut hash = *root_hash;
    for level in (0..*depth).rev() {
        if level == 0 {
            path.push((hash, RecordKind::LeafNode));
            let leaf = LeafNode::decode(&read_node(store, &hash, RecordKind::LeafNode)).unwrap();
            return (path, leaf.chunks[0].hash);
        }
        path.push((hash, RecordKind::InternalNode));
        let node =
            InternalNode::decode(&read_node(store, &hash, RecordKind::InternalNode)).unwrap();
        hash = node.children[0].hash;
    }
    unreachable!()
}

/// A sink that records what it got, to prove no unverified byte is surfaced.
fn fetch_err(store: &Store, r: &BlobRef) -> (BlobError, Vec<u8>) {
    let mut out = Vec::new();
    let err = store.fetch(r, &mut out).unwrap_err();
    (err, out)
}

#[test]
fn flipped_node_at_each_depth_is_a_chain_mismatch_at_that_depth() {
    let data = random_bytes(40 * 1024, 5);
    let depth_of_tree = {
        let tmp = tempfile::tempdir().unwrap();
        let store = open(tmp.path(), FIXED, TINY_TREE);
        store.store(&data).unwrap().blob_ref.depth()
    };
    assert!(
        depth_of_tree >= 4,
        "want a deep tree, got depth {depth_of_tree}"
    );
    for at in 0..depth_of_tree {
        let tmp = tempfile::tempdir().unwrap();
        let store = open(tmp.path(), FIXED, TINY_TREE);
        let r = store.store(&data).unwrap().blob_ref;
        let (path, _) = leftmost_path(&store, &r);
        let (hash, _) = path[usize::from(at)];
        flip_payload_byte(&store, &hash, 7);
        let (err, out) = fetch_err(&store, &r);
        match err {
            BlobError::ChainMismatch {
                at_depth,
                parent_hash,
                child_hash,
            } => {
                assert_eq!(at_depth, at);
                assert_eq!(parent_hash, hash);
                assert_ne!(child_hash, hash);
            }
            other => panic!("depth {at}: expected ChainMismatch, got {other:?}"),
        }
        assert!(
            out.is_empty(),
            "leftmost path is corrupt, so nothing may be surfaced"
        );
        assert!(err_is_integrity(&store, &r));
    }
}

fn err_is_integrity(store: &Store, r: &BlobRef) -> bool {
    let mut sink = std::io::sink();
    store.fetch(r, &mut sink).unwrap_err().is_integrity()
}

#[test]
fn flipped_chunk_in_a_tree_stops_before_its_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path(), FIXED, TINY_TREE);
    let data = random_bytes(40 * 1024, 6);
    let r = store.store(&data).unwrap().blob_ref;
    // Corrupt the 10th chunk: bytes of chunks 0..9 are surfaced, nothing after.
    let mut chunk_hashes = Vec::new();
    for piece in data.chunks(1024) {
        chunk_hashes.push(*blake3::hash(piece).as_bytes());
    }
    flip_payload_byte(&store, &chunk_hashes[9], 100);
    let (err, out) = fetch_err(&store, &r);
    match err {
        BlobError::ChainMismatch {
            at_depth,
            parent_hash,
            ..
        } => {
            assert_eq!(at_depth, r.depth());
            assert_eq!(parent_hash, chunk_hashes[9]);
        }
        other => panic!("expected ChainMismatch, got {other:?}"),
    }
    assert_eq!(out, data[..9 * 1024]);
}

#[test]
fn flipped_chunk_in_small_and_manifest_is_a_chunk_hash_mismatch() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path(), FIXED, TreePolicy::default());
    let small = random_bytes(500, 1);
    let r = store.store(&small).unwrap().blob_ref;
    flip_payload_byte(&store, blake3::hash(&small).as_bytes(), 0);
    let (err, out) = fetch_err(&store, &r);
    assert!(
        matches!(err, BlobError::ChunkHashMismatch { index: 0, .. }),
        "{err:?}"
    );
    assert!(out.is_empty());

    let data = random_bytes(5000, 2);
    let r = store.store(&data).unwrap().blob_ref;
    assert!(matches!(r, BlobRef::Manifest { .. }));
    flip_payload_byte(&store, blake3::hash(&data[2048..3072]).as_bytes(), 3);
    let (err, out) = fetch_err(&store, &r);
    assert!(
        matches!(err, BlobError::ChunkHashMismatch { index: 2, .. }),
        "{err:?}"
    );
    assert_eq!(out, data[..2048]);
    // A range that avoids the bad chunk still reads.
    let mut part = Vec::new();
    store.fetch_range(&r, 0..2048, &mut part).unwrap();
    assert_eq!(part, data[..2048]);
}
