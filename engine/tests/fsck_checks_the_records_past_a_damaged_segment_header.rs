//! One flipped byte in a sealed segment's file header: a check (no `--repair`) reports the
//! header once and still checks the segment's records past it (the header's length is fixed):
//! no entry of the segment is reported missing, and real damage to one of its records — a
//! chunk whose bytes changed — is reported as what it is.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod gc_common;

use std::path::Path;

use gc_common::*;
use net_mesh_engine::fsck::{ProblemKind as K, ReadData};

fn flip_header_byte(dir: &Path, segment: u64, at: u64) {
    let path = seg_path(dir, segment);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[at as usize] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
}

#[test]
fn a_check_reports_a_damaged_header_once_and_the_records_as_they_are() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = random_bytes(300_000, 44);
    let victim = {
        let store = open(dir);
        let blob = store.store(&data).unwrap().blob_ref;
        let victim = sealed_chunk(&store, &blob);
        entry(&store, &victim)
    };
    let segment = victim.loc.segment;
    flip_header_byte(dir, segment, 3);

    let report = fsck(dir, ReadData::All, false);
    assert_eq!(
        kinds(&report),
        vec![K::SegmentHeaderCorrupt],
        "{:#?}",
        report.problems
    );
    assert_eq!(report.problems[0].location.segment, Some(segment));
    assert!(
        report.affected_blobs.is_empty(),
        "{:?}",
        report.affected_blobs
    );

    // A chunk of the same segment damaged too: reported as corrupt, the rest as fine.
    flip_payload_byte(dir, victim.loc, 1);
    let report = fsck(dir, ReadData::All, false);
    let mut found = kinds(&report);
    found.sort_by_key(|k| format!("{k:?}"));
    assert_eq!(
        found,
        vec![K::ObjectCorrupt, K::SegmentHeaderCorrupt],
        "{:#?}",
        report.problems
    );
    let corrupt = report
        .problems
        .iter()
        .find(|p| p.kind == K::ObjectCorrupt)
        .unwrap();
    assert_eq!(corrupt.location.offset, Some(victim.loc.offset));
    assert_eq!(report.affected_blobs.len(), 1);

    // The repair rewrites the header and drops only the corrupt chunk.
    let report = fsck(dir, ReadData::All, true);
    assert!(
        report
            .repairs
            .iter()
            .any(|r| r.contains("dropped 1 index entries")),
        "{:#?}",
        report.repairs
    );
}
