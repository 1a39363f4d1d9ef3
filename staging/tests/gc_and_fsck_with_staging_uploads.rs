//! Live staging uploads: their checkpoint holds count in fsck's recomputed counts (a store with
//! an interrupted upload is clean), GC keeps what they hold within the abandonment grace (which
//! GC's own zero grace does not shorten), and GC releases an abandoned upload (idle past the
//! staging grace) and collects what only it held. Without the staging extension registered,
//! fsck sees a table nobody owns and will not lower counts.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::time::Duration;

use common::*;
use net_mesh_engine::fsck::{ProblemKind, ReadData};
use net_mesh_engine::{GcOptions, Store, StoreConfig, TreePolicy};
use net_mesh_staging::{CheckpointCadence, begin_streaming_store};

const TREE: TreePolicy = TreePolicy {
    leaf_fanout: 4,
    internal_fanout: 2,
    manifest_max_refs: net_mesh_engine::tree::DEFAULT_MANIFEST_MAX_REFS,
};

fn store_config() -> StoreConfig {
    StoreConfig {
        segment_roll_size: 64 * 1024,
        batch_bytes: 32 * 1024,
        ..config(SMALL_CDC, TREE)
    }
}

fn gc_now() -> GcOptions {
    GcOptions {
        grace: Duration::ZERO,
        ..GcOptions::default()
    }
}

#[test]
fn an_interrupted_upload_is_counted_by_fsck_kept_by_gc_then_released_when_abandoned() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let open_with_grace =
        |grace| Store::open_with(dir, options_with_grace(store_config(), grace)).unwrap();
    let store = open_with_grace(Duration::from_secs(3600));
    let kept = store.store(&random_bytes(50_000, 50)).unwrap();
    let mut upload = begin_streaming_store(
        &store,
        upload_config(
            "u1",
            TREE,
            CheckpointCadence {
                interval_bytes: 16 * 1024,
                at_leaf_close: true,
                max_age_ms: u64::MAX,
            },
        ),
    )
    .unwrap();
    upload.write(&random_bytes(200_000, 51)).unwrap();
    upload.checkpoint().unwrap();
    drop(upload); // interrupted: the checkpoint stays, holding its objects
    let held = staging_holds(&store);
    assert!(!held.is_empty());
    drop(store);

    let report = fsck(dir, store_config(), ReadData::All);
    assert_eq!(kinds(&report), vec![], "{:#?}", report.problems);
    assert_eq!(report.stats.extension_holds, held.values().sum::<u64>());

    // Opened without the staging extension, its table is nobody's: fsck reports it and will
    // not lower the counts its holds keep up.
    let bare = net_mesh_engine::fsck::fsck(
        dir,
        net_mesh_engine::OpenOptions::new(store_config()),
        &net_mesh_engine::fsck::FsckOptions {
            repair: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(
        kinds(&bare).contains(&ProblemKind::UnownedTable),
        "{bare:#?}"
    );
    assert!(
        kinds(&bare).contains(&ProblemKind::RefcountMismatch),
        "{bare:#?}"
    );
    // ... and its repair left them: an fsck that sees staging's holds still finds nothing.
    let report = fsck(dir, store_config(), ReadData::None);
    assert_eq!(kinds(&report), vec![], "{:#?}", report.problems);

    let store = open_with_grace(Duration::from_secs(3600));
    // Within the staging grace the upload is live: GC keeps everything it holds, even with an
    // object grace of 0 s.
    for options in [GcOptions::default(), gc_now()] {
        let r = store.gc(&options).unwrap();
        assert!(r.released_holds.is_empty());
        for h in held.keys() {
            assert!(store.reader().unwrap().contains(h).unwrap());
        }
    }
    drop(store);
    // (make sure the clock has moved past the checkpoint's millisecond)
    std::thread::sleep(Duration::from_millis(3));
    // Past the staging grace (0 s here) it is abandoned: released, and what only it held is
    // freed.
    let store = open_with_grace(Duration::ZERO);
    let r = store.gc(&gc_now()).unwrap();
    let released: Vec<&str> = r.released_holds.iter().map(|h| h.what.as_str()).collect();
    assert_eq!(released, vec!["u1"]);
    assert!(r.objects_freed > 0);
    for h in held.keys() {
        assert!(!store.reader().unwrap().contains(h).unwrap());
    }
    assert!(fetch_all(&store, &kept.blob_ref) == random_bytes(50_000, 50));
    drop(store);
    assert_eq!(kinds(&fsck(dir, store_config(), ReadData::All)), vec![]);
}
