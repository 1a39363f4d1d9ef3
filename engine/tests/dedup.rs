//! Content addressing: the same bytes are stored once; a small edit stores only nearby chunks.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::*;
use net_mesh_engine::TreePolicy;

fn segment_bytes(store: &net_mesh_engine::Store) -> u64 {
    store
        .segments()
        .segment_ids()
        .iter()
        .map(|s| store.segments().file_len(*s).unwrap())
        .sum()
}

#[test]
fn putting_the_same_bytes_twice_writes_no_new_chunk() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path(), SMALL_CDC, TINY_TREE);
    let data = random_bytes(500_000, 3);
    let first = store.store(&data).unwrap();
    assert_eq!(first.new_bytes, 500_000);
    let before = segment_bytes(&store);
    let second = store.store(&data).unwrap();
    assert_eq!(second.blob_ref, first.blob_ref);
    assert_eq!((second.new_chunks, second.new_bytes), (0, 0));
    assert_eq!(
        segment_bytes(&store),
        before,
        "no record may be appended on a re-put"
    );
}

#[test]
fn inserting_one_byte_in_the_middle_adds_only_the_chunks_around_the_edit() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path(), SMALL_CDC, TreePolicy::default());
    let data = random_bytes(4 * 1024 * 1024, 4);
    let first = store.store(&data).unwrap();
    let mut edited = data.clone();
    edited.insert(2 * 1024 * 1024, 0xAB);
    let second = store.store(&edited).unwrap();
    assert!(
        second.new_chunks <= 3,
        "{} new chunks of {}",
        second.new_chunks,
        second.chunks
    );
    assert!(
        second.new_bytes <= 3 * 16384,
        "{} new bytes",
        second.new_bytes
    );
    assert!(first.chunks > 200);
    assert_eq!(fetch_all(&store, &second.blob_ref), edited);
    assert_eq!(fetch_all(&store, &first.blob_ref), data);
}
