//! `Batch::relocate` repoints an existing object at a durable copy of its
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
use net_mesh_engine::index::{Batch, IndexError};
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
    let relocate = |hash, to, segment_lengths| {
        let mut batch = Batch {
            segment_lengths,
            ..Batch::default()
        };
        batch.relocate(hash, to);
        store.index().commit(&batch)
    };
    let outcome = relocate(hash, new_loc, lengths.clone()).unwrap();
    assert_eq!(outcome.relocated, 1);
    let after = store.reader().unwrap().object(&hash).unwrap().unwrap();
    assert_eq!(after.loc, new_loc);
    assert_ne!(after.loc, before.loc);
    assert_eq!(
        (after.kind, after.refcount, after.unreferenced_since_unix_ms),
        (
            before.kind,
            before.refcount,
            before.unreferenced_since_unix_ms
        )
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
        relocate(hash, short, lengths.clone()),
        Err(IndexError::Corrupted { .. })
    ));
    assert!(matches!(
        relocate([7u8; 32], new_loc, lengths.clone()),
        Err(IndexError::MissingObject(_))
    ));
    assert_eq!(
        store.reader().unwrap().object(&hash).unwrap().unwrap().loc,
        new_loc
    );
}
