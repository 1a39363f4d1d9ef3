//! Reed–Solomon figures on one core: 10+4 encode of a full stripe (data bytes per
//! second) and reconstruct of 4 lost data shards, for 64 KiB, 256 KiB and 1 MiB shards.
//! `engine_*` goes through `net_mesh_engine::erasure::StripeCodec` (what the store runs: the
//! rebuild plans, adds one shard at a time and hashes the rebuilt chunks); `crate_*` is the
//! bare codec call (whole stripe in memory).
//! Run: `cargo bench -p net-mesh-benches --bench erasure`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_debug_implementations
)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use net_mesh_engine::codec::{ChunkRef, ChunkRole, chunk_id};
use net_mesh_engine::erasure::{RsParams, StripeCodec, stripes};
use reed_solomon_erasure::galois_8::ReedSolomon;

const K: usize = 10;
const P: usize = 4;
const SHARD_SIZES: [usize; 3] = [64 << 10, 256 << 10, 1 << 20];

fn shards(len: usize) -> Vec<Vec<u8>> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..K)
        .map(|_| {
            (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect()
        })
        .collect()
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("rs_10_4_encode");
    let rs = ReedSolomon::new(K, P).unwrap();
    let codec = StripeCodec::new(RsParams::new(K as u8, (K + P) as u8).unwrap()).unwrap();
    for len in SHARD_SIZES {
        let data = shards(len);
        g.throughput(Throughput::Bytes((K * len) as u64));
        g.bench_with_input(
            BenchmarkId::new("crate_encode_sep", len),
            &data,
            |b, data| {
                let mut parity = vec![vec![0u8; len]; P];
                b.iter(|| rs.encode_sep(black_box(data), &mut parity).unwrap());
            },
        );
        g.bench_with_input(BenchmarkId::new("engine_encode", len), &data, |b, data| {
            // As the writer runs it: parity buffers recycled from stripe to stripe.
            let mut data = data.clone();
            let mut spare = Vec::new();
            b.iter(|| {
                let parity = codec
                    .encode_with(black_box(&mut data), std::mem::take(&mut spare))
                    .unwrap();
                spare = black_box(parity);
            });
        });
    }
    g.finish();
}

fn reconstruct(c: &mut Criterion) {
    let mut g = c.benchmark_group("rs_10_4_reconstruct_4_lost");
    let rs = ReedSolomon::new(K, P).unwrap();
    let params = RsParams::new(K as u8, (K + P) as u8).unwrap();
    let codec = StripeCodec::new(params).unwrap();
    for len in SHARD_SIZES {
        let mut data = shards(len);
        let parity = codec.encode(&mut data).unwrap();
        let all: Vec<Vec<u8>> = data.iter().chain(parity.iter()).cloned().collect();
        let refs: Vec<ChunkRef> = all
            .iter()
            .enumerate()
            .map(|(i, s)| ChunkRef {
                hash: chunk_id(s),
                size: s.len() as u32,
                role: if i < K {
                    ChunkRole::Data
                } else {
                    ChunkRole::Parity { stripe_index: 0 }
                },
            })
            .collect();
        let span = stripes(params, &refs).unwrap()[0];
        // Lose 4 data shards (the worst case: every rebuilt shard is data).
        let lost = [0usize, 3, 6, 9];
        let with_losses = || -> Vec<Option<Vec<u8>>> {
            all.iter()
                .enumerate()
                .map(|(i, s)| (!lost.contains(&i)).then(|| s.clone()))
                .collect()
        };
        g.throughput(Throughput::Bytes((K * len) as u64));
        g.bench_function(BenchmarkId::new("crate_reconstruct_data", len), |b| {
            b.iter_batched(
                with_losses,
                |mut s| rs.reconstruct_data(&mut s).unwrap(),
                criterion::BatchSize::LargeInput,
            );
        });
        // The store's rebuild: plan (coefficients for these losses), add the first K shards
        // left one at a time, verify the rebuilt ones against their refs.
        let used: Vec<usize> = (0..K + P).filter(|i| !lost.contains(i)).take(K).collect();
        g.bench_function(BenchmarkId::new("engine_rebuild_and_verify", len), |b| {
            b.iter(|| {
                let mut plan = codec.plan_rebuild(&span, &lost, &used).unwrap();
                for (index, position) in used.iter().enumerate() {
                    plan.add(index, &all[*position]).unwrap();
                }
                black_box(plan.finish(&refs).unwrap())
            });
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .measurement_time(std::time::Duration::from_secs(3))
        .warm_up_time(std::time::Duration::from_secs(1));
    targets = encode, reconstruct
}
criterion_main!(benches);
