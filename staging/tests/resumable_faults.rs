//! Storage faults during a resumable upload (FaultyBackend: the Nth write fails, the Nth
//! fsync fails, the Nth write is torn and the "machine" dies) end in a typed error, never a
//! panic; after reopening, every committed blob still reads back verified and the upload
//! resumes to the uninterrupted upload's ref.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::sync::Arc;

use common::*;
use net_mesh_engine::{BlobRef, Store, StoreError};
use net_mesh_segments::FaultyBackend;
use net_mesh_staging::{CheckpointCadence, StagingConfig, StagingError, begin_streaming_store};

#[derive(Clone, Copy, Debug)]
enum Fault {
    Write(u64),
    Sync(u64),
    Tear(u64, u64),
}

fn cadence() -> CheckpointCadence {
    CheckpointCadence {
        interval_bytes: 12_000,
        at_leaf_close: true,
        max_age_ms: u64::MAX,
    }
}

fn upload(store: &Store, data: &[u8]) -> Result<BlobRef, StagingError> {
    let mut w = begin_streaming_store(
        store,
        StagingConfig {
            staging_id: Some("f".into()),
            pin_name: "f".into(),
            pin_name_given: false,
            chunking: SMALL_CDC,
            tree: TINY_TREE,
            cadence: cadence(),
        },
    )?;
    for part in data.chunks(5_000) {
        w.write(part)?;
    }
    Ok(w.finish()?.blob_ref)
}

fn run(fault: Fault) {
    let earlier = random_bytes(40_000, 41);
    let data = random_bytes(150_000, 42);
    let tmp = tempfile::tempdir().unwrap();
    let want = {
        let t = tempfile::tempdir().unwrap();
        open(t.path(), SMALL_CDC, TINY_TREE)
            .store(&data)
            .unwrap()
            .blob_ref
    };
    let earlier_ref;
    let failed;
    {
        let backend = FaultyBackend::new();
        let mut options = options(config(SMALL_CDC, TINY_TREE));
        options.backends.files = Arc::new(backend.clone());
        let store = Store::open_with(tmp.path(), options).unwrap();
        earlier_ref = store.store(&earlier).unwrap().blob_ref;
        match fault {
            Fault::Write(n) => backend.fail_nth_write(backend.writes() + n),
            Fault::Sync(n) => backend.fail_nth_sync(backend.syncs() + n),
            Fault::Tear(n, keep) => backend.tear_nth_write(backend.writes() + n, keep),
        }
        let result = upload(&store, &data);
        failed = result.is_err();
        match result {
            Ok(r) => assert_eq!(r, want, "{fault:?}"),
            Err(e) => {
                // Typed (I/O from the segments layer, or the poisoned handle after it).
                assert!(
                    matches!(
                        e,
                        StagingError::Store(StoreError::Segments(_) | StoreError::Poisoned)
                    ),
                    "{fault:?}: {e}"
                );
                // After a failed fsync the handle refuses writes until reopen (fsyncgate).
                if matches!(fault, Fault::Sync(_)) {
                    assert!(
                        matches!(store.store(b"x"), Err(StoreError::Poisoned)),
                        "{fault:?}"
                    );
                }
            }
        }
    }
    let store = open(tmp.path(), SMALL_CDC, TINY_TREE);
    assert_eq!(fetch_all(&store, &earlier_ref), earlier, "{fault:?}");
    let blob = if failed {
        match resume_live(&store, "f", cadence()) {
            Ok((mut w, from)) => {
                for part in data[from as usize..].chunks(7_000) {
                    w.write(part).unwrap();
                }
                w.finish().unwrap().blob_ref
            }
            // The fault hit before the first checkpoint committed: start again.
            Err(StagingError::NotFound(_)) => upload(&store, &data).unwrap(),
            Err(e) => panic!("{fault:?}: resume failed: {e}"),
        }
    } else {
        want.clone()
    };
    assert_eq!(blob, want, "{fault:?}");
    assert_eq!(fetch_all(&store, &blob), data, "{fault:?}");
    assert!(
        net_mesh_staging::checkpoints(&store).unwrap().is_empty(),
        "{fault:?}"
    );
}

#[test]
fn failing_the_nth_write_ends_in_a_typed_error_and_a_clean_resume() {
    for n in [1, 2, 3, 5, 8, 13, 21, 34, 55] {
        run(Fault::Write(n));
    }
}

#[test]
fn failing_the_nth_fsync_ends_in_a_typed_error_and_a_clean_resume() {
    for n in 1..=8 {
        run(Fault::Sync(n));
    }
}

#[test]
fn a_torn_final_record_is_truncated_on_reopen_and_the_upload_resumes() {
    for (n, keep) in [
        (1, 0),
        (2, 10),
        (3, 51),
        (4, 60),
        (9, 100),
        (20, 1),
        (40, 3000),
    ] {
        run(Fault::Tear(n, keep));
    }
}
