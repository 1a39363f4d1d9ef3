//! `fsck --read-data`, a compacting `gc` and an erasure `repair` count their long stage in the `Progress` handle a
//! display polls (the CLI draws it on a terminal): the stage knows its bytes in advance and
//! its count reaches exactly that, the bytes the run reports it read or copied.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use common::{SMALL_CDC, random_bytes};
use net_mesh_engine::fsck::{FsckOptions, ReadData, fsck_open_store};
use net_mesh_engine::index::blob_id;
use net_mesh_engine::{GcOptions, Progress, Stage, Store, StoreConfig};

fn store_with_blobs(dir: &std::path::Path) -> (Store, Vec<net_mesh_engine::BlobRef>) {
    let config = StoreConfig {
        chunking: SMALL_CDC,
        segment_roll_size: 64 * 1024,
        ..StoreConfig::default()
    };
    let store = Store::open(dir, config).unwrap();
    let refs = (0..6)
        .map(|i| store.store(&random_bytes(90_000, i)).unwrap().blob_ref)
        .collect();
    (store, refs)
}

#[test]
fn fsck_read_data_counts_every_chunk_byte_it_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = store_with_blobs(tmp.path());
    let progress = Progress::new();
    let report = fsck_open_store(
        &store,
        &FsckOptions {
            read_data: ReadData::All,
            progress: progress.clone(),
            ..FsckOptions::default()
        },
    )
    .unwrap();
    assert_eq!(report.problem_count(), 0);
    assert!(report.data.checked_bytes >= 6 * 90_000);
    let (stage, done) = progress.now();
    assert_eq!(
        stage,
        Some(Stage {
            name: "reading data",
            total: Some(report.data.checked_bytes),
        })
    );
    assert_eq!(done, report.data.checked_bytes);
}

#[test]
fn a_compacting_gc_counts_every_live_byte_it_copies() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, refs) = store_with_blobs(tmp.path());
    for blob in refs.iter().step_by(2) {
        store.unpin(&blob_id(blob)).unwrap();
    }
    let progress = Progress::new();
    let report = store
        .gc(&GcOptions {
            grace: Duration::ZERO,
            compact_threshold: 1.0,
            progress: progress.clone(),
            ..GcOptions::default()
        })
        .unwrap();
    assert!(report.segments_compacted > 0 && report.bytes_copied > 0);
    let (stage, done) = progress.now();
    assert_eq!(
        stage,
        Some(Stage {
            name: "compacting segments",
            total: Some(report.bytes_copied),
        })
    );
    assert_eq!(done, report.bytes_copied);
}

#[test]
fn a_repair_counts_every_data_byte_of_the_stripes_it_checks() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = store_with_blobs(tmp.path());
    let data = random_bytes(300_000, 9);
    let blob = store
        .store_stream_with_rs(&data[..], 3, 5, "rs")
        .unwrap()
        .blob_ref;
    let progress = Progress::new();
    let report = store.repair_counting(&blob, &progress).unwrap();
    assert!(report.stripes_walked > 1);
    let (stage, done) = progress.now();
    assert_eq!(
        stage,
        Some(Stage {
            name: "checking stripes",
            total: Some(300_000),
        })
    );
    assert_eq!(done, 300_000);
}
