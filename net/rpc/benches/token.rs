//! Permission-token verification cost: `verify` of a valid chain of 1..=4 links (structure,
//! trust, links, revocation, the call's checks and every link's ed25519 signature), the same
//! from the binary form (`verify_encoded`, decoding included), one signature check alone, and
//! the refusal of an untrusted root (which costs no signature check).
//!
//! Run: `cargo bench -p net-mesh-rpc --bench token -- --warm-up-time 1 --measurement-time 3`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "benchmark harness: a failure should abort the run loudly"
)]

use std::collections::{HashMap, HashSet};
use std::hint::black_box;

use criterion::{BenchmarkId, Criterion};
use net_mesh_rpc::Identity;
use net_mesh_rpc::token::{self, PermissionToken, Scope, TokenChannel, TokenClaims, VerifyContext};

const NOW: u64 = 1_800_000_000;

fn id(n: usize) -> Identity {
    Identity::from_seed([0x42 + n as u8; 32])
}

/// root → id(1) → … → id(links), every link read,write,delegate on `default`.
fn chain(links: usize) -> Vec<PermissionToken> {
    let scope = Scope::READ | Scope::WRITE | Scope::DELEGATE;
    let claims = |subject: usize, depth: usize| TokenClaims {
        subject: id(subject).public_key().to_bytes(),
        scope,
        channel: TokenChannel::named("default"),
        issuer_generation: 1,
        not_before: NOW - 3600,
        not_after: NOW + 3600,
        delegation_depth: depth as u8,
        nonce: subject as u64,
    };
    let mut chain = vec![PermissionToken::mint(&id(0), claims(1, links - 1)).unwrap()];
    for i in 1..links {
        let next = chain
            .last()
            .unwrap()
            .delegate(&id(i), claims(i + 1, links - 1 - i))
            .unwrap();
        chain.push(next);
    }
    chain
}

fn bench(c: &mut Criterion) {
    let trusted = HashSet::from([id(0).node_id()]);
    let floors = HashMap::from([(id(0).node_id(), 1)]);
    let mut group = c.benchmark_group("token");
    for links in 1..=4 {
        let chain = chain(links);
        let bytes = token::encode_chain(&chain);
        let peer = id(links).public_key().to_bytes();
        let ctx = VerifyContext::new(&trusted, &floors, peer, "default", Scope::WRITE, NOW);
        assert_eq!(token::verify(&chain, &ctx).unwrap().links, links);
        group.bench_with_input(BenchmarkId::new("verify", links), &chain, |b, chain| {
            b.iter(|| token::verify(black_box(chain), black_box(&ctx)))
        });
        group.bench_with_input(
            BenchmarkId::new("verify_encoded", links),
            &bytes,
            |b, bytes| b.iter(|| token::verify_encoded(black_box(bytes), black_box(&ctx))),
        );
    }
    let single = chain(1);
    group.bench_function("verify_signature", |b| {
        b.iter(|| black_box(&single[0]).verify_signature())
    });
    let nobody = HashSet::new();
    let peer = id(1).public_key().to_bytes();
    let refused = VerifyContext::new(&nobody, &floors, peer, "default", Scope::WRITE, NOW);
    assert!(token::verify(&single, &refused).is_err());
    group.bench_function("refuse_untrusted", |b| {
        b.iter(|| token::verify(black_box(&single), black_box(&refused)))
    });
    group.finish();
}

criterion::criterion_group!(benches, bench);
criterion::criterion_main!(benches);
