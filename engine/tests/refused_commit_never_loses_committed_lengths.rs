//! A committed segment length is never lost, whatever happens to the commit that first carried
//! it, and the index refuses any batch that would point past a committed length.
//!
//! The scenario from the bug report: an upload appends ~400 KB across 64 KiB segments and does
//! not finish; meanwhile a pin of a blob whose objects do not exist is refused (its commit had
//! carried the upload's durable lengths); then the upload finishes. The store must reopen and
//! every blob must read back.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::*;
use net_mesh_engine::codec::{BlobRef, ChunkRef, ChunkRole, Encoding};
use net_mesh_engine::index::{Batch, IndexError, NewObject};
use net_mesh_engine::{Store, StoreConfig, StoreError, TreePolicy};
use net_mesh_segments::RecordKind;

fn small_segments() -> StoreConfig {
    StoreConfig {
        segment_roll_size: 64 * 1024,
        batch_bytes: 1024 * 1024,
        ..config(SMALL_CDC, TreePolicy::default())
    }
}

fn missing_blob() -> BlobRef {
    BlobRef::Manifest {
        size: 10,
        encoding: Encoding::Plain,
        chunks: vec![ChunkRef {
            hash: [9u8; 32],
            size: 10,
            role: ChunkRole::Data,
        }],
    }
}

#[test]
fn a_refused_pin_between_an_uploads_appends_and_its_commit_leaves_the_store_openable() {
    let tmp = tempfile::tempdir().unwrap();
    let data = random_bytes(400_000, 1);
    let blob_ref = {
        let store = Store::open(tmp.path(), small_segments()).unwrap();
        let mut writer = store.writer().unwrap();
        writer.write(&data).unwrap();
        let err = store.pin(&missing_blob(), "ghost").unwrap_err();
        assert!(
            matches!(err, StoreError::Index(IndexError::MissingObject(_))),
            "{err}"
        );
        let blob_ref = writer.finish("kept").unwrap().blob_ref;
        assert_eq!(fetch_all(&store, &blob_ref), data);
        blob_ref
    };
    let store = Store::open(tmp.path(), small_segments()).unwrap();
    assert_eq!(fetch_all(&store, &blob_ref), data);
    drop(store);
    let report = net_mesh_engine::fsck::fsck(
        tmp.path(),
        net_mesh_engine::OpenOptions::new(small_segments()),
        &net_mesh_engine::fsck::FsckOptions {
            read_data: net_mesh_engine::fsck::ReadData::All,
            ..Default::default()
        },
    )
    .unwrap();
    let problems: Vec<_> = report
        .problems
        .iter()
        .filter(|p| p.severity != net_mesh_engine::fsck::Severity::Info)
        .collect();
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn two_writers_syncing_in_turn_each_get_lengths_covering_both() {
    // Writer A appends, then writer B appends; A syncs first (making both records durable),
    // then B syncs. B's lengths must still cover B's record, or B's commit would point past a
    // committed length if A's commit never happened.
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), small_segments()).unwrap();
    let a = store
        .segments()
        .append(RecordKind::Chunk, &[1u8; 32], b"from writer a")
        .unwrap();
    let b = store
        .segments()
        .append(RecordKind::Chunk, &[2u8; 32], b"from writer b")
        .unwrap();
    let lengths_a = store.segments().sync().unwrap();
    let lengths_b = store.segments().sync().unwrap();
    for loc in [a, b] {
        let end = loc.offset + 52 + u64::from(loc.payload_len);
        for lengths in [&lengths_a, &lengths_b] {
            assert!(
                lengths
                    .iter()
                    .any(|&(s, len)| s == loc.segment && len >= end),
                "{lengths:?} does not cover {loc:?}"
            );
        }
    }
}

#[test]
fn the_index_refuses_a_batch_that_points_past_a_committed_length() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), small_segments()).unwrap();
    let loc = store
        .segments()
        .append(RecordKind::Chunk, &[3u8; 32], b"not durable yet")
        .unwrap();
    let batch = Batch {
        new_objects: vec![NewObject {
            hash: [3u8; 32],
            kind: RecordKind::Chunk,
            loc,
            children: Vec::new(),
        }],
        ..Batch::default()
    };
    let err = store.index().commit(&batch).unwrap_err();
    assert!(
        matches!(err, IndexError::PastCommitted { segment, .. } if segment == loc.segment),
        "{err}"
    );
    assert!(err.is_refusal());
    assert!(!store.reader().unwrap().contains(&[3u8; 32]).unwrap());
    // The store stays usable.
    let put = store.store(b"still writable").unwrap();
    assert_eq!(fetch_all(&store, &put.blob_ref), b"still writable");
}
