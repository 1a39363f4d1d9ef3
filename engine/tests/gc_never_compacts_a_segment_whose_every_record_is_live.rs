//! A segment of many small records, all live, is never compacted — record headers are not dead
//! bytes — run after run; once some of its records are dead, a dry run counts the segments the
//! real run then compacts.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod gc_common;

use std::path::Path;

use gc_common::*;
use net_mesh_engine::{GcOptions, PutOutcome, Store};

fn segment_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(seg_dir(dir))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn put_small_blobs(store: &Store, n: usize) -> Vec<PutOutcome> {
    (0..n)
        .map(|i| store.store(format!("t{i}\n").as_bytes()).unwrap())
        .collect()
}

fn dry_run() -> GcOptions {
    GcOptions {
        dry_run: true,
        ..gc_now()
    }
}

#[test]
fn a_segment_of_small_live_records_is_left_alone_by_every_gc_run() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = open(dir);
    put_small_blobs(&store, 40);
    let files = segment_files(dir);
    for run in 0..3 {
        let dry = store.gc(&dry_run()).unwrap();
        let report = store.gc(&gc_now()).unwrap();
        assert_eq!(dry.segments_compacted, 0, "run {run}: {dry:?}");
        assert_eq!(report.segments_compacted, 0, "run {run}: {report:?}");
        assert_eq!(report.records_copied, 0, "run {run}: {report:?}");
        assert_eq!(segment_files(dir), files, "run {run}");
    }
}

#[test]
fn a_dry_run_counts_the_sparse_active_segment_the_real_run_compacts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = open(dir);
    let blobs = put_small_blobs(&store, 40);
    for blob in &blobs[..30] {
        store.unpin(&blob.blob_id).unwrap();
    }
    let dry = store.gc(&dry_run()).unwrap();
    let report = store.gc(&gc_now()).unwrap();
    assert_eq!(report.segments_compacted, 1, "{report:?}");
    assert_eq!(dry.segments_compacted, report.segments_compacted);
    assert_eq!(report.records_copied, 10, "{report:?}");
    // The copies are all live: the next runs leave them alone.
    let files = segment_files(dir);
    for run in 0..2 {
        assert_eq!(store.gc(&dry_run()).unwrap().segments_compacted, 0);
        assert_eq!(store.gc(&gc_now()).unwrap().segments_compacted, 0, "{run}");
        assert_eq!(segment_files(dir), files);
    }
    for (i, blob) in blobs[30..].iter().enumerate() {
        assert_eq!(
            fetch(&store, &blob.blob_ref),
            format!("t{}\n", i + 30).into_bytes()
        );
    }
}
