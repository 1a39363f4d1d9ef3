//! Reading an erasure-coded blob holds one data chunk at a time, not its stripe: each chunk is
//! read, verified, written and dropped. (The reader held every data chunk of a stripe the
//! range touched before writing a byte: k × the chunk size, 200 MiB for a `--rs 200,210` get
//! of 1 MiB chunks, 4 GiB at the largest k and chunk.) Measured as the peak resident set a
//! read adds, in a child process of this test whose allocator maps every buffer of 128 KiB or
//! more on its own (`MALLOC_MMAP_THRESHOLD_`), so a freed buffer leaves the resident set
//! and a held one is in it; the read runs once before it is measured, so the segments' mapped
//! pages are resident already. A read with a lost chunk still returns the right bytes.
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

/// Set in the child process, which runs the reads.
const CHILD: &str = "NET_MESH_TEST_CHILD";

fn status_kib(field: &str) -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The most resident bytes `read` adds to this process.
fn peak_added(read: impl FnOnce()) -> usize {
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let before = status_kib("VmRSS:");
    read();
    status_kib("VmHWM:").saturating_sub(before) * 1024
}

const CHUNK: usize = 256 * 1024;
const K: u8 = 32;

#[test]
fn an_erasure_coded_read_holds_one_chunk_not_a_stripe() {
    if std::env::var_os(CHILD).is_none() {
        let run = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "an_erasure_coded_read_holds_one_chunk_not_a_stripe",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .env("MALLOC_MMAP_THRESHOLD_", "131072")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        eprintln!("{stderr}");
        assert!(run.status.success(), "the child failed: {}", run.status);
        assert!(stderr.contains("a read added"), "the child ran no read");
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

    // A lost data chunk is rebuilt (the rebuild holds its stripe).
    let chunks = store.blob_chunks(&blob_ref).unwrap();
    toggle_payload_byte(&store, &chunks[3].hash, 0);
    let mut out = Vec::new();
    store.fetch(&blob_ref, &mut out).unwrap();
    assert!(out == data, "the bytes read back with a lost chunk");
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
