//! Removing an unreferenced chunk (`Store::remove_chunk`) fails in the index (the next write,
//! or the next sync, of `index.redb`): the call returns the index's typed I/O error, the handle
//! is poisoned — later writes are refused with `Poisoned` — and a reopen holds every
//! acknowledged pin with fsck clean, the chunk either still indexed or gone.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;
mod index_faults;

use common::{SMALL_CDC, TINY_TREE, fetch_all, random_bytes};
use index_faults::{NextFault, assert_fsck_clean, open_on};
use net_mesh_engine::index::IndexError;
use net_mesh_engine::{BlobRef, GcError, GcOptions, StoreConfig, StoreError};
use net_mesh_segments::sim::SimDisk;

fn config() -> StoreConfig {
    StoreConfig {
        chunking: SMALL_CDC,
        tree: TINY_TREE,
        segment_roll_size: 32 * 1024,
        batch_bytes: 16 * 1024,
    }
}

#[test]
fn chunk_removal_index_io_error_poisons_the_handle() {
    for fault in NextFault::ALL {
        let context = format!("{fault:?} fails in the chunk removal");
        let tmp = tempfile::tempdir().unwrap();
        let disk = SimDisk::with_dir(tmp.path());
        let kept_data = random_bytes(30_000, 1);
        let (kept, chunk) = {
            let (store, faults) = open_on(tmp.path(), &disk, config());
            let kept = store.store(&kept_data).unwrap();
            // A Small blob: its one chunk is unreferenced once unpinned.
            let small = store.store(&random_bytes(500, 2)).unwrap();
            let BlobRef::Small { hash: chunk, .. } = small.blob_ref else {
                panic!("not a Small blob: {:?}", small.blob_ref);
            };
            store.unpin(&small.blob_id).unwrap();

            fault.arm(&faults);
            let e = store.remove_chunk(&chunk, false).unwrap_err();
            assert!(
                matches!(e, GcError::Index(IndexError::Db(_))),
                "{context}: {e:?}"
            );

            let e = store.pin(&kept.blob_ref, "again").unwrap_err();
            assert!(matches!(e, StoreError::Poisoned), "{context}: pin: {e:?}");
            let e = store.store(&random_bytes(20_000, 3)).unwrap_err();
            assert!(matches!(e, StoreError::Poisoned), "{context}: put: {e:?}");
            let e = store.remove_chunk(&chunk, false).unwrap_err();
            assert!(matches!(e, GcError::Poisoned), "{context}: again: {e:?}");
            let e = store.gc(&GcOptions::default()).unwrap_err();
            assert!(matches!(e, GcError::Poisoned), "{context}: gc: {e:?}");
            (kept, chunk)
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
        // Whatever the failed commit left, the chunk can be removed now (or is gone already).
        match store.remove_chunk(&chunk, false) {
            Ok(0) | Err(GcError::NotFound(_)) => {}
            other => panic!("{context}: removal after reopen: {other:?}"),
        }
        assert_fsck_clean(&store, &context);
    }
}
