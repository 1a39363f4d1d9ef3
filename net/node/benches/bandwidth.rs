//! What the bandwidth classes cost a node that has no `--bandwidth`: a stream's piece
//! acquire (1 MiB, [`MAX_PIECE`]) without a rate, which should be one atomic add, beside the
//! same acquire under a rate so high it never waits (the scheduler's lock and decision on every
//! piece); and a stream's open and close (registered as live, then removed), once per call.
//! A 64 MiB put or read takes 64 acquires and one open.
//!
//! Run: `cargo bench -p net-mesh-node --bench bandwidth -- --warm-up-time 1 --measurement-time 3`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "benchmark harness: a failure should abort the run loudly"
)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion};
use net_mesh_node::bandwidth::Bandwidth;
use net_mesh_node::proto::{BandwidthClass, MAX_PIECE};

const PIECE: u64 = MAX_PIECE as u64;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("bandwidth");
    // 1 EB/s: the scheduler decides every piece and never makes one wait.
    for (name, rate) in [
        ("unlimited", None),
        ("rate_never_waits", Some(1_000_000_000_000_000_000)),
    ] {
        let bandwidth = Arc::new(Bandwidth::new(rate, 0));
        let stream = bandwidth.open("read", BandwidthClass::Foreground);
        group.bench_function(BenchmarkId::new("acquire_1MiB", name), |b| {
            b.iter_custom(|iters| {
                let start = std::time::Instant::now();
                rt.block_on(async {
                    for _ in 0..iters {
                        stream.acquire(black_box(PIECE)).await;
                    }
                });
                start.elapsed()
            })
        });
        assert!(
            stream.stats().row().bytes_in_class >= PIECE,
            "nothing was counted"
        );
        group.bench_function(BenchmarkId::new("open_close_stream", name), |b| {
            b.iter(|| {
                drop(black_box(
                    bandwidth.open("read", BandwidthClass::Foreground),
                ))
            })
        });
    }
    group.finish();
}

criterion::criterion_group!(benches, bench);
criterion::criterion_main!(benches);
