//! Content-defined chunking speed on one core, 64 MiB of random bytes at the default sizes
//! (256 KiB / 1 MiB / 4 MiB): `net-mesh` is the engine's `BlockCutter` on one thread (the
//! lane-parallel exact FastCDC 2020 cut of `engine/src/gear.rs`), `fastcdc-crate` is
//! `fastcdc::v2020::FastCDC` over the same buffer. Both produce the same boundaries (checked
//! here before timing).
//! Run: `cargo bench -p net-mesh-benches --bench chunking`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_debug_implementations
)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fastcdc::v2020::FastCDC;
use net_mesh_engine::chunking::{BlockCutter, ChunkingStrategy};

const LEN: usize = 64 << 20;

fn input() -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..LEN)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn ours(cutter: &BlockCutter, data: &[u8]) -> Vec<usize> {
    let ends = cutter.cut_block_on_this_thread(data, true);
    let mut start = 0;
    ends.iter()
        .map(|&end| {
            let len = end - start;
            start = end;
            len
        })
        .collect()
}

fn crate_cdc(data: &[u8]) -> Vec<usize> {
    FastCDC::new(data, 256 << 10, 1 << 20, 4 << 20)
        .map(|c| c.length)
        .collect()
}

fn bench(c: &mut Criterion) {
    let data = input();
    let cutter = BlockCutter::new(ChunkingStrategy::default()).unwrap();
    assert_eq!(ours(&cutter, &data), crate_cdc(&data), "boundaries differ");
    let mut g = c.benchmark_group("cdc_default_64MiB");
    g.throughput(Throughput::Bytes(LEN as u64));
    g.bench_function("net-mesh", |b| b.iter(|| black_box(ours(&cutter, &data))));
    g.bench_function("fastcdc-crate", |b| b.iter(|| black_box(crate_cdc(&data))));
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = bench
}
criterion_main!(benches);
