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
#[path = "../../engine/tests/power_loss/mod.rs"]
mod power_loss;

use std::collections::HashMap;
use std::sync::Arc;

use common::{SMALL_CDC, TINY_TREE, random_bytes, resume_live};
use net_mesh_engine::index::blob_id;
use net_mesh_engine::{BlobRef, Store, StoreConfig};
use net_mesh_staging::{CheckpointCadence, Staging, StagingConfig, begin_streaming_store};
use power_loss::{Effect, Recording, Status, check_all, crash_points, fetch};

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

fn upload(id: &str) -> StagingConfig {
    StagingConfig {
        staging_id: Some(id.to_string()),
        pin_name: id.to_string(),
        pin_name_given: false,
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
    rec.extensions.push(Arc::new(Staging::default()));
    let first = Arc::new(random_bytes(120_000, 11));
    let second = Arc::new(random_bytes(90_000, 12));
    let want_first = uninterrupted_ref(&first);
    let want_second = uninterrupted_ref(&second);
    assert!(matches!(want_first, BlobRef::Tree { .. }));

    {
        let store = rec.open();
        let mut w = rec.step(
            || begin_streaming_store(&store, upload("up-1")).unwrap(),
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
        let (mut w, from) = resume_live(&store, "up-1", cadence()).unwrap();
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
            || begin_streaming_store(&store, upload("up-2")).unwrap(),
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
    let checked = check_all(&rec, &points, &|_, _| false, &uploads_resume);
    let stats = rec.disk.stats();
    eprintln!(
        "resumable: {checked} crash points over {} ops ({} syncs)",
        stats.ops, stats.syncs
    );
}

/// The resumable cadence the checks resume with (any cadence gives the same ref).
fn resume_cadence() -> CheckpointCadence {
    CheckpointCadence {
        interval_bytes: 1 << 40,
        at_leaf_close: false,
        max_age_ms: u64::MAX,
    }
}

/// Every upload whose begin was acknowledged resumes to the ref an uninterrupted upload gives;
/// an upload whose finish was acknowledged (or in flight and committed) is pinned instead.
fn uploads_resume(store: &Store, rec: &Recording, cut: usize) -> Result<(), String> {
    let mut uploads: HashMap<String, (Status, Arc<Vec<u8>>, BlobRef)> = HashMap::new();
    let mut finished: HashMap<String, Status> = HashMap::new();
    for step in &rec.steps {
        let status = step.status(cut);
        if status == Status::NotStarted {
            continue;
        }
        for effect in &step.effects {
            match effect {
                Effect::UploadBegun {
                    staging_id,
                    data,
                    want,
                } => {
                    uploads.insert(staging_id.clone(), (status, Arc::clone(data), want.clone()));
                }
                Effect::UploadFinished { staging_id } => {
                    finished.insert(staging_id.clone(), status);
                }
                _ => {}
            }
        }
    }
    let pinned = |r: &BlobRef| -> Result<bool, String> {
        Ok(store
            .reader()
            .map_err(|e| e.to_string())?
            .pin(&blob_id(r))
            .map_err(|e| e.to_string())?
            .is_some())
    };
    for (staging_id, (begun, data, want)) in uploads {
        if begun != Status::Acked {
            continue; // never acknowledged: nothing promised
        }
        let finish = finished.get(&staging_id).copied();
        let live = net_mesh_staging::checkpoint_of(store, &staging_id)
            .map_err(|e| format!("reading checkpoint of {staging_id}: {e}"))?
            .is_some();
        match (live, finish) {
            (true, Some(Status::Acked)) => {
                return Err(format!("upload {staging_id} finished but is still staged"));
            }
            (true, _) => {
                let (mut w, from) = resume_live(store, &staging_id, resume_cadence())
                    .map_err(|e| format!("resume {staging_id}: {e}"))?;
                for part in data[from as usize..].chunks(7_777) {
                    w.write(part)
                        .map_err(|e| format!("resume {staging_id}: {e}"))?;
                }
                let out = w
                    .finish()
                    .map_err(|e| format!("finish {staging_id}: {e}"))?;
                if out.blob_ref != want {
                    return Err(format!(
                        "upload {staging_id} resumed from {from} to another ref"
                    ));
                }
                if fetch(store, &out.blob_ref)? != *data {
                    return Err(format!(
                        "resumed upload {staging_id} reads back other bytes"
                    ));
                }
            }
            (false, Some(Status::Acked | Status::InFlight)) => {
                if !pinned(&want)? {
                    return Err(format!(
                        "upload {staging_id} is neither staged nor finished and pinned"
                    ));
                }
            }
            (false, _) => {
                return Err(format!(
                    "acknowledged upload {staging_id} cannot be resumed: its checkpoint is gone"
                ));
            }
        }
    }
    Ok(())
}
