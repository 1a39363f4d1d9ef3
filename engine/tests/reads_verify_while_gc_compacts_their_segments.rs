//! Reads of pinned blobs run on several threads while GC compacts, round after round, every
//! segment their records live in (small segments and a compaction threshold of 1.0, so each run
//! moves every sealed segment's records and unlinks the file): every whole read, range read,
//! stat and chunk listing succeeds and verifies, and the stripe guard keeps answering — a read
//! that looked a record up before compaction committed follows it to its new place.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{SMALL_CDC, fetch_all, random_bytes};
use net_mesh_engine::{GcError, GcOptions, Store, StoreConfig, TreePolicy, Unpinned};

const ROUNDS: u64 = 12;
const READERS: usize = 3;

fn config() -> StoreConfig {
    StoreConfig {
        chunking: SMALL_CDC,
        tree: TreePolicy {
            leaf_fanout: 5,
            internal_fanout: 3,
            manifest_max_refs: 4,
        },
        segment_roll_size: 24 * 1024,
        batch_bytes: 16 * 1024,
    }
}

fn compact_everything() -> GcOptions {
    GcOptions {
        grace: Duration::ZERO,
        dry_run: false,
        compact_threshold: 1.0,
        ..GcOptions::default()
    }
}

#[test]
fn reads_verify_while_gc_compacts_their_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), config()).unwrap();
    let plain_data = random_bytes(160_000, 1);
    let plain = store.store(&plain_data).unwrap().blob_ref;
    let rs_data = random_bytes(120_000, 2);
    let rs = store
        .store_stream_with_rs(&rs_data[..], 3, 5, "rs")
        .unwrap()
        .blob_ref;
    let rs_chunks = store.blob_chunks(&rs).unwrap();
    let plain_stat = store.stat(&plain).unwrap();
    let guarded = rs_chunks[0].hash;

    let stop = AtomicBool::new(false);
    let reads = AtomicU64::new(0);
    let removed = std::thread::scope(|s| {
        for reader in 0..READERS {
            let (store, stop, reads) = (&store, &stop, &reads);
            let (plain, rs, plain_data, rs_data) = (&plain, &rs, &plain_data, &rs_data);
            let (rs_chunks, plain_stat) = (&rs_chunks, &plain_stat);
            s.spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    i += 1;
                    assert!(
                        fetch_all(store, plain) == *plain_data,
                        "reader {reader}: plain"
                    );
                    assert!(fetch_all(store, rs) == *rs_data, "reader {reader}: rs");
                    let at = (i * 7_919 + reader as u64 * 104_729) % 150_000;
                    let mut part = Vec::new();
                    store.fetch_range(plain, at..at + 9_000, &mut part).unwrap();
                    assert!(part[..] == plain_data[at as usize..at as usize + 9_000]);
                    assert_eq!(store.stat(plain).unwrap(), *plain_stat);
                    assert_eq!(store.blob_chunks(rs).unwrap(), *rs_chunks);
                    if reader == 0 {
                        let e = store.remove_chunk(&guarded, false).unwrap_err();
                        assert!(matches!(e, GcError::StripeIntegrity { .. }), "{e:?}");
                    }
                    reads.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
        let mut removed = 0;
        for round in 0..ROUNDS {
            let garbage = store.store(&random_bytes(50_000, 100 + round)).unwrap();
            assert_eq!(store.unpin(&garbage.blob_id).unwrap(), Unpinned::Removed);
            let report = store.gc(&compact_everything()).unwrap();
            assert!(report.orphan_files.is_empty(), "{report:?}");
            removed += report.segments_removed;
        }
        stop.store(true, Ordering::SeqCst);
        removed
    });
    // Every round moved the blobs' records: each segment they were in is gone.
    assert!(removed >= ROUNDS, "{removed} segments removed");
    assert!(reads.load(Ordering::SeqCst) > 0);
    assert!(fetch_all(&store, &plain) == plain_data);
    assert!(fetch_all(&store, &rs) == rs_data);
}
