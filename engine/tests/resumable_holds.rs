//! Objects named by a live staging checkpoint have a reference count > 0 (GC keeps them);
//! finishing moves the references to the blob's nodes and pin; aborting and releasing
//! abandoned uploads drop them at once; many uploads run at once in one store.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use net_mesh_engine::codec::Hash;
use net_mesh_engine::resumable::{CheckpointCadence, ResumableConfig};
use net_mesh_engine::{Store, TreePolicy};

fn rconfig(id: &str, tree: TreePolicy, interval: u64) -> ResumableConfig {
    ResumableConfig {
        staging_id: id.to_string(),
        pin_name: id.to_string(),
        chunking: SMALL_CDC,
        tree,
        cadence: CheckpointCadence {
            interval_bytes: interval,
            at_leaf_close: true,
            max_age_ms: u64::MAX,
        },
    }
}

fn refcount(store: &Store, hash: &Hash) -> u64 {
    store
        .reader()
        .unwrap()
        .object(hash)
        .unwrap()
        .map_or(0, |e| e.refcount)
}

/// Expected counts from the live checkpoints alone (no pins, no other blobs).
fn held_counts(store: &Store) -> HashMap<Hash, u64> {
    let mut want = HashMap::new();
    for (_, c) in store.staging_uploads().unwrap() {
        for h in c.tree.held_objects() {
            *want.entry(h).or_insert(0u64) += 1;
        }
    }
    assert_eq!(store.staging_holds().unwrap(), want);
    want
}

#[test]
fn a_live_checkpoint_holds_every_object_it_names_and_finish_or_abort_release_them() {
    let data = random_bytes(200_000, 21);
    let tree = TreePolicy {
        leaf_fanout: 4,
        internal_fanout: 2,
        manifest_max_refs: net_mesh_engine::tree::DEFAULT_MANIFEST_MAX_REFS,
    };
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path(), SMALL_CDC, tree);
    let mut w = store.begin_upload(rconfig("held", tree, 30_000)).unwrap();
    for part in data[..150_000].chunks(10_000) {
        w.write(part).unwrap();
    }
    w.checkpoint().unwrap();
    let (_, ckpt) = store.staging_uploads().unwrap().remove(0);
    assert!(ckpt.tree.held_objects().count() > 1);
    for (hash, n) in held_counts(&store) {
        // Pending leaves also hold their chunks, so chunk counts can be higher; never lower.
        assert!(refcount(&store, &hash) >= n, "object held {n} times");
        assert!(refcount(&store, &hash) > 0);
    }
    for part in data[150_000..].chunks(10_000) {
        w.write(part).unwrap();
    }
    let out = w.finish().unwrap();
    assert!(store.staging_uploads().unwrap().is_empty());
    // After finish the counts equal those of a plain upload of the same bytes in a fresh store.
    let tmp2 = tempfile::tempdir().unwrap();
    let plain = open(tmp2.path(), SMALL_CDC, tree);
    assert_eq!(plain.store(&data).unwrap().blob_ref, out.blob_ref);
    for hash in ckpt.tree.held_objects() {
        assert_eq!(refcount(&store, &hash), refcount(&plain, &hash));
    }

    // Abort: every count the checkpoint held goes away at once.
    let other = random_bytes(100_000, 22);
    let mut w = store.begin_upload(rconfig("gone", tree, 30_000)).unwrap();
    w.write(&other).unwrap();
    w.checkpoint().unwrap();
    let (_, c) = store
        .staging_uploads()
        .unwrap()
        .into_iter()
        .find(|(id, _)| id == "gone")
        .unwrap();
    let held: Vec<Hash> = c.tree.held_objects().collect();
    assert!(held.iter().all(|h| refcount(&store, h) > 0));
    w.abort().unwrap();
    assert!(store.staging_uploads().unwrap().is_empty());
    assert!(held.iter().all(|h| refcount(&store, h) == 0));
}

#[test]
fn abort_by_id_after_a_crash_releases_the_holds() {
    let data = random_bytes(80_000, 23);
    let tmp = tempfile::tempdir().unwrap();
    {
        let store = open(tmp.path(), SMALL_CDC, TINY_TREE);
        let mut w = store
            .begin_upload(rconfig("crashed", TINY_TREE, 10_000))
            .unwrap();
        w.write(&data).unwrap();
    }
    let store = open(tmp.path(), SMALL_CDC, TINY_TREE);
    let (_, c) = store.staging_uploads().unwrap().remove(0);
    let held: Vec<Hash> = c.tree.held_objects().collect();
    assert!(!held.is_empty());
    assert!(held.iter().all(|h| refcount(&store, h) > 0));
    assert!(store.abort_upload("crashed").unwrap());
    assert!(!store.abort_upload("crashed").unwrap());
    assert!(held.iter().all(|h| refcount(&store, h) == 0));
}

#[test]
fn release_abandoned_drops_only_uploads_idle_past_the_grace_period() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path(), SMALL_CDC, TINY_TREE);
    let mut old = store
        .begin_upload(rconfig("old", TINY_TREE, 5_000))
        .unwrap();
    old.write(&random_bytes(30_000, 24)).unwrap();
    old.checkpoint().unwrap();
    drop(old);
    std::thread::sleep(Duration::from_millis(50));
    let mut fresh = store
        .begin_upload(rconfig("fresh", TINY_TREE, 5_000))
        .unwrap();
    fresh.write(&random_bytes(30_000, 25)).unwrap();
    fresh.checkpoint().unwrap();

    assert!(
        store
            .release_abandoned_staging(Duration::from_secs(3600))
            .unwrap()
            .is_empty()
    );
    let released = store
        .release_abandoned_staging(Duration::from_millis(25))
        .unwrap();
    assert_eq!(released, vec!["old".to_string()]);
    let left: Vec<String> = store
        .staging_uploads()
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(left, vec!["fresh".to_string()]);
    // Counts now equal exactly what the remaining checkpoint holds (plus node children).
    for (hash, n) in held_counts(&store) {
        assert!(refcount(&store, &hash) >= n);
    }
    // The released upload cannot be resumed.
    assert!(
        store
            .resume_upload("old", CheckpointCadence::default())
            .is_err()
    );
    let out = fresh.finish().unwrap();
    assert_eq!(fetch_all(&store, &out.blob_ref), random_bytes(30_000, 25));
}

#[test]
fn many_uploads_run_at_once_in_one_store() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path(), SMALL_CDC, TINY_TREE);
    let inputs: Vec<Vec<u8>> = (0..4)
        .map(|i| random_bytes(70_000 + i * 1_000, 30 + i as u64))
        .collect();
    let mut writers: Vec<_> = (0..4)
        .map(|i| {
            store
                .begin_upload(rconfig(&format!("u{i}"), TINY_TREE, 8_000))
                .unwrap()
        })
        .collect();
    for step in 0..8 {
        for (w, data) in writers.iter_mut().zip(&inputs) {
            let a = step * data.len() / 8;
            let b = (step + 1) * data.len() / 8;
            w.write(&data[a..b]).unwrap();
        }
    }
    assert_eq!(store.staging_uploads().unwrap().len(), 4);
    for (w, data) in writers.into_iter().zip(&inputs) {
        let out = w.finish().unwrap();
        assert_eq!(&fetch_all(&store, &out.blob_ref), data);
    }
    assert!(store.staging_uploads().unwrap().is_empty());
    assert_eq!(store.pins().unwrap().pins.len(), 4);
}
