//! `Store::repair` rebuilds every missing or corrupt data and parity chunk of an erasure-coded
//! blob, stores the rebuilt bytes as new records (repointing the index entry of a corrupt one),
//! and leaves the store fully healthy: a second repair rebuilds nothing, and the blob then
//! survives n − k fresh losses per stripe again.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::*;
use net_mesh_engine::erasure::{RsParams, stripes};
use net_mesh_engine::{BlobRef, RepairError, RepairReport, Store, TreePolicy};

const TREE: TreePolicy = TreePolicy {
    leaf_fanout: 12,
    internal_fanout: 3,
    manifest_max_refs: net_mesh_engine::tree::DEFAULT_MANIFEST_MAX_REFS,
};

#[test]
fn repair_restores_every_lost_chunk_and_a_second_repair_finds_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = random_bytes(400_000, 9);
    let (r, lists) = {
        let store = open(dir, SMALL_CDC, TREE);
        let r = store
            .store_stream_with_rs(&data[..], 4, 6, "repair")
            .unwrap()
            .blob_ref;
        assert!(matches!(r, BlobRef::Tree { .. }));
        let lists = chunk_lists(&store, &r);
        (r, lists)
    };
    let params = RsParams::new(4, 6).unwrap();
    let spans: Vec<_> = lists
        .iter()
        .flat_map(|l| stripes(params, l).unwrap().into_iter().map(move |s| (l, s)))
        .collect();
    let total_stripes = spans.len() as u64;
    assert!(total_stripes >= 6);
    // Stripe 0: one data chunk's index entry removed and its parity corrupted. Stripe 1: two
    // data chunks corrupted. Stripe 2: both parity chunks removed. The rest untouched.
    let (l0, s0) = spans[0];
    let (l1, s1) = spans[1];
    let (l2, s2) = spans[2];
    let removed = vec![
        l0[s0.start + 1].hash,
        l2[s2.start + s2.data_count].hash,
        l2[s2.start + s2.data_count + 1].hash,
    ];
    let corrupt = vec![
        l0[s0.start + s0.data_count].hash,
        l1[s1.start].hash,
        l1[s1.start + 2].hash,
    ];
    remove_index_entries(dir, &removed);
    let store = open(dir, SMALL_CDC, TREE);
    let old_locs: Vec<_> = corrupt
        .iter()
        .map(|h| store.reader().unwrap().object(h).unwrap().unwrap().loc)
        .collect();
    for h in &corrupt {
        toggle_payload_byte(&store, h, 5);
    }
    assert!(fetch_all(&store, &r) == data, "reads rebuild before repair");

    let report = store.repair(&r).unwrap();
    assert_eq!(
        report,
        RepairReport {
            stripes_walked: total_stripes,
            healthy: total_stripes - 3,
            repaired: 3,
            unrecoverable: 0,
            unrecoverable_stripes: vec![],
            chunks_rebuilt: 6,
            bytes_rebuilt: report.bytes_rebuilt,
        }
    );
    assert!(report.bytes_rebuilt > 0);
    // Corrupt records were not overwritten: their entries now point at new records.
    for (h, old) in corrupt.iter().zip(&old_locs) {
        let now = store.reader().unwrap().object(h).unwrap().unwrap();
        assert_ne!(now.loc, *old);
        assert!(now.refcount >= 1);
    }
    for h in &removed {
        let e = store
            .reader()
            .unwrap()
            .object(h)
            .unwrap()
            .expect("re-inserted");
        assert!(e.refcount >= 1);
    }
    let again = store.repair(&r).unwrap();
    assert_eq!(again.repaired, 0);
    assert_eq!(again.chunks_rebuilt, 0);
    assert_eq!(again.healthy, total_stripes);

    // Healthy for real: reopen, then lose two fresh chunks in each of the repaired stripes.
    drop(store);
    let store = open(dir, SMALL_CDC, TREE);
    for (l, s) in [spans[0], spans[1], spans[2]] {
        toggle_payload_byte(&store, &l[s.start + s.data_count - 1].hash, 1);
        toggle_payload_byte(&store, &l[s.start + s.data_count + 1].hash, 1);
    }
    assert!(fetch_all(&store, &r) == data);
}

#[test]
fn repair_reports_unrecoverable_stripes_and_repairs_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path(), SMALL_CDC, TreePolicy::default());
    let data = random_bytes(100_000, 10);
    let r = store
        .store_stream_with_rs(&data[..], 3, 4, "bad")
        .unwrap()
        .blob_ref;
    let BlobRef::Manifest { chunks, .. } = &r else {
        panic!()
    };
    let spans = stripes(RsParams::new(3, 4).unwrap(), chunks).unwrap();
    assert!(spans.len() >= 3);
    toggle_payload_byte(&store, &chunks[spans[0].start].hash, 0);
    toggle_payload_byte(&store, &chunks[spans[0].start + 1].hash, 0);
    toggle_payload_byte(&store, &chunks[spans[1].start + 3].hash, 0);
    let report = store.repair(&r).unwrap();
    assert_eq!(report.unrecoverable, 1);
    assert_eq!(report.unrecoverable_stripes, vec![spans[0].stripe_index]);
    assert_eq!(report.repaired, 1);
    assert_eq!(report.chunks_rebuilt, 1);
    assert_eq!(report.healthy, spans.len() as u64 - 2);
    let again = store.repair(&r).unwrap();
    assert_eq!((again.repaired, again.unrecoverable), (0, 1));
}

#[test]
fn plain_blobs_have_nothing_to_repair() {
    let tmp = tempfile::tempdir().unwrap();
    let store: Store = open(tmp.path(), SMALL_CDC, TreePolicy::default());
    let r = store.store(&random_bytes(50_000, 1)).unwrap().blob_ref;
    assert!(matches!(
        store.repair(&r),
        Err(RepairError::NotErasureCoded)
    ));
}
