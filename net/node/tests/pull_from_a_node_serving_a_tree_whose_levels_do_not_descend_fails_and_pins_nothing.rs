//! Node A serves a tree whose every node hashes right but whose levels do not descend: a
//! chain of internal nodes that all say level 2 (a hostile source could make it thousands
//! long, and a walk that trusted it would recurse until its thread's stack overflowed, taking
//! the whole node down). Node B's pull refuses the first node out of place with an integrity
//! error naming it, before fetching what lies below, and pins nothing; B keeps serving. So
//! is a node the walk need not fetch (brought in at another place of the same tree, or held
//! from an earlier pull) where its level does not fit.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::*;
use net_mesh_engine::ErrorClass;
use net_mesh_engine::codec::chunk_id;
use net_mesh_node::NodeConfig;
use net_mesh_node::proto::PinRow;

/// Links in the chain of level-2 nodes above the one proper level-1 node.
const CHAIN: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_from_a_node_serving_a_tree_whose_levels_do_not_descend_fails_and_pins_nothing() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Into A's store, bottom up: a chunk and a leaf (imported), then through an upload's
    // batch (which stores the nodes it is given as they are; an importer would refuse this
    // tree) a level-1 node and CHAIN nodes of level 2 each naming the one below. The ref says depth 3: its root should be of level 2, and
    // the root's children of level 1.
    let data = random_bytes(5_000, 7);
    let (blob_ref, second) = {
        let store = open_store(dir_a.path());
        let mut importer = store.importer().unwrap();
        let size = data.len() as u64;
        let leaf = import_leaf(&mut importer, &data);
        importer.commit().unwrap();
        let mut upload = raw_nodes(&store);
        let batch = upload.batch();
        let mut below = put_internal(batch, 1, &[leaf], size);
        let mut chain = vec![below];
        for _ in 0..CHAIN {
            below = put_internal(batch, 2, &[below], size);
            chain.push(below);
        }
        batch.commit().unwrap();
        let blob_ref = tree_ref(below, size, 3);
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
        !b.node.store().has(&chunk_id(&data)).unwrap(),
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

/// A node out of place that the walk need not fetch is refused too: one it brought in at
/// another place of the same tree, and one the pulling store already held from an earlier pull.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_already_here_is_refused_where_its_level_does_not_fit() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let data = random_bytes(4_000, 9);
    let size = data.len() as u64;
    // In A: m (level 1) over a leaf; n1 (level 2) over m; n2 (level 2) over n1, where a
    // level-1 node belongs. Tree `same_pull`: root (level 3) over n1 then n2 — the walk
    // brings n1 in at its right place, then meets it under n2. Trees `first` (root level 3
    // over n1: well formed) and `second` (root level 3 over n2) for two pulls.
    let (same_pull, first, second, n1) = {
        let store = open_store(dir_a.path());
        let mut importer = store.importer().unwrap();
        let leaf = import_leaf(&mut importer, &data);
        importer.commit().unwrap();
        let mut upload = raw_nodes(&store);
        let batch = upload.batch();
        let m = put_internal(batch, 1, &[leaf], size);
        let n1 = put_internal(batch, 2, &[m], size);
        let n2 = put_internal(batch, 2, &[n1], size);
        let same_pull = put_internal(batch, 3, &[n1, n2], size);
        let first = put_internal(batch, 3, &[n1], size);
        let second = put_internal(batch, 3, &[n2], size);
        batch.commit().unwrap();
        (
            tree_ref(same_pull, 2 * size, 4),
            tree_ref(first, size, 4),
            tree_ref(second, size, 4),
            n1,
        )
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
    let out_of_place = format!(
        "lists node {} (already here, of level 2) where a node of level 1 belongs",
        net_mesh_engine::class::short_hex(&n1)
    );

    let err = to_b.pull(&same_pull, &a.addr, "same").await.unwrap_err();
    assert_eq!(err.class, ErrorClass::Integrity, "{err}");
    assert!(err.message.contains(&out_of_place), "{err}");
    assert!(
        to_b.list().await.unwrap().is_empty(),
        "nothing is pinned on B"
    );

    // A well-formed tree brings n1 into B's store for good; a later tree that lists it where a
    // level-1 node belongs is refused reading n1's level from B's store.
    to_b.pull(&first, &a.addr, "first").await.unwrap();
    assert!(b.node.store().has(&n1).unwrap());
    let err = to_b.pull(&second, &a.addr, "second").await.unwrap_err();
    assert_eq!(err.class, ErrorClass::Integrity, "{err}");
    assert!(err.message.contains(&out_of_place), "{err}");
    assert!(matches!(
        &to_b.list().await.unwrap()[..],
        [PinRow::Pin { name, .. }] if name == "first"
    ));

    drop(to_b);
    a.shut().await;
    b.shut().await;
}
