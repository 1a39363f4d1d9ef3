//! fsck checks what is stored, so it cannot trust a tree's shape: a pinned tree whose internal
//! nodes chain 100,000 deep (a damaged index, or a tree written by a faulty writer: an upload's
//! batch stores the nodes it is given as they are; an importer would refuse them) is walked on
//! fsck's own stack, not the thread's: clean while the bytes are, and the pin named affected
//! once the chunk at the bottom is corrupt. (A recursive walk overflowed the stack and aborted
//! the process at 30,000 in a debug build.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod gc_common;

use gc_common::*;
use net_mesh_engine::codec::{
    BlobRef, ChildRef, ChunkRef, ChunkRole, Encoding, InternalNode, LeafNode, chunk_id,
    internal_id, leaf_id,
};
use net_mesh_engine::fsck::{ProblemKind as K, ReadData};
use net_mesh_engine::tree::{NodeSink, TreePolicy};
use net_mesh_engine::{ObjectKind, Upload};

const CHAIN: usize = 100_000;

#[test]
fn fsck_walks_a_tree_deeper_than_any_stack() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = open(dir);
    let data = random_bytes(1000, 7);
    let chunk = chunk_id(&data);
    let mut importer = store.importer().unwrap();
    importer.import(ObjectKind::Chunk, &chunk, &data).unwrap();
    let leaf = LeafNode {
        encoding: Encoding::Plain,
        chunks: vec![ChunkRef {
            hash: chunk,
            size: data.len() as u32,
            role: ChunkRole::Data,
        }],
    }
    .encode();
    let mut below = leaf_id(&leaf);
    importer
        .import(ObjectKind::LeafNode, &below, &leaf)
        .unwrap();
    importer.commit().unwrap();
    // A level-1 node over the leaf, then a chain of level-2 nodes each over the one before.
    let mut upload = Upload::new(
        &store,
        store.config().chunking,
        TreePolicy::default(),
        Encoding::Plain,
    )
    .unwrap();
    let batch = upload.batch();
    for i in 0..=CHAIN {
        let node = InternalNode {
            level: if i == 0 { 1 } else { 2 },
            children: vec![ChildRef {
                hash: below,
                covered: data.len() as u64,
            }],
        };
        below = batch.put_internal(&node).unwrap();
        assert_eq!(below, internal_id(&node.encode()));
    }
    batch.commit().unwrap();
    drop(upload);
    drop(importer);
    let tree = BlobRef::Tree {
        encoding: Encoding::Plain,
        root_hash: below,
        total_size: data.len() as u64,
        depth: 3,
    };
    let pinned = store.pin(&tree, "deep").unwrap();
    let loc = entry(&store, &chunk).loc;
    drop(store);

    let report = fsck(dir, ReadData::All, false);
    assert_eq!(kinds(&report), vec![], "{:?}", report.problems);
    assert!(report.affected_blobs.is_empty());

    flip_payload_byte(dir, loc, 10);
    let report = fsck(dir, ReadData::All, false);
    assert_eq!(kinds(&report), vec![K::ObjectCorrupt]);
    assert_eq!(report.affected_blobs.len(), 1);
    assert_eq!(report.affected_blobs[0].blob_id, hex(&pinned));
}
