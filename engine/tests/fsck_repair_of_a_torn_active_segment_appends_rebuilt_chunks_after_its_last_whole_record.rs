//! The active segment's file is cut inside the last record of an erasure-coded blob.
//! `fsck --repair` lowers the committed length to the last whole record, cuts the torn bytes off
//! the file and only then appends the chunks it rebuilds from parity: a second fsck is clean and
//! the blob reads back.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::path::Path;

use common::{SMALL_CDC, config, fetch_all, random_bytes};
use net_mesh_engine::fsck::{FsckOptions, FsckReport, ProblemKind as K, ReadData, Severity};
use net_mesh_engine::{OpenOptions, Store, TreePolicy};
use net_mesh_segments::codec::RECORD_HEADER_LEN;

fn fsck(dir: &Path, repair: bool) -> FsckReport {
    net_mesh_engine::fsck::fsck(
        dir,
        OpenOptions::new(config(SMALL_CDC, TreePolicy::default())),
        &FsckOptions {
            read_data: ReadData::All,
            repair,
            ..FsckOptions::default()
        },
    )
    .unwrap()
}

fn kinds(report: &FsckReport) -> Vec<K> {
    report
        .problems
        .iter()
        .filter(|p| p.severity != Severity::Info)
        .map(|p| p.kind)
        .collect()
}

#[test]
fn repair_of_a_torn_active_segment_leaves_no_torn_bytes_before_the_rebuilt_chunks() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = random_bytes(60_000, 81);
    let store = Store::open(dir, config(SMALL_CDC, TreePolicy::default())).unwrap();
    let blob = store
        .store_stream_with_rs(&data[..], 4, 6, "rs")
        .unwrap()
        .blob_ref;
    let active = store.segments().active_segment();
    let reader = store.reader().unwrap();
    let last = store
        .blob_chunks(&blob)
        .unwrap()
        .into_iter()
        .map(|c| reader.object(&c.hash).unwrap().unwrap().loc)
        .max_by_key(|loc| loc.offset)
        .unwrap();
    assert_eq!(last.segment, active);
    drop(reader);
    drop(store);
    let path = dir
        .join("segments")
        .join(net_mesh_segments::segment_file_name(active));
    let record_end = last.offset + RECORD_HEADER_LEN as u64 + u64::from(last.payload_len);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), record_end);
    // Cut inside the last record's payload: a torn partial record stays at the end.
    let torn_len = record_end - u64::from(last.payload_len) / 2;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(torn_len)
        .unwrap();

    let report = fsck(dir, true);
    assert!(
        kinds(&report).contains(&K::SegmentTruncated),
        "{:#?}",
        report.problems
    );
    assert_eq!(report.unrepaired_count(), 0, "{:#?}", report.problems);
    assert!(
        report.repairs.iter().any(|r| r.contains("rebuilt 1 chunk")),
        "{:#?}",
        report.repairs
    );
    let report = fsck(dir, false);
    assert_eq!(kinds(&report), vec![], "{:#?}", report.problems);

    let store = Store::open(dir, config(SMALL_CDC, TreePolicy::default())).unwrap();
    assert_eq!(fetch_all(&store, &blob), data);
}
