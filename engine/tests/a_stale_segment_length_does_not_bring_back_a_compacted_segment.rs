//! A writer's commit carries the segment lengths its sync returned. When compaction retires a
//! segment (and unlinks its file) between that sync and that commit, the stale length must not
//! bring the segment's index entry back: the index would name a file that no longer exists and
//! the store would refuse to open (`MissingSegment`; seen once in the many-clients SIGKILL test
//! under CI load). Here the race is laid out in order on one thread: the lengths a sync could
//! have returned, then GC with compaction, then the commit that carries them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod gc_common;

use gc_common::*;
use net_mesh_engine::index::Batch;

#[test]
fn a_segment_length_taken_before_compaction_does_not_bring_the_segment_back() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = open(dir);
    let gone = store.store(&random_bytes(400_000, 1)).unwrap();
    let kept_bytes = random_bytes(60_000, 2);
    let kept = store.store(&kept_bytes).unwrap();

    // What a writer's sync could have returned before the compaction below.
    let stale: Vec<(u64, u64)> = store
        .index()
        .segments()
        .unwrap()
        .iter()
        .map(|(id, e)| (*id, e.committed_len))
        .collect();

    store.unpin(&gone.blob_id).unwrap();
    let report = store.gc(&gc_now()).unwrap();
    assert!(report.segments_removed > 0, "{report:?}");
    let after = store.index().segments().unwrap();
    let removed: Vec<u64> = stale
        .iter()
        .map(|&(id, _)| id)
        .filter(|id| !after.contains_key(id))
        .collect();
    assert!(!removed.is_empty(), "compaction retired segments");

    // The writer's commit lands now, with those lengths.
    store
        .index()
        .commit(&Batch {
            segment_lengths: stale,
            ..Batch::default()
        })
        .unwrap();
    let now = store.index().segments().unwrap();
    for id in &removed {
        assert!(!now.contains_key(id), "retired segment {id} is back");
        assert!(!seg_path(dir, *id).exists());
    }

    drop(store);
    let store = open(dir);
    assert_eq!(fetch(&store, &kept.blob_ref), kept_bytes);
}
