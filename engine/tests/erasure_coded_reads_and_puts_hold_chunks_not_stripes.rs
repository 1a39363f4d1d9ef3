//! Erasure-coded reads and puts hold chunks, not stripes.
//!
//! - A read holds one data chunk at a time: each is read, verified, written and dropped. (It
//!   held every data chunk of a stripe the range touched before writing a byte: k × the chunk
//!   size, 200 MiB for a `--rs 200,210` get of 1 MiB chunks, 4 GiB at the largest k and
//!   chunk.) A read with a lost chunk returns the right bytes and holds the lost chunk and
//!   one shard: the rebuild adds each shard it reads into the lost one. (It held k shards of
//!   the stripe's length, virtual ones of a short stripe included.) So does a repair (it held
//!   every shard of the stripe).
//! - A put adds each data chunk into its stripe's parity as it comes and keeps only the
//!   parity: it holds what a plain put holds plus a few stripes' parity (p shards each). (It
//!   kept every data chunk of the stripe being filled and of the stripes being encoded: 3 × k
//!   chunks, 455 MB for a `--rs 200,210` put of 1 MiB chunks.)
//!
//! Measured as the peak resident set a step adds, each test in a child process of its own
//! whose allocator maps every buffer of 128 KiB or more on its own (`MALLOC_MMAP_THRESHOLD_`),
//! so a freed buffer leaves the resident set and a held one is in it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::process::Command;

use common::*;
use net_mesh_engine::{ChunkingStrategy, TreePolicy};

/// Set in the child process, which runs the test's steps.
const CHILD: &str = "NET_MESH_TEST_CHILD";

/// Runs test `name` in a child process (see the module docs); true in that child, which
/// then runs the steps; false in the parent once the child passed.
fn in_child(name: &str) -> bool {
    if std::env::var_os(CHILD).is_some() {
        return true;
    }
    let run = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env("MALLOC_MMAP_THRESHOLD_", "131072")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    eprintln!("{stderr}");
    assert!(run.status.success(), "the child failed: {}", run.status);
    assert!(stderr.contains(" added "), "the child measured nothing");
    false
}

fn status_kib(field: &str) -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The most resident bytes `step` adds to this process.
fn peak_added(step: impl FnOnce()) -> usize {
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let before = status_kib("VmRSS:");
    step();
    status_kib("VmHWM:").saturating_sub(before) * 1024
}

const CHUNK: usize = 256 * 1024;
const K: u8 = 32;

