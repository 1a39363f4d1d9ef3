//! One flipped byte in a segment's file header: `fsck` reports it, `fsck --repair` rewrites the
//! header (it depends on nothing but the segment id) and keeps every entry of the segment, a
//! second fsck is clean and every blob — plain, erasure-coded, small — reads back.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod gc_common;

use std::path::Path;

use gc_common::*;
use net_mesh_engine::BlobRef;
use net_mesh_engine::fsck::{ProblemKind as K, ReadData};

/// A plain, an erasure-coded and a small blob over several segments.
fn setup(dir: &Path) -> Vec<(BlobRef, Vec<u8>)> {
    let store = open(dir);
    let plain = random_bytes(300_000, 71);
    let rs = random_bytes(200_000, 72);
    let small = b"small".to_vec();
    let blobs = vec![
        (store.store(&plain).unwrap().blob_ref, plain),
        (
            store
                .store_stream_with_rs(&rs[..], 4, 6, "rs")
                .unwrap()
                .blob_ref,
            rs,
        ),
        (store.store(&small).unwrap().blob_ref, small),
    ];
    assert!(store.segments().active_segment() > 0, "several segments");
    drop(store);
    assert_eq!(kinds(&fsck(dir, ReadData::All, false)), vec![]);
    blobs
}

fn flip_header_byte(dir: &Path, segment: u64, at: u64) {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(seg_path(dir, segment))
        .unwrap();
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(at)).unwrap();
    f.read_exact(&mut b).unwrap();
    b[0] ^= 0xff;
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&b).unwrap();
    f.sync_all().unwrap();
}

fn damaged_header_is_rewritten_and_loses_nothing(segment_of: impl Fn(&Path) -> u64, at: u64) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let blobs = setup(dir);
    let segment = segment_of(dir);
    let store = open(dir);
    let entries_before = store.index().objects().unwrap().len();
    drop(store);
    flip_header_byte(dir, segment, at);

    let report = fsck(dir, ReadData::All, false);
    let p = report
        .problems
        .iter()
        .find(|p| p.kind == K::SegmentHeaderCorrupt)
        .unwrap_or_else(|| panic!("{:#?}", report.problems));
    assert_eq!(p.location.segment, Some(segment));

    let report = fsck(dir, ReadData::All, true);
    assert_eq!(report.unrepaired_count(), 0, "{:#?}", report.problems);
    assert!(
        !report.repairs.iter().any(|r| r.contains("dropped")),
        "{:#?}",
        report.repairs
    );
    assert!(seg_path(dir, segment).exists());
    assert_eq!(
        kinds(&fsck(dir, ReadData::All, false)),
        vec![],
        "clean after one repair"
    );
    // A second repair has nothing to do (no orphan file to remove).
    let report = fsck(dir, ReadData::All, true);
    assert!(report.repairs.is_empty(), "{:#?}", report.repairs);
    assert!(seg_path(dir, segment).exists());

    let store = open(dir);
    assert_eq!(store.index().objects().unwrap().len(), entries_before);
    for (r, want) in &blobs {
        assert_eq!(&fetch(&store, r), want);
    }
}

#[test]
fn a_flipped_magic_byte_of_a_sealed_segment_is_rewritten_and_every_entry_kept() {
    damaged_header_is_rewritten_and_loses_nothing(|_| 0, 3);
}

#[test]
fn a_flipped_segment_id_byte_of_the_active_segment_is_rewritten_and_every_entry_kept() {
    damaged_header_is_rewritten_and_loses_nothing(
        |dir| open(dir).segments().active_segment(),
        net_mesh_segments::codec::FILE_SEGMENT_ID_OFFSET as u64,
    );
}
