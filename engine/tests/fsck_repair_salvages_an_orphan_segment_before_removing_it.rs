//! A sealed segment whose file header is intact but names another segment cannot be opened:
//! `fsck --repair` drops its entries, and the file becomes an orphan. Its records are the only
//! copy of what the pinned blobs need, so repair salvages them (verified, appended to the
//! active segment, indexed with the references that need them) before it removes the file —
//! run after run, every blob reads back. A real compaction leftover (every live record copied
//! and indexed elsewhere, the rest dead) is still removed, and loses nothing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod gc_common;

use std::collections::BTreeMap;
use std::path::Path;

use gc_common::*;
use net_mesh_engine::BlobRef;
use net_mesh_engine::fsck::{ProblemKind as K, ReadData, Severity};
use net_mesh_segments::FileHeader;
use net_mesh_segments::codec::FILE_HEADER_LEN;

fn blobs_over_several_segments(dir: &Path) -> Vec<(BlobRef, Vec<u8>)> {
    let store = open(dir);
    let mut blobs = Vec::new();
    for (i, len) in [300_000usize, 150_000, 5].into_iter().enumerate() {
        let bytes = random_bytes(len, 90 + i as u64);
        blobs.push((store.store(&bytes).unwrap().blob_ref, bytes));
    }
    let rs = random_bytes(200_000, 99);
    blobs.push((
        store
            .store_stream_with_rs(&rs[..], 4, 6, "rs")
            .unwrap()
            .blob_ref,
        rs,
    ));
    assert!(store.segments().active_segment() > 1, "several segments");
    drop(store);
    assert_eq!(kinds(&fsck(dir, ReadData::All, false)), vec![]);
    blobs
}

/// Writes a valid file header (its checksum intact) naming `names` over segment `segment`'s.
fn header_names_another_segment(dir: &Path, segment: u64, names: u64) {
    let path = seg_path(dir, segment);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[..FILE_HEADER_LEN].copy_from_slice(&FileHeader { segment: names }.encode());
    std::fs::write(&path, &bytes).unwrap();
}

fn all_read_back(dir: &Path, blobs: &[(BlobRef, Vec<u8>)]) {
    let store = open(dir);
    for (r, want) in blobs {
        assert_eq!(&fetch(&store, r), want);
    }
}

#[test]
fn records_of_a_segment_whose_header_names_another_are_salvaged_not_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let blobs = blobs_over_several_segments(dir);
    let segment = 0;
    let live_before = {
        let store = open(dir);
        store
            .index()
            .objects()
            .unwrap()
            .into_iter()
            .filter(|(_, e)| e.loc.segment == segment)
            .count()
    };
    assert!(live_before > 0);
    header_names_another_segment(dir, segment, 77);

    let report = fsck(dir, ReadData::All, false);
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.kind == K::SegmentHeaderCorrupt && p.location.segment == Some(segment)),
        "{:#?}",
        report.problems
    );

    for run in 0..2 {
        let report = fsck(dir, ReadData::All, true);
        assert_eq!(
            report.unrepaired_count(),
            0,
            "run {run}: {:#?}\n{:#?}",
            report.problems,
            report.repairs
        );
        assert!(!seg_path(dir, segment).exists(), "run {run}");
        all_read_back(dir, &blobs);
    }
    assert_eq!(kinds(&fsck(dir, ReadData::All, false)), vec![]);
    all_read_back(dir, &blobs);
}

fn segment_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(seg_dir(dir))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_compaction_leftover_is_removed_and_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = open(dir);
    let keep: Vec<(BlobRef, Vec<u8>)> = (0..4)
        .map(|i| {
            let b = random_bytes(40_000, 200 + i);
            (store.store(&b).unwrap().blob_ref, b)
        })
        .collect();
    let gone: Vec<_> = (0..4)
        .map(|i| store.store(&random_bytes(40_000, 300 + i)).unwrap())
        .collect();
    for g in &gone {
        store.unpin(&g.blob_id).unwrap();
    }
    let before = segment_files(dir);
    let report = store.gc(&gc_now()).unwrap();
    assert!(report.segments_compacted > 0, "{report:?}");
    drop(store);
    // What a crash between compaction's commit and its unlink leaves: the old files.
    let after = segment_files(dir);
    let mut leftovers = Vec::new();
    for (name, bytes) in &before {
        if !after.contains_key(name) {
            std::fs::write(seg_dir(dir).join(name), bytes).unwrap();
            leftovers.push(name.clone());
        }
    }
    assert!(!leftovers.is_empty());

    let report = fsck(dir, ReadData::All, false);
    assert!(
        report
            .problems
            .iter()
            .filter(|p| p.kind == K::OrphanFile)
            .all(|p| p.severity == Severity::Warning),
        "{:#?}",
        report.problems
    );
    let report = fsck(dir, ReadData::All, true);
    assert_eq!(report.unrepaired_count(), 0, "{:#?}", report.problems);
    assert!(
        !report.repairs.iter().any(|r| r.contains("salvag")),
        "{:#?}",
        report.repairs
    );
    for name in &leftovers {
        assert!(!seg_dir(dir).join(name).exists(), "{name} removed");
    }
    assert_eq!(kinds(&fsck(dir, ReadData::All, false)), vec![]);
    all_read_back(dir, &keep);
}