#[test]
fn an_erasure_coded_read_holds_one_chunk_not_a_stripe() {
    if !in_child("an_erasure_coded_read_holds_one_chunk_not_a_stripe") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let chunking = ChunkingStrategy::Fixed {
        size: u32::try_from(CHUNK).unwrap(),
    };
    let store = open(tmp.path(), chunking, TreePolicy::default());
    // Two full stripes of 32 data chunks (8 MiB each) and one parity chunk each.
    let data = random_bytes(2 * usize::from(K) * CHUNK, 7);
    let blob_ref = store
        .store_stream_with_rs(&data[..], K, K + 1, "stripes")
        .unwrap()
        .blob_ref;
    let stripe = usize::from(K) * CHUNK;

    // Once before measuring: the segments' pages are mapped and resident from here on.
    store.fetch(&blob_ref, &mut HashingSink::default()).unwrap();
    let mut sink = HashingSink::default();
    let whole = peak_added(|| {
        store.fetch(&blob_ref, &mut sink).unwrap();
    });
    assert_eq!(sink.finish(), blake3::hash(&data), "the bytes read back");
    let mut sink = HashingSink::default();
    let range = (CHUNK as u64 / 2)..(stripe as u64 + 3 * CHUNK as u64);
    let ranged = peak_added(|| {
        store
            .fetch_range(&blob_ref, range.clone(), &mut sink)
            .unwrap();
    });
    assert_eq!(
        sink.finish(),
        blake3::hash(&data[range.start as usize..range.end as usize])
    );
    eprintln!("a read added at most {whole} B (range: {ranged} B); a stripe is {stripe} B");
    assert!(whole < stripe / 4, "a whole read added {whole} B");
    assert!(ranged < stripe / 4, "a range read added {ranged} B");

    // A lost data chunk in each stripe is rebuilt, holding it and one shard at a time.
    let chunks = store.blob_chunks(&blob_ref).unwrap();
    let second_stripe = usize::from(K) + 1;
    toggle_payload_byte(&store, &chunks[3].hash, 0);
    toggle_payload_byte(&store, &chunks[second_stripe + 30].hash, 0);
    let mut sink = HashingSink::default();
    let rebuilt = peak_added(|| {
        store.fetch(&blob_ref, &mut sink).unwrap();
    });
    assert_eq!(
        sink.finish(),
        blake3::hash(&data),
        "the bytes read back with a lost chunk in each stripe"
    );
    eprintln!("a read rebuilding a chunk in each stripe added {rebuilt} B");
    assert!(
        rebuilt < stripe / 4,
        "a read with rebuilds added {rebuilt} B"
    );

    // So does a repair, which reads every shard of every stripe and stores the rebuilt ones.
    let mut report = None;
    let repaired = peak_added(|| {
        report = Some(store.repair(&blob_ref).unwrap());
    });
    let report = report.unwrap();
    assert_eq!((report.repaired, report.chunks_rebuilt), (2, 2));
    eprintln!("a repair rebuilding a chunk in each stripe added {repaired} B");
    assert!(repaired < stripe / 4, "a repair added {repaired} B");
    let mut sink = HashingSink::default();
    store.fetch(&blob_ref, &mut sink).unwrap();
    assert_eq!(sink.finish(), blake3::hash(&data), "the repaired blob");
    assert_eq!(
        store.repair(&blob_ref).unwrap().repaired,
        0,
        "nothing left to repair"
    );
}

#[test]
fn an_erasure_coded_put_holds_its_parity_not_its_stripes() {
    if !in_child("an_erasure_coded_put_holds_its_parity_not_its_stripes") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let chunking = ChunkingStrategy::Fixed {
        size: u32::try_from(CHUNK).unwrap(),
    };
    let store = open(tmp.path(), chunking, TreePolicy::default());
    // Warm: the store's buffers and index cache are resident before anything is measured.
    store
        .store_stream(&random_bytes(8 * CHUNK, 1)[..], "warm")
        .unwrap();
    store
        .store_stream_with_rs(&random_bytes(8 * CHUNK, 2)[..], K, K + 1, "warm-rs")
        .unwrap();
    let len = 4 * usize::from(K) * CHUNK;
    let (plain, coded) = (random_bytes(len, 3), random_bytes(len, 4));
    let plain_added = peak_added(|| {
        store.store_stream(&plain[..], "plain").unwrap();
    });
    let mut blob = None;
    let coded_added = peak_added(|| {
        blob = Some(
            store
                .store_stream_with_rs(&coded[..], K, K + 1, "coded")
                .unwrap()
                .blob_ref,
        );
    });
    let stripe = usize::from(K) * CHUNK;
    eprintln!(
        "a plain put added {plain_added} B, an erasure-coded one {coded_added} B; a stripe is \
         {stripe} B"
    );
    assert!(
        coded_added < plain_added + stripe / 2,
        "an erasure-coded put added {coded_added} B, a plain one {plain_added} B"
    );
    let mut out = Vec::new();
    store.fetch(&blob.unwrap(), &mut out).unwrap();
    assert!(out == coded, "the erasure-coded blob reads back");
}

/// A sink that keeps only a hash of what it was given (so the sink holds nothing).
#[derive(Default)]
struct HashingSink(blake3::Hasher);

impl HashingSink {
    fn finish(&self) -> blake3::Hash {
        self.0.finalize()
    }
}

impl std::io::Write for HashingSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
