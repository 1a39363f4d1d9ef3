//! `max_duration` stops the data phase early, says how far it got, and repeated runs cover the
//! whole store (the cursor is persisted in the index).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod gc_common;

use net_mesh_engine::OpenOptions;

use std::time::Duration;

use gc_common::*;
use net_mesh_engine::TreePolicy;
use net_mesh_engine::fsck::{FsckOptions, ProblemKind, ReadData};

#[test]
fn zero_duration_runs_check_one_chunk_each_and_together_cover_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = open(dir);
    let ra = store.store(&random_bytes(120_000, 41)).unwrap();
    let chunks = store.index().objects().unwrap().len();
    assert!(chunks > 10);
    let x = sealed_chunk(&store, &ra.blob_ref);
    let loc = entry(&store, &x).loc;
    drop(store);
    flip_payload_byte(dir, loc, 0);

    let options = FsckOptions {
        read_data: ReadData::All,
        max_duration: Some(Duration::ZERO),
        threads: 1,
        ..FsckOptions::default()
    };
    let mut found_in = Vec::new();
    let mut runs = 0;
    loop {
        runs += 1;
        let report = net_mesh_engine::fsck::fsck(
            dir,
            OpenOptions::new(config(TreePolicy::default())),
            &options,
        )
        .unwrap();
        assert_eq!(report.data.checked, 1, "one chunk per zero-duration run");
        if report
            .problems
            .iter()
            .any(|p| p.kind == ProblemKind::ObjectCorrupt)
        {
            found_in.push(runs);
        }
        assert!(
            !report.data.complete,
            "a one-chunk run does not read everything"
        );
        if report.data.passes_completed == 1 {
            break;
        }
        assert_eq!(report.data.passes_completed, 0);
        assert_ne!(
            report.data.next_at, report.data.started_at,
            "the cursor advances"
        );
        assert!(
            runs <= chunks,
            "runs must cover the store in {chunks} steps"
        );
    }
    assert_eq!(runs, chunks);
    assert_eq!(
        found_in.len(),
        1,
        "the corrupt chunk is read exactly once per pass"
    );
}
