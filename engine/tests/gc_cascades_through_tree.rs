//! Unpinning a deep tree and collecting once frees every node and chunk (lazy cascade in one
//! run); objects shared with a live blob survive with correct counts.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod gc_common;

use gc_common::*;
use net_mesh_engine::TreePolicy;
use net_mesh_engine::fsck::ReadData;

const TINY: TreePolicy = TreePolicy {
    leaf_fanout: 2,
    internal_fanout: 2,
    manifest_max_refs: net_mesh_engine::tree::DEFAULT_MANIFEST_MAX_REFS,
};

#[test]
fn collecting_an_unpinned_deep_tree_frees_all_of_it_in_one_run() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = open_tree(dir, TINY);
    let a = random_bytes(200_000, 7);
    let ra = store.store(&a).unwrap();
    assert!(ra.blob_ref.depth() >= 4, "depth {}", ra.blob_ref.depth());
    let objects = store.index().objects().unwrap().len() as u64;
    store.unpin(&ra.blob_id).unwrap();
    let report = store.gc(&gc_now()).unwrap();
    assert_eq!(report.objects_freed, objects, "{report:?}");
    assert!(report.nodes_freed > 0);
    assert!(store.index().objects().unwrap().is_empty());
    // Everything sealed was dead: those files are gone.
    assert!(report.segments_removed > 0);
    let live: u64 = store
        .index()
        .segments()
        .unwrap()
        .values()
        .map(|e| e.live_bytes)
        .sum();
    assert_eq!(live, 0);
}

#[test]
fn shared_subtrees_survive_with_their_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = open_tree(dir, TINY);
    let a = random_bytes(150_000, 8);
    let mut b = a.clone();
    b.extend(random_bytes(50_000, 9));
    let ra = store.store(&a).unwrap();
    let rb = store.store(&b).unwrap();
    store.unpin(&ra.blob_id).unwrap();
    let report = store.gc(&gc_now()).unwrap();
    assert!(report.objects_freed > 0);
    assert!(fetch(&store, &rb.blob_ref) == b);
    drop(store);
    let report = fsck(dir, ReadData::All, false);
    assert_eq!(kinds(&report), vec![], "{:#?}", report.problems);
}
