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
use net_mesh_engine::{Store, TreePolicy};
use net_mesh_staging::{CheckpointCadence, StagingConfig, begin_streaming_store};

fn rconfig(id: &str, tree: TreePolicy, interval: u64) -> StagingConfig {
    StagingConfig {
        staging_id: Some(id.to_string()),
        pin_name: id.to_string(),
        pin_name_given: false,
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
    for (_, c) in net_mesh_staging::checkpoints(store).unwrap() {
        for h in c.tree.held_objects() {
            *want.entry(h).or_insert(0u64) += 1;
        }
    }
    assert_eq!(staging_holds(store), want);
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
    let mut w = begin_streaming_store(&store, rconfig("held", tree, 30_000)).unwrap();
    for part in data[..150_000].chunks(10_000) {
        w.write(part).unwrap();
    }
    w.checkpoint().unwrap();
    let (_, ckpt) = net_mesh_staging::checkpoints(&store).unwrap().remove(0);
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
    assert!(net_mesh_staging::checkpoints(&store).unwrap().is_empty());
    // After finish the counts equal those of a plain upload of the same bytes in a fresh store.
    let tmp2 = tempfile::tempdir().unwrap();
    let plain = open(tmp2.path(), SMALL_CDC, tree);
    assert_eq!(plain.store(&data).unwrap().blob_ref, out.blob_ref);
    for hash in ckpt.tree.held_objects() {
        assert_eq!(refcount(&store, &hash), refcount(&plain, &hash));
    }

    // Abort: every count the checkpoint held goes away at once.
    let other = random_bytes(100_000, 22);
    let mut w = begin_streaming_store(&store, rconfig("gone", tree, 30_000)).unwrap();
    w.write(&other).unwrap();
    w.checkpoint().unwrap();
    let (_, c) = net_mesh_staging::checkpoints(&store)
        .unwrap()
        .into_iter()
        .find(|(id, _)| id == "gone")
        .unwrap();
    let held: Vec<Hash> = c.tree.held_objects().collect();
    assert!(held.iter().all(|h| refcount(&store, h) > 0));
    w.abort().unwrap();
    assert!(net_mesh_staging::checkpoints(&store).unwrap().is_empty());
    assert!(held.iter().all(|h| refcount(&store, h) == 0));
}

#[test]
fn abort_by_id_after_a_crash_releases_the_holds() {
    let data = random_bytes(80_000, 23);
    let tmp = tempfile::tempdir().unwrap();
    {
        let store = open(tmp.path(), SMALL_CDC, TINY_TREE);
        let mut w = begin_streaming_store(&store, rconfig("crashed", TINY_TREE, 10_000)).unwrap();
        w.write(&data).unwrap();
    }
    let store = open(tmp.path(), SMALL_CDC, TINY_TREE);
    let (_, c) = net_mesh_staging::checkpoints(&store).unwrap().remove(0);
    let held: Vec<Hash> = c.tree.held_objects().collect();
    assert!(!held.is_empty());
    assert!(held.iter().all(|h| refcount(&store, h) > 0));
    assert!(net_mesh_staging::abort_staging_id(&store, "crashed").unwrap());
    assert!(!net_mesh_staging::abort_staging_id(&store, "crashed").unwrap());
    assert!(held.iter().all(|h| refcount(&store, h) == 0));
}

#[test]
fn release_abandoned_drops_only_uploads_idle_past_the_grace_period() {
    let tmp = tempfile::tempdir().unwrap();
    let open_with_grace = |grace| {
        net_mesh_engine::Store::open_with(
            tmp.path(),
            options_with_grace(config(SMALL_CDC, TINY_TREE), grace),
        )
        .unwrap()
    };
    {
        let store = open_with_grace(Duration::from_secs(3600));
        let mut old = begin_streaming_store(&store, rconfig("old", TINY_TREE, 5_000)).unwrap();
        old.write(&random_bytes(30_000, 24)).unwrap();
        old.checkpoint().unwrap();
        drop(old);
        assert!(store.release_stale_holds().unwrap().is_empty());
    }
    std::thread::sleep(Duration::from_millis(50));
    let store = open_with_grace(Duration::from_millis(25));
    let mut fresh = begin_streaming_store(&store, rconfig("fresh", TINY_TREE, 5_000)).unwrap();
    fresh.write(&random_bytes(30_000, 25)).unwrap();
    fresh.checkpoint().unwrap();
    let released: Vec<String> = store
        .release_stale_holds()
        .unwrap()
        .into_iter()
        .map(|r| r.what)
        .collect();
    assert_eq!(released, vec!["old".to_string()]);
    let left: Vec<String> = net_mesh_staging::checkpoints(&store)
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(left, vec!["fresh".to_string()]);
    // The released upload cannot be resumed.
    assert!(resume_live(&store, "old", CheckpointCadence::default()).is_err());
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
            begin_streaming_store(&store, rconfig(&format!("u{i}"), TINY_TREE, 8_000)).unwrap()
        })
        .collect();
    for step in 0..8 {
        for (w, data) in writers.iter_mut().zip(&inputs) {
            let a = step * data.len() / 8;
            let b = (step + 1) * data.len() / 8;
            w.write(&data[a..b]).unwrap();
        }
    }
    assert_eq!(net_mesh_staging::checkpoints(&store).unwrap().len(), 4);
    for (w, data) in writers.into_iter().zip(&inputs) {
        let out = w.finish().unwrap();
        assert_eq!(&fetch_all(&store, &out.blob_ref), data);
    }
    assert!(net_mesh_staging::checkpoints(&store).unwrap().is_empty());
    assert_eq!(store.pins().unwrap().pins.len(), 4);
}
