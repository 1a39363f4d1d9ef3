//! Power cuts during resumable uploads: at every sync boundary and at random points, every
//! upload whose begin returned resumes after reopen and finishes to exactly the ref of an
//! uninterrupted upload of the same bytes; a finished upload's blob reads back. The workload
//! checkpoints often, abandons one upload halfway (as a killed publisher would), resumes and
//! finishes it after a reopen, and leaves a second upload unfinished.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;
mod power_loss;

use std::sync::Arc;

use common::{SMALL_CDC, TINY_TREE, random_bytes};
use net_mesh_engine::resumable::{CheckpointCadence, ResumableConfig};
use net_mesh_engine::{BlobRef, Store, StoreConfig};
use power_loss::{Effect, Recording, check_all, crash_points};

fn config() -> StoreConfig {
    StoreConfig {
        chunking: SMALL_CDC,
        tree: TINY_TREE,
        segment_roll_size: 64 * 1024,
        batch_bytes: 32 * 1024,
    }
}

fn cadence() -> CheckpointCadence {
    CheckpointCadence {
        interval_bytes: 16 * 1024,
        at_leaf_close: false,
        max_age_ms: u64::MAX,
    }
}

fn upload(id: &str) -> ResumableConfig {
    ResumableConfig {
        staging_id: id.to_string(),
        pin_name: id.to_string(),
        chunking: SMALL_CDC,
        tree: TINY_TREE,
        cadence: cadence(),
    }
}

/// The ref an uninterrupted put of `data` gives (on a real store).
fn uninterrupted_ref(data: &[u8]) -> BlobRef {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), config()).unwrap();
    store.store(data).unwrap().blob_ref
}

fn begun(id: &str, data: &Arc<Vec<u8>>, want: &BlobRef) -> Vec<Effect> {
    vec![Effect::UploadBegun {
        staging_id: id.to_string(),
        data: Arc::clone(data),
        want: want.clone(),
    }]
}

#[test]
fn power_loss_during_resumable_upload_resumes_to_the_same_ref() {
    let mut rec = Recording::new(config());
    let first = Arc::new(random_bytes(120_000, 11));
    let second = Arc::new(random_bytes(90_000, 12));
    let want_first = uninterrupted_ref(&first);
    let want_second = uninterrupted_ref(&second);
    assert!(matches!(want_first, BlobRef::Tree { .. }));

    {
        let store = rec.open();
        let mut w = rec.step(
            || store.begin_upload(upload("up-1")).unwrap(),
            |_| begun("up-1", &first, &want_first),
        );
        let started = rec.now();
        for part in first[..70_000].chunks(5_000) {
            w.write(part).unwrap();
        }
        // The publisher dies: no finish, no abort.
        drop(w);
        rec.abandon(started, vec![Effect::Other("first 70 000 bytes of up-1")]);
    }
    {
        let store = rec.open();
        let started = rec.now();
        let (mut w, from) = store.resume_upload("up-1", cadence()).unwrap();
        for part in first[from as usize..].chunks(5_000) {
            w.write(part).unwrap();
        }
        let out = w.finish().unwrap();
        assert_eq!(out.blob_ref, want_first);
        rec.ack(
            started,
            vec![
                Effect::Pinned {
                    blob_ref: out.blob_ref,
                    data: Arc::clone(&first),
                },
                Effect::UploadFinished {
                    staging_id: "up-1".to_string(),
                },
            ],
        );
        let mut w = rec.step(
            || store.begin_upload(upload("up-2")).unwrap(),
            |_| begun("up-2", &second, &want_second),
        );
        let started = rec.now();
        for part in second[..50_000].chunks(5_000) {
            w.write(part).unwrap();
        }
        drop(w);
        rec.abandon(started, vec![Effect::Other("first 50 000 bytes of up-2")]);
    }

    let points = crash_points(&rec.disk, 100, 0x5eed_0002);
    let checked = check_all(&rec, &points, &|_, _| false);
    let stats = rec.disk.stats();
    eprintln!(
        "resumable: {checked} crash points over {} ops ({} syncs)",
        stats.ops, stats.syncs
    );
}
