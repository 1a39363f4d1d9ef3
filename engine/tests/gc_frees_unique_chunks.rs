//! Put A and B sharing chunks, unpin A, GC with grace 0: A's unique chunks are freed, the
//! segment files really shrink, and B reads back verified.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod gc_common;

use std::collections::HashSet;

use gc_common::*;
use net_mesh_engine::GcOptions;
use net_mesh_engine::fsck::ReadData;

#[test]
fn unpinning_a_and_collecting_frees_its_unique_chunks_and_disk_space() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let shared = random_bytes(300_000, 1);
    let mut a = shared.clone();
    a.extend(random_bytes(900_000, 2));
    let mut b = shared.clone();
    b.extend(random_bytes(200_000, 3));

    let store = open(dir);
    let ra = store.store(&a).unwrap();
    let rb = store.store(&b).unwrap();
    let chunks_a: HashSet<_> = store
        .blob_chunks(&ra.blob_ref)
        .unwrap()
        .into_iter()
        .map(|c| c.hash)
        .collect();
    let chunks_b: HashSet<_> = store
        .blob_chunks(&rb.blob_ref)
        .unwrap()
        .into_iter()
        .map(|c| c.hash)
        .collect();
    let shared_chunks: Vec<_> = chunks_a.intersection(&chunks_b).copied().collect();
    let unique_a: Vec<_> = chunks_a.difference(&chunks_b).copied().collect();
    assert!(!shared_chunks.is_empty(), "A and B share chunks");
    assert!(unique_a.len() > 50);

    // Nothing is collectable while both are pinned, nor with the default grace.
    let report = store.gc(&gc_now()).unwrap();
    assert_eq!(report.objects_freed, 0);
    assert_eq!(
        store.unpin(&ra.blob_id).unwrap(),
        net_mesh_engine::Unpinned::Removed
    );
    let report = store.gc(&GcOptions::default()).unwrap();
    assert_eq!(report.objects_freed, 0, "24h grace keeps fresh objects");

    // Dry run reports without changing anything.
    let before = store.disk_bytes();
    let dry = store
        .gc(&GcOptions {
            dry_run: true,
            ..gc_now()
        })
        .unwrap();
    assert!(dry.chunks_freed >= unique_a.len() as u64);
    assert_eq!(store.disk_bytes(), before);
    assert!(store.reader().unwrap().contains(&unique_a[0]).unwrap());

    let report = store.gc(&gc_now()).unwrap();
    assert_eq!(report.chunks_freed, dry.chunks_freed);
    assert!(report.bytes_freed >= 900_000 - 16_384);
    assert!(report.segments_compacted > 0, "{report:?}");
    let reader = store.reader().unwrap();
    for h in &unique_a {
        assert!(!reader.contains(h).unwrap(), "unique chunk of A survived");
    }
    for h in &shared_chunks {
        assert!(reader.contains(h).unwrap(), "shared chunk was collected");
    }
    drop(reader);
    let after = store.disk_bytes();
    assert_eq!(report.disk_bytes_before, before);
    assert_eq!(report.disk_bytes_after, after);
    assert!(
        after + 700_000 < before,
        "disk usage must drop by most of A's unique bytes: {before} -> {after}"
    );
    assert!(fetch(&store, &rb.blob_ref) == b);

    // A second run finds nothing more; the store stays consistent and usable.
    let again = store.gc(&gc_now()).unwrap();
    assert_eq!(again.objects_freed, 0);
    let rc = store.store(&a).unwrap();
    assert!(fetch(&store, &rc.blob_ref) == a);
    drop(store);
    let report = fsck(dir, ReadData::All, false);
    assert_eq!(kinds(&report), vec![], "{:#?}", report.problems);

    let store = open(dir);
    assert!(fetch(&store, &rb.blob_ref) == b);
    assert!(fetch(&store, &rc.blob_ref) == a);
}
