//! `Index::relocate` / `Batch::relocate` repoint an existing object at a durable copy of its
//! record: kind, count and creation time are kept, segment live bytes move, and a relocation to
//! a record of another length or of an unknown object is refused.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::*;
use net_mesh_engine::index::IndexError;
use net_mesh_engine::{BlobRef, TreePolicy};
use net_mesh_segments::{RecordKind, RecordLoc};

#[test]
fn relocation_keeps_the_entry_and_moves_live_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path(), SMALL_CDC, TreePolicy::default());
    let data = random_bytes(40_000, 3);
    let r = store.store(&data).unwrap().blob_ref;
    let BlobRef::Manifest { chunks, .. } = &r else {
        panic!()
    };
    let hash = chunks[1].hash;
    let before = store.reader().unwrap().object(&hash).unwrap().unwrap();
    let bytes = store
        .segments()
        .read(before.loc, RecordKind::Chunk, &hash)
        .unwrap();
    let new_loc = store
        .segments()
        .append(RecordKind::Chunk, &hash, &bytes)
        .unwrap();
    let lengths = store.segments().sync().unwrap();
    let live_before: u64 = store
        .index()
        .segments()
        .unwrap()
        .values()
        .map(|e| e.live_bytes)
        .sum();
    let outcome = store.index().relocate(hash, new_loc, lengths).unwrap();
    assert_eq!(outcome.relocated, 1);
    let after = store.reader().unwrap().object(&hash).unwrap().unwrap();
    assert_eq!(after.loc, new_loc);
    assert_ne!(after.loc, before.loc);
    assert_eq!(
        (after.kind, after.refcount, after.created_unix_ms),
        (before.kind, before.refcount, before.created_unix_ms)
    );
    let live_after: u64 = store
        .index()
        .segments()
        .unwrap()
        .values()
        .map(|e| e.live_bytes)
        .sum();
    assert_eq!(live_after, live_before, "live bytes moved, not added");
    assert!(fetch_all(&store, &r) == data);

    // Another length: refused. Unknown object: refused.
    let short = RecordLoc {
        payload_len: new_loc.payload_len - 1,
        ..new_loc
    };
    assert!(matches!(
        store.index().relocate(hash, short, Vec::new()),
        Err(IndexError::Corrupted { .. })
    ));
    assert!(matches!(
        store.index().relocate([7u8; 32], new_loc, Vec::new()),
        Err(IndexError::MissingObject(_))
    ));
    assert_eq!(
        store.reader().unwrap().object(&hash).unwrap().unwrap().loc,
        new_loc
    );
}
