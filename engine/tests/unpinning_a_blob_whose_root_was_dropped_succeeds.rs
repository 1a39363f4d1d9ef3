//! A blob whose root object was dropped (a forced chunk removal simulating loss) can still be
//! unpinned: the pin goes, the count its reference held is taken off the recorded lost count,
//! and GC then frees the rest; fsck is clean afterwards.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod gc_common;

use gc_common::*;
use net_mesh_engine::BlobRef;
use net_mesh_engine::Unpinned;
use net_mesh_engine::fsck::ReadData;

#[test]
fn unpinning_a_blob_whose_root_was_dropped_succeeds() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = open(dir);
    let kept = store.store(&random_bytes(30_000, 1)).unwrap();
    let damaged = store.store(&random_bytes(60_000, 2)).unwrap();
    let BlobRef::Manifest { chunks, .. } = &damaged.blob_ref else {
        panic!("expected a Manifest: {:?}", damaged.blob_ref);
    };
    let lost = chunks[0].hash;
    assert_eq!(store.remove_chunk(&lost, true).unwrap(), 1);
    assert_eq!(store.index().lost_refs(&lost).unwrap(), Some(1));

    assert_eq!(store.unpin(&damaged.blob_id).unwrap(), Unpinned::Removed);
    assert_eq!(store.index().lost_refs(&lost).unwrap(), None);
    let report = store.gc(&gc_now()).unwrap();
    assert!(report.objects_freed > 0, "{report:?}");
    assert!(fetch(&store, &kept.blob_ref) == random_bytes(30_000, 1));
    drop(store);
    assert_eq!(kinds(&fsck(dir, ReadData::All, false)), vec![]);
}
