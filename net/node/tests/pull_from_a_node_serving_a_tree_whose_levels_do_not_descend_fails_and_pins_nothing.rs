//! Node A serves a tree whose every node hashes right but whose levels do not descend: a
//! chain of internal nodes that all say level 2 (a hostile source could make it thousands
//! long, and a walk that trusted it would recurse until its thread's stack overflowed, taking
//! the whole node down). Node B's pull refuses the first node out of place with an integrity
//! error naming it, before fetching what lies below, and pins nothing; B keeps serving.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::*;
use net_mesh_engine::codec::{
    ChildRef, ChunkRef, ChunkRole, Encoding, InternalNode, LeafNode, chunk_id, internal_id, leaf_id,
};
use net_mesh_engine::{BlobRef, ErrorClass, ObjectKind};
use net_mesh_node::NodeConfig;
use net_mesh_node::proto::PinRow;

/// Links in the chain of level-2 nodes above the one proper level-1 node.
const CHAIN: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_from_a_node_serving_a_tree_whose_levels_do_not_descend_fails_and_pins_nothing() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Into A's store, bottom up (its importer checks ids and that children are present,
    // which this tree satisfies): a chunk, a leaf, a level-1 node, then CHAIN nodes of level
    // 2 each naming the one below. The ref says depth 3: its root should be of level 2, and
    // the root's children of level 1.
    let data = random_bytes(5_000, 7);
    let (blob_ref, second) = {
        let store = open_store(dir_a.path());
        let mut importer = store.importer().unwrap();
        let chunk = chunk_id(&data);
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
        let mut below = (leaf_id(&leaf), 1u8);
        importer
            .import(ObjectKind::LeafNode, &below.0, &leaf)
            .unwrap();
        let mut chain = Vec::new();
        for _ in 0..=CHAIN {
            let level = below.1.min(2);
            let node = InternalNode {
                level,
                children: vec![ChildRef {
                    hash: below.0,
                    covered: data.len() as u64,
                }],
            }
            .encode();
            let id = internal_id(&node);
            importer
                .import(ObjectKind::InternalNode, &id, &node)
                .unwrap();
            chain.push(id);
            below = (id, level + 1);
        }
        importer.commit().unwrap();
        let root = *chain.last().unwrap();
        let blob_ref = BlobRef::Tree {
            encoding: Encoding::Plain,
            root_hash: root,
            total_size: data.len() as u64,
            depth: 3,
        };
        // The root's child: level 2 where level 1 belongs.
        (blob_ref, chain[chain.len() - 2])
    };

    let (user, user_id) = identity();
    let (b_identity, b_id) = identity();
    let a = start(dir_a.path(), |_| format!("{b_id} read\n")).await;
    let b = start_as(
        b_identity,
        dir_b.path(),
        |_| format!("{user_id} write\n"),
        NodeConfig::default(),
    )
    .await;
    let to_b = client_as(user, &b.addr).await;

    let err = to_b.pull(&blob_ref, &a.addr, "chain").await.unwrap_err();
    assert_eq!(err.class, ErrorClass::Integrity, "{err}");
    assert!(
        err.message
            .contains(&net_mesh_engine::class::short_hex(&second))
            && err
                .message
                .contains("level 2 where a node of level 1 belongs"),
        "the error names the node out of place: {err}"
    );
    assert!(
        to_b.list().await.unwrap().is_empty(),
        "nothing is pinned on B"
    );
    assert!(
        !b.node.store().has(&chain_bottom(&data)).unwrap(),
        "nothing below the node out of place was fetched"
    );

    // B still serves: an honest blob pulled from A afterwards arrives and is pinned.
    let honest = random_bytes(300_000, 8);
    let honest_ref = {
        let store = std::sync::Arc::clone(a.node.store());
        tokio::task::spawn_blocking(move || store.store(&honest).unwrap().blob_ref)
            .await
            .unwrap()
    };
    to_b.pull(&honest_ref, &a.addr, "honest").await.unwrap();
    assert!(matches!(
        &to_b.list().await.unwrap()[..],
        [PinRow::Pin { name, .. }] if name == "honest"
    ));

    drop(to_b);
    a.shut().await;
    b.shut().await;
}

/// The id of the chain's one chunk.
fn chain_bottom(data: &[u8]) -> net_mesh_engine::Hash {
    chunk_id(data)
}
