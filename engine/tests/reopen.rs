//! Blobs survive a clean close and reopen; pins and unpins persist.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::*;
use net_mesh_engine::{OpenError, Store, StoreConfig};

#[test]
fn committed_blobs_read_back_after_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let mut refs = Vec::new();
    {
        let store = open(tmp.path(), SMALL_CDC, TINY_TREE);
        for i in 0..5u64 {
            let data = random_bytes(30_000 * i as usize + 1, i);
            refs.push((store.store(&data).unwrap().blob_ref, data));
        }
    }
    let store = open(tmp.path(), SMALL_CDC, TINY_TREE);
    for (r, data) in &refs {
        assert_eq!(&fetch_all(&store, r), data);
    }
    assert_eq!(store.pins().unwrap().pins.len(), 5);
    // Appending continues after reopen.
    let more = random_bytes(70_000, 99);
    let r = store.store(&more).unwrap().blob_ref;
    assert_eq!(fetch_all(&store, &r), more);
}

#[test]
fn unpin_persists_and_unknown_ids_report_false() {
    let tmp = tempfile::tempdir().unwrap();
    let id = {
        let store = open(tmp.path(), SMALL_CDC, TINY_TREE);
        let out = store.store(b"keep me").unwrap();
        assert_eq!(
            store.unpin(&out.blob_id).unwrap(),
            net_mesh_engine::Unpinned::Removed
        );
        assert_eq!(
            store.unpin(&out.blob_id).unwrap(),
            net_mesh_engine::Unpinned::NotPinned
        );
        out.blob_id
    };
    let store = open(tmp.path(), SMALL_CDC, TINY_TREE);
    assert!(store.pins().unwrap().pins.iter().all(|(i, _)| *i != id));
}

#[test]
fn a_second_open_of_the_same_dir_is_locked() {
    let tmp = tempfile::tempdir().unwrap();
    let _first = Store::open(tmp.path(), StoreConfig::default()).unwrap();
    let err = Store::open(tmp.path(), StoreConfig::default()).unwrap_err();
    match err {
        OpenError::Locked { pid, .. } => assert_eq!(pid, std::process::id().to_string()),
        other => panic!("expected Locked, got {other:?}"),
    }
}
