//! Many clients on one store at once, in one process: 8 writer threads put plain and resumable
//! blobs (some interrupted and resumed), unpin, and make commits that are refused, while GC
//! (zero grace) and compaction run. Afterwards, and again after a reopen, every acknowledged
//! blob reads back and `fsck --read-data` is clean.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::crash::Rng;
use common::workload::{self, AckLog};

#[test]
fn eight_writers_with_gc_and_compaction_keep_every_acknowledged_blob() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let scratch_dir = tmp.path().join("scratch");
    let log_path = tmp.path().join("acks.log");
    let log = AckLog::create(&log_path);
    let seed = Rng::from_env().next();
    let ops: u64 = std::env::var("NET_MESH_STRESS_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);

    let store = workload::open(&dir);
    let scratch = workload::open(&scratch_dir);
    let tally = workload::run(&store, &log, 8, ops, 0, seed);
    eprintln!("{tally:?}");
    assert!(tally.puts > 0 && tally.resumable > 0 && tally.interrupted > 0);
    assert!(tally.unpins > 0 && tally.refusals > 0 && tally.gc_runs > 0);

    let expected = workload::read_log(&log_path);
    assert!(expected.open_uploads.is_empty());
    workload::check_store(&store, &expected, &scratch, &log);
    drop(store);

    let store = workload::open(&dir);
    workload::check_store(&store, &expected, &scratch, &log);
    drop(store);
    workload::assert_fsck_clean(&dir);
}
