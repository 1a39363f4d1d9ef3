//! Node throughput with permission tokens on vs off, side by side in one run on one in-process
//! node over real TCP on 127.0.0.1 (Noise sessions, nRPC), its store opened as `serve` opens
//! one (default store config, staging and node tables registered, no `--bandwidth`).
//!
//! Four clients, each with its own identity and session: `allow` is in the node's allow list
//! (write) and sends no token; `token-1` is not in the allow list and every call carries a
//! 1-link chain the node minted for it; `token-3` likewise with a 3-link delegated chain
//! (node → delegate → delegate → client). The node verifies the chain on every call.
//! `allow-2` is a second allow-listed client doing what `allow` does: the control, whose ratio
//! to `allow` is the noise floor of the run.
//!
//! - `small`: `status` and `stat` of a small pinned blob, calls one after another on one
//!   session (each answer checked).
//! - `bulk`: a put of 64 MiB of fresh random bytes (its ref must equal a local put's, and the
//!   node must store all of it anew: between puts, outside the timing, the blob is unpinned and
//!   collected) and a verified read of a 64 MiB blob (the bytes must match); `token-3` sits
//!   this one out.
//!
//! Criterion measures each side in turn. Then, for the `SUMMARY` lines, the sides run again
//! interleaved (ABBA rounds: on a shared machine whose load drifts, a side measured alone
//! can look faster or slower than it is): each side's rate from its median round and the ratio
//! token / allow (goal ≥ 0.97).
//!
//! Run: `cargo bench -p net-mesh-node --bench tokens -- --warm-up-time 1 --measurement-time 3`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "benchmark harness: a failure should abort the run loudly"
)]

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io::Cursor;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use net_mesh_engine::{BlobRef, GcOptions, Hash, OpenOptions, Store, StoreConfig};
use net_mesh_node::call_token::{DEFAULT_CHANNEL, now_unix_s};
use net_mesh_node::proto::{BlobSpec, PutStart};
use net_mesh_node::{Allow, Node, NodeClient, NodeConfig, PutInput};
use net_mesh_rpc::token::{PermissionToken, Scope, TokenChannel, TokenClaims};
use net_mesh_rpc::{Identity, NodeAddr};
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

const BULK: usize = 64 * 1024 * 1024;
/// Interleaved rounds of the `SUMMARY` figures, and calls per small round.
const SMALL_ROUNDS: usize = 20;
const SMALL_BATCH: u64 = 200;
const BULK_ROUNDS: usize = 6;

fn open_store(dir: &std::path::Path) -> Store {
    Store::open_with(
        dir,
        net_mesh_node::revoke::with_node_tables(net_mesh_staging::with_staging(
            OpenOptions::new(StoreConfig::default()),
            net_mesh_staging::DEFAULT_ABANDON_GRACE,
        )),
    )
    .unwrap()
}

/// Deterministic pseudo-random bytes (xorshift), distinct per seed.
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Claims for `subject` on the default channel, valid from an hour ago for two hours.
fn claims(subject: &Identity, scope: Scope, depth: u8) -> TokenClaims {
    let now = now_unix_s();
    TokenClaims {
        subject: subject.public_key().to_bytes(),
        scope,
        channel: TokenChannel::named(DEFAULT_CHANNEL),
        issuer_generation: 0,
        not_before: now - 3600,
        not_after: now + 3600,
        delegation_depth: depth,
        nonce: net_mesh_rpc::token::fresh_nonce().unwrap(),
    }
}

/// root → … → `subject`, `links` links; the last grants read and write, the others also
/// delegate.
fn chain(root: &Identity, subject: &Identity, links: usize) -> Vec<PermissionToken> {
    let rw = Scope::READ | Scope::WRITE;
    let rwd = rw | Scope::DELEGATE;
    let delegates: Vec<Identity> = (1..links)
        .map(|_| Identity::generate_ephemeral().unwrap())
        .collect();
    let mut chain: Vec<PermissionToken> = Vec::new();
    let mut issuer = root;
    for (i, delegate) in delegates.iter().enumerate() {
        let c = claims(delegate, rwd, (links - 1 - i) as u8);
        chain.push(match chain.last() {
            None => PermissionToken::mint(issuer, c).unwrap(),
            Some(last) => last.delegate(issuer, c).unwrap(),
        });
        issuer = delegate;
    }
    let c = claims(subject, rw, 0);
    chain.push(match chain.last() {
        None => PermissionToken::mint(issuer, c).unwrap(),
        Some(last) => last.delegate(issuer, c).unwrap(),
    });
    assert_eq!(chain.len(), links);
    chain
}

