//! A pin name longer than `MAX_PIN_NAME` bytes is refused with a typed error by every engine API
//! that takes one (staging's begin: its own test), before anything is written; a name of exactly the limit (in multi-byte
//! characters) is kept whole.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::path::Path;

use common::*;
use net_mesh_engine::index::{MAX_PIN_NAME, PinNameTooLong};
use net_mesh_engine::{Store, StoreError, TreePolicy};

/// Bytes in every segment file of the store.
fn segment_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

fn objects(store: &Store) -> usize {
    let mut n = 0;
    store.index().for_each_object(|_, _| n += 1).unwrap();
    n
}

fn too_long(e: &StoreError, len: usize) -> bool {
    matches!(e, StoreError::PinName(PinNameTooLong { len: l }) if *l == len)
}

#[test]
fn over_long_pin_names_are_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path(), SMALL_CDC, TreePolicy::default());
    let data = random_bytes(50_000, 1);
    let kept = store.store_stream(&data[..], "kept").unwrap();
    let (bytes, count) = (segment_bytes(tmp.path()), objects(&store));

    // 513 two-byte characters: 1026 bytes. Older builds cut this inside a character.
    let long = "é".repeat(MAX_PIN_NAME / 2 + 1);
    assert_eq!(long.len(), 1026);
    let other = random_bytes(70_000, 2);

    let e = store.store_stream(&other[..], &long).unwrap_err();
    assert!(too_long(&e, 1026), "{e:?}");
    assert_eq!(
        e.to_string(),
        "pin name is 1026 bytes long; at most 1024 bytes are allowed"
    );
    let e = store
        .store_stream_with_rs(&other[..], 3, 5, &long)
        .unwrap_err();
    assert!(too_long(&e, 1026), "{e:?}");
    let e = store.pin(&kept.blob_ref, &long).unwrap_err();
    assert!(too_long(&e, 1026), "{e:?}");
    // Nothing reached a segment or the index; the handle is not poisoned.
    assert_eq!(segment_bytes(tmp.path()), bytes);
    assert_eq!(objects(&store), count);
    assert_eq!(store.pins().unwrap().pins.len(), 1);

    // A BlobWriter learns the name at the end: its last chunks, nodes and pin are not written.
    let mut w = store.writer().unwrap();
    w.write(&other).unwrap();
    let e = w.finish(&long).unwrap_err();
    assert!(too_long(&e, 1026), "{e:?}");
    assert_eq!(store.pins().unwrap().pins.len(), 1);

    // Exactly the limit, in two-byte characters, is kept whole and survives a reopen.
    let limit = "é".repeat(MAX_PIN_NAME / 2);
    let id = store.pin(&kept.blob_ref, &limit).unwrap();
    assert_eq!(
        id, kept.blob_id,
        "same blob, already pinned: the pin is a no-op"
    );
    drop(store);
    let store = open(tmp.path(), SMALL_CDC, TreePolicy::default());
    let listing = store.pins().unwrap();
    assert!(listing.bad.is_empty());
    let names: Vec<_> = listing.pins.iter().map(|(_, p)| p.name.clone()).collect();
    assert_eq!(names, vec!["kept".to_string()]);
    let limit_blob = store.store_stream(&other[..], &limit).unwrap().blob_ref;
    let (_, pin) = store
        .pins()
        .unwrap()
        .pins
        .into_iter()
        .find(|(_, p)| p.blob_ref == limit_blob)
        .unwrap();
    assert_eq!(pin.name, limit);
    assert_eq!(fetch_all(&store, &limit_blob), other);
}
