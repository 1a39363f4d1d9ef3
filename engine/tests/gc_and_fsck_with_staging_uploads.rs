//! Live staging uploads: their checkpoint holds count in fsck's recomputed counts (a store with
//! an interrupted upload is clean), GC keeps what they hold within the grace period, and GC
//! releases an abandoned upload (idle past the staging grace, which `grace` does not shorten)
//! and collects what only it held.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod gc_common;

use gc_common::*;
use net_mesh_engine::fsck::ReadData;
use net_mesh_engine::resumable::{CheckpointCadence, ResumableConfig};
use net_mesh_engine::{GcOptions, TreePolicy};

const TREE: TreePolicy = TreePolicy {
    leaf_fanout: 4,
    internal_fanout: 2,
    manifest_max_refs: net_mesh_engine::tree::DEFAULT_MANIFEST_MAX_REFS,
};

#[test]
fn an_interrupted_upload_is_counted_by_fsck_kept_by_gc_then_released_when_abandoned() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = open_tree(dir, TREE);
    let kept = store.store(&random_bytes(50_000, 50)).unwrap();
    let mut upload = store
        .begin_upload(ResumableConfig {
            staging_id: "u1".into(),
            pin_name: "u1".into(),
            chunking: SMALL_CDC,
            tree: TREE,
            cadence: CheckpointCadence {
                interval_bytes: 16 * 1024,
                at_leaf_close: true,
                max_age_ms: u64::MAX,
            },
        })
        .unwrap();
    upload.write(&random_bytes(200_000, 51)).unwrap();
    upload.checkpoint().unwrap();
    drop(upload); // interrupted: the checkpoint stays, holding its objects
    let held = store.staging_holds().unwrap();
    assert!(!held.is_empty());
    drop(store);

    let report = fsck(dir, ReadData::All, false);
    assert_eq!(kinds(&report), vec![], "{:#?}", report.problems);
    assert_eq!(report.stats.staging_uploads, 1);

    let store = open_tree(dir, TREE);
    // Within the staging grace the upload is live: GC keeps everything it holds, even with an
    // object grace of 0 s.
    for options in [GcOptions::default(), gc_now()] {
        let r = store.gc(&options).unwrap();
        assert!(r.staging_released.is_empty());
        for h in held.keys() {
            assert!(store.reader().unwrap().contains(h).unwrap());
        }
    }
    // (make sure the clock has moved past the checkpoint's millisecond)
    std::thread::sleep(std::time::Duration::from_millis(3));
    // Past the staging grace (0 s here) it is abandoned: released, and what only it held is
    // freed.
    let r = store
        .gc(&GcOptions {
            staging_grace: std::time::Duration::ZERO,
            ..gc_now()
        })
        .unwrap();
    assert_eq!(r.staging_released, vec!["u1".to_string()]);
    assert!(r.objects_freed > 0);
    for h in held.keys() {
        assert!(!store.reader().unwrap().contains(h).unwrap());
    }
    assert!(fetch(&store, &kept.blob_ref) == random_bytes(50_000, 50));
    drop(store);
    assert_eq!(kinds(&fsck(dir, ReadData::All, false)), vec![]);
}