/// One timed unit of work by one side (its checks run untimed).
type Unit<'a> = Box<dyn FnMut() -> Duration + 'a>;

/// Runs every side's unit `rounds` times, interleaved (ABBA: the order flips every round, so
/// a machine that slows down or speeds up during the run weighs on every side alike), and
/// gives each side's median time per unit.
fn interleaved(rounds: usize, sides: &mut [(&str, Unit<'_>)]) -> Vec<(String, Duration)> {
    let mut times: Vec<Vec<Duration>> = vec![Vec::with_capacity(rounds); sides.len()];
    for round in 0..rounds {
        let mut order: Vec<usize> = (0..sides.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            times[i].push((sides[i].1)());
        }
    }
    sides
        .iter()
        .zip(times)
        .map(|((name, _), mut t)| {
            t.sort();
            (name.to_string(), t[t.len() / 2])
        })
        .collect()
}

/// `SUMMARY` line: each side's rate (`per_unit` of `what` per median unit time) and its ratio
/// to the first side's.
fn summary(title: &str, medians: &[(String, Duration)], per_unit: f64, what: &str) {
    let rate = |t: &Duration| per_unit / t.as_secs_f64();
    let base = rate(&medians[0].1);
    let sides: Vec<String> = medians
        .iter()
        .map(|(name, t)| {
            let r = rate(t);
            format!("{name} {r:.0} {what} ({:.3}x)", r / base)
        })
        .collect();
    println!("SUMMARY {title}: {}", sides.join(", "));
}

struct Bench {
    rt: Runtime,
    _dir: tempfile::TempDir,
    node: Arc<Node>,
    stop: CancellationToken,
    clients: Vec<(&'static str, Arc<NodeClient>)>,
}

impl Bench {
    fn start() -> Bench {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let node_identity = Identity::generate_ephemeral().unwrap();
        let node_id = node_identity.node_id();
        let allowed = Identity::generate_ephemeral().unwrap();
        let one = Identity::generate_ephemeral().unwrap();
        let three = Identity::generate_ephemeral().unwrap();
        let control = Identity::generate_ephemeral().unwrap();
        let allow_file = format!("{} write\n{} write\n", allowed.node_id(), control.node_id());
        let allow = Allow::parse(node_id, &allow_file).unwrap();
        let node = Node::with_config(
            Arc::new(open_store(dir.path())),
            node_id,
            NodeConfig::default(),
        )
        .unwrap();
        let stop = CancellationToken::new();
        let (clients, refused) = rt.block_on(async {
            let (listener, local) = net_mesh_node::bind("127.0.0.1:0").await.unwrap();
            tokio::spawn(net_mesh_node::serve(
                Arc::clone(&node),
                node_identity.clone(),
                allow,
                listener,
                stop.clone(),
            ));
            let addr = NodeAddr {
                node_id,
                host_port: local.to_string(),
            };
            let connect = |identity: &Identity| NodeClient::connect(identity.clone(), &addr);
            // The token clients are served by their tokens alone.
            let refused = connect(&one).await.unwrap().status().await.is_err();
            let clients = vec![
                ("allow", Arc::new(connect(&allowed).await.unwrap())),
                (
                    "token-1",
                    Arc::new(connect(&one).await.unwrap().with_token(&chain(
                        &node_identity,
                        &one,
                        1,
                    ))),
                ),
                (
                    "token-3",
                    Arc::new(connect(&three).await.unwrap().with_token(&chain(
                        &node_identity,
                        &three,
                        3,
                    ))),
                ),
                ("allow-2", Arc::new(connect(&control).await.unwrap())),
            ];
            (clients, refused)
        });
        assert!(
            refused,
            "a client outside the allow list without a token was served"
        );
        Bench {
            rt,
            _dir: dir,
            node,
            stop,
            clients,
        }
    }

    /// The clients of the bulk group: all but `token-3`.
    fn bulk_clients(&self) -> impl Iterator<Item = &(&'static str, Arc<NodeClient>)> {
        self.clients.iter().filter(|(name, _)| *name != "token-3")
    }

    /// Puts `data` (shared, not copied: a put's time is the node's work).
    fn put(&self, client: &NodeClient, name: &str, data: &Bytes) -> net_mesh_node::proto::PutDone {
        let start = PutStart::Begin {
            staging_id: None,
            name: name.to_string(),
            chunking: None,
            tree: None,
            checkpoint_interval: None,
            class: Default::default(),
            name_given: false,
        };
        let input = PutInput::Stream(Box::new(Cursor::new(data.clone())));
        self.rt
            .block_on(client.put(start, input, &mut |_| {}))
            .unwrap()
    }

    /// Unpins `blob_id` and collects everything unreferenced, so the next put of its bytes
    /// stores them anew.
    fn forget(&self, blob_id: &Hash) {
        let store = self.node.store();
        store.unpin(blob_id).unwrap();
        store
            .gc(&GcOptions {
                grace: Duration::ZERO,
                ..GcOptions::default()
            })
            .unwrap();
    }
}

/// Times `calls` calls of `call` one after another.
fn calls<F: Future<Output = ()>>(bench: &Bench, calls: u64, call: impl Fn() -> F) -> Duration {
    let start = Instant::now();
    bench.rt.block_on(async {
        for _ in 0..calls {
            call().await;
        }
    });
    start.elapsed()
}

fn small(c: &mut Criterion, bench: &Bench) {
    let data = Bytes::from(random_bytes(4096, 1));
    let done = bench.put(&bench.clients[0].1, "small", &data);
    let spec = BlobSpec::Ref(done.blob_ref.clone());
    let node_id = bench
        .rt
        .block_on(bench.clients[0].1.status())
        .unwrap()
        .node_id;
    let status = |client: &Arc<NodeClient>| {
        let client = Arc::clone(client);
        let node_id = node_id.clone();
        move || {
            let client = Arc::clone(&client);
            let node_id = node_id.clone();
            async move { assert_eq!(client.status().await.unwrap().node_id, node_id) }
        }
    };
    let stat = |client: &Arc<NodeClient>| {
        let client = Arc::clone(client);
        let spec = spec.clone();
        move || {
            let client = Arc::clone(&client);
            let spec = spec.clone();
            async move { assert_eq!(client.stat(&spec).await.unwrap().size, 4096) }
        }
    };

    let mut group = c.benchmark_group("small");
    group.sample_size(30);
    group.throughput(Throughput::Elements(1));
    for (name, client) in &bench.clients {
        let call = status(client);
        group.bench_function(BenchmarkId::new("status", name), |b| {
            b.iter_custom(|iters| calls(bench, iters, &call))
        });
    }
    for (name, client) in &bench.clients {
        let call = stat(client);
        group.bench_function(BenchmarkId::new("stat", name), |b| {
            b.iter_custom(|iters| calls(bench, iters, &call))
        });
    }
    group.finish();

    let mut sides: Vec<(&str, Unit<'_>)> = bench
        .clients
        .iter()
        .map(|(name, client)| {
            let call = status(client);
            (
                *name,
                Box::new(move || calls(bench, SMALL_BATCH, &call)) as Unit<'_>,
            )
        })
        .collect();
    let medians = interleaved(SMALL_ROUNDS, &mut sides);
    summary(
        &format!("small status, interleaved {SMALL_ROUNDS} x {SMALL_BATCH} calls"),
        &medians,
        SMALL_BATCH as f64,
        "calls/s",
    );
    let mut sides: Vec<(&str, Unit<'_>)> = bench
        .clients
        .iter()
        .map(|(name, client)| {
            let call = stat(client);
            (
                *name,
                Box::new(move || calls(bench, SMALL_BATCH, &call)) as Unit<'_>,
            )
        })
        .collect();
    let medians = interleaved(SMALL_ROUNDS, &mut sides);
    summary(
        &format!("small stat, interleaved {SMALL_ROUNDS} x {SMALL_BATCH} calls"),
        &medians,
        SMALL_BATCH as f64,
        "calls/s",
    );
}

fn bulk(c: &mut Criterion, bench: &Bench) {
    // Two inputs taken in turn, each with the ref and pin id a local put gives.
    let local_dir = tempfile::tempdir().unwrap();
    let local = open_store(local_dir.path());
    let inputs: Vec<(Bytes, BlobRef, Hash)> = (0..2)
        .map(|seed| {
            let data = random_bytes(BULK, 100 + seed);
            let outcome = local.store(&data).unwrap();
            (Bytes::from(data), outcome.blob_ref, outcome.blob_id)
        })
        .collect();
    let read_data = Bytes::from(random_bytes(BULK, 200));
    let read_ref = local.store(&read_data).unwrap().blob_ref;
    drop(local);
    let done = bench.put(&bench.clients[0].1, "read-me", &read_data);
    assert_eq!(BlobRef::decode(&done.blob_ref).unwrap(), read_ref);

    let turn = Cell::new(0usize);
    // One put of fresh bytes (the node stores all of them), timed; then, untimed, its checks
    // and the collection of what it stored.
    let put = |client: &NodeClient| {
        let (data, blob_ref, blob_id) = &inputs[turn.get() % inputs.len()];
        turn.set(turn.get() + 1);
        let start = Instant::now();
        let done = bench.put(client, "bulk", data);
        let timed = start.elapsed();
        assert_eq!(&BlobRef::decode(&done.blob_ref).unwrap(), blob_ref);
        assert_eq!(done.new_bytes, BULK as u64, "the node stored less than all");
        bench.forget(blob_id);
        timed
    };
    let sink = RefCell::new(Vec::<u8>::with_capacity(BULK));
    // One verified read of the whole blob, timed; then, untimed, the bytes compared.
    let read = |client: &NodeClient| {
        let mut sink = sink.borrow_mut();
        sink.clear();
        let start = Instant::now();
        let n = client
            .read_blocking(bench.rt.handle(), &read_ref, 0..BULK as u64, &mut *sink)
            .unwrap();
        let timed = start.elapsed();
        assert_eq!(n, BULK as u64);
        assert!(*sink == read_data, "the read's bytes differ");
        timed
    };

    let mut group = c.benchmark_group("bulk");
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Bytes(BULK as u64));
    for (name, client) in bench.bulk_clients() {
        group.bench_function(BenchmarkId::new("put_64MiB", name), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| put(client)).sum())
        });
    }
    for (name, client) in bench.bulk_clients() {
        group.bench_function(BenchmarkId::new("read_64MiB", name), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| read(client)).sum())
        });
    }
    group.finish();

    let mib = BULK as f64 / (1024.0 * 1024.0);
    let mut sides: Vec<(&str, Unit<'_>)> = bench
        .bulk_clients()
        .map(|(name, client)| (*name, Box::new(|| put(client)) as Unit<'_>))
        .collect();
    let medians = interleaved(BULK_ROUNDS, &mut sides);
    summary(
        &format!("bulk put 64 MiB, interleaved {BULK_ROUNDS} rounds"),
        &medians,
        mib,
        "MiB/s",
    );
    let mut sides: Vec<(&str, Unit<'_>)> = bench
        .bulk_clients()
        .map(|(name, client)| (*name, Box::new(|| read(client)) as Unit<'_>))
        .collect();
    let medians = interleaved(BULK_ROUNDS, &mut sides);
    summary(
        &format!("bulk verified read 64 MiB, interleaved {BULK_ROUNDS} rounds"),
        &medians,
        mib,
        "MiB/s",
    );
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let bench = Bench::start();
    small(&mut c, &bench);
    bulk(&mut c, &bench);
    bench.stop.cancel();
    c.final_summary();
}
