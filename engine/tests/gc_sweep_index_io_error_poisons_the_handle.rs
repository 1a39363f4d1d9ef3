//! GC's delete transaction fails in the index (the next write, or the next sync, of
//! `index.redb`): `gc` returns the index's typed I/O error and the handle is poisoned as after a
//! failed batch commit — every later put, pin, unpin, GC and chunk removal on it is refused with
//! `Poisoned` — and a reopen holds every acknowledged pin with fsck clean; GC then runs again.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;
mod index_faults;

use std::time::Duration;

use common::{SMALL_CDC, TINY_TREE, fetch_all, random_bytes};
use index_faults::{NextFault, assert_fsck_clean, open_on};
use net_mesh_engine::index::IndexError;
use net_mesh_engine::{GcError, GcOptions, StoreConfig, StoreError};
use net_mesh_segments::sim::SimDisk;

fn config() -> StoreConfig {
    StoreConfig {
        chunking: SMALL_CDC,
        tree: TINY_TREE,
        segment_roll_size: 32 * 1024,
        batch_bytes: 16 * 1024,
    }
}

/// No compaction: the sweep is the only index transaction of the run.
fn sweep_only() -> GcOptions {
    GcOptions {
        grace: Duration::ZERO,
        dry_run: false,
        compact_threshold: 0.0,
        ..GcOptions::default()
    }
}

#[test]
fn gc_sweep_index_io_error_poisons_the_handle() {
    for fault in NextFault::ALL {
        let context = format!("{fault:?} fails in the sweep");
        let tmp = tempfile::tempdir().unwrap();
        let disk = SimDisk::with_dir(tmp.path());
        let kept_data = random_bytes(30_000, 1);
        let (kept, gone) = {
            let (store, faults) = open_on(tmp.path(), &disk, config());
            let kept = store.store(&kept_data).unwrap();
            let gone = store.store(&random_bytes(30_000, 2)).unwrap();
            store.unpin(&gone.blob_id).unwrap();

            fault.arm(&faults);
            let e = store.gc(&sweep_only()).unwrap_err();
            assert!(
                matches!(e, GcError::Index(IndexError::Db(_))),
                "{context}: {e:?}"
            );

            let e = store.pin(&kept.blob_ref, "again").unwrap_err();
            assert!(matches!(e, StoreError::Poisoned), "{context}: pin: {e:?}");
            let e = store.unpin(&kept.blob_id).unwrap_err();
            assert!(matches!(e, StoreError::Poisoned), "{context}: unpin: {e:?}");
            let e = store.store(&random_bytes(20_000, 3)).unwrap_err();
            assert!(matches!(e, StoreError::Poisoned), "{context}: put: {e:?}");
            let e = store.gc(&sweep_only()).unwrap_err();
            assert!(matches!(e, GcError::Poisoned), "{context}: gc: {e:?}");
            let chunk = store.blob_chunks(&gone.blob_ref).unwrap()[0].hash;
            let e = store.remove_chunk(&chunk, false).unwrap_err();
            assert!(
                matches!(e, GcError::Poisoned),
                "{context}: chunk removal: {e:?}"
            );
            (kept, gone)
        };

        let (store, _) = open_on(tmp.path(), &disk, config());
        let pins: Vec<_> = store
            .pins()
            .unwrap()
            .pins
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(pins, vec![kept.blob_id], "{context}");
        assert_eq!(fetch_all(&store, &kept.blob_ref), kept_data, "{context}");
        assert_fsck_clean(&store, &context);
        let report = store.gc(&sweep_only()).unwrap();
        assert!(
            report.objects_freed > 0 || store.blob_chunks(&gone.blob_ref).is_err(),
            "{context}: the unpinned blob is neither freed now nor gone already"
        );
        assert_eq!(fetch_all(&store, &kept.blob_ref), kept_data, "{context}");
        assert_fsck_clean(&store, &context);
    }
}
