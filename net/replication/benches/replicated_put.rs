//! Replicated writes side by side with a single node, in one run: in-process members over real
//! TCP on 127.0.0.1 (the members of `tests/support`), each a real store in a temp dir.
//!
//! - put latency of a 1 MiB blob: single node (`Store::store`: the blob stored and pinned in one
//!   local store) against a 3-node channel (the blob stored held on the leader, as a node's
//!   upload into a replicated channel finishes, then `propose_pin`, which prefetches it to a
//!   quorum and returns once the pin is committed and applied there);
//! - throughput of a large write as 4 MiB blobs, one after another, the same two ways;
//! - catch-up: a follower stopped while pins of fresh blobs are written, restarted, until its
//!   applied index reaches the leader's committed index (log replay + fetching the objects);
//! - election: time from stopping the leader until the two survivors agree on a new one.
//!
//! `cargo bench -p net-mesh-replication --bench replicated_put`. Sizes:
//! `NET_MESH_BENCH_PUTS` (50), `NET_MESH_BENCH_LARGE_MIB` (256), `NET_MESH_BENCH_CATCHUP_MIB`
//! (256), `NET_MESH_BENCH_ELECTIONS` (5); 0 leaves that part out (both MIB sizes: the large write
//! and catch-up part).
//!
//! Every timed put first writes and deletes as many bytes as it will store on all its members
//! (`warm`): this VM fills pages it has not touched lately ~10x slower than just-freed ones (see
//! benches/compare_node.sh), and the 3-node side, storing three copies, would otherwise pay that
//! three times as often. `NET_MESH_BENCH_COLD=1` leaves it out.
//!
//! All three members run in this one process on the machine's cores and disk, so the 3-node
//! side does (at least) three stores' work on the cores one node has. The CPU rows say how much:
//! the process's CPU time (user + system, `/proc/self/stat`) per put on each side; their ratio bounds
//! what the latency ratio can reach here when the cores are the limit.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use net_mesh_engine::Store;
use net_mesh_replication::prefetch::hold_op;
use net_mesh_replication::{ProposeError, ReplicatedChannel, stored_applied};
use support::{CHANNEL, Member, config, create_all, open_store, three_members, wait_for_leader};

const MIB: usize = 1024 * 1024;

/// Writes and deletes `bytes` (+ 1 MiB) of zeros under `root`, so the put timed next fills
/// just-freed pages (see the module docs). Off with `NET_MESH_BENCH_COLD=1`.
fn warm(root: &Path, bytes: usize) {
    use std::io::Write;
    static ZEROS: [u8; MIB] = [0; MIB];
    if std::env::var("NET_MESH_BENCH_COLD").is_ok_and(|v| v == "1") {
        return;
    }
    let path = root.join("warm");
    let mut file = std::fs::File::create(&path).unwrap();
    for _ in 0..=bytes.div_ceil(MIB) {
        file.write_all(&ZEROS).unwrap();
    }
    drop(file);
    std::fs::remove_file(&path).unwrap();
}
const LARGE_BLOB: usize = 4 * MIB;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `len` pseudo-random bytes (distinct per seed, so nothing deduplicates).
fn random(len: usize, seed: u64) -> Arc<Vec<u8>> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    Arc::new(out)
}

/// CPU time (user + system, every thread) this process used so far: `/proc/self/stat`
/// fields 14 and 15, in the kernel's 100 Hz user ticks.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

fn percentile(samples: &[Duration], p: usize) -> Duration {
    let mut s = samples.to_vec();
    s.sort();
    s[(s.len() * p / 100).min(s.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn mib_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / MIB as f64 / d.as_secs_f64()
}

/// Stores `bytes` in `store` and pins it (default channel): a single node's acknowledged put.
async fn local_put(store: &Arc<Store>, bytes: &Arc<Vec<u8>>) -> net_mesh_engine::BlobRef {
    let store = store.clone();
    let bytes = bytes.clone();
    tokio::task::spawn_blocking(move || store.store(&bytes).unwrap().blob_ref)
        .await
        .unwrap()
}

/// Stores `bytes` in `store` held for a pin in the channel (what a node's upload into a
/// replicated channel commits before it proposes the pin).
async fn held_put(store: &Arc<Store>, bytes: &Arc<Vec<u8>>) -> net_mesh_engine::BlobRef {
    let store = store.clone();
    let bytes = bytes.clone();
    tokio::task::spawn_blocking(move || {
        let mut writer = store.writer().unwrap();
        writer.write(&bytes).unwrap();
        writer
            .finish_held(|r| Box::new(hold_op(CHANNEL, r)))
            .unwrap()
            .blob_ref
    })
    .await
    .unwrap()
}

/// A replicated channel's acknowledged put: stored on the leader, then proposed. A proposal
/// refused as busy (`NotDurable`: too few voters could prefetch, e.g. both followers already
/// running `MAX_PREFETCHES_PER_CHANNEL` prefetches) is retried after 20 ms, as a client would,
/// for at most a minute, and counted in `retries` (the time includes the retries). Returns how
/// long the leader's own store took (the rest of the put is the proposal: the quorum's
/// prefetch, then the Raft round until the pin is applied on the leader).
async fn replicated_put(
    leader: &Member,
    channel: &ReplicatedChannel,
    bytes: &Arc<Vec<u8>>,
    retries: &mut Vec<String>,
) -> Result<Duration, ProposeError> {
    let t = Instant::now();
    let r = held_put(&leader.store, bytes).await;
    let stored = t.elapsed();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match channel.propose_pin(&r, "bench").await {
            Ok(_) => return Ok(stored),
            Err(e @ ProposeError::NotDurable { .. }) if Instant::now() < deadline => {
                retries.push(e.to_string());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => {
                return Err(e);
            }
        }
    }
}

/// Three members with a channel and an agreed leader.
struct Group {
    members: Vec<Option<Member>>,
    channels: Vec<Option<ReplicatedChannel>>,
    leader: usize,
}

impl Group {
    async fn start(root: &Path) -> Group {
        let members = three_members(root).await;
        let channels = create_all(&members).await;
        let leader = wait_for_leader(&channels.iter().collect::<Vec<_>>()).await;
        Group {
            members: members.into_iter().map(Some).collect(),
            channels: channels.into_iter().map(Some).collect(),
            leader,
        }
    }

    fn leader(&self) -> (&Member, &ReplicatedChannel) {
        (
            self.members[self.leader].as_ref().unwrap(),
            self.channels[self.leader].as_ref().unwrap(),
        )
    }

    /// Stops member `i` (its group, its endpoint, its store handle).
    async fn stop(&mut self, i: usize) -> (net_mesh_rpc::Identity, std::path::PathBuf, u16) {
        self.channels[i].take().unwrap().shutdown().await.unwrap();
        self.members[i].take().unwrap().stop().await
    }

    async fn shutdown(self) {
        for c in self.channels.into_iter().flatten() {
            c.shutdown().await.unwrap();
        }
        for m in self.members.into_iter().flatten() {
            m.stop().await;
        }
    }
}

/// Polls `check` every millisecond until it holds (at most 5 minutes).
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while !check() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// What the table says of proposals refused and retried.
fn refused(retries: &[String]) -> String {
    match retries.len() {
        0 => String::new(),
        n => format!(" [{n} proposals refused NotDurable and retried]"),
    }
}

struct Row {
    what: String,
    single: String,
    replicated: String,
    ratio: String,
    goal: &'static str,
}

async fn put_latency(root: &Path, puts: usize, rows: &mut Vec<Row>) {
    let warmup = 3;
    let single = open_store(&root.join("single"));
    let mut local = Vec::new();
    let mut local_cpu = Duration::ZERO;
    for i in 0..warmup + puts {
        let bytes = random(MIB, 1_000 + i as u64);
        warm(root, MIB);
        let (t, c) = (Instant::now(), cpu_time());
        local_put(&single, &bytes).await;
        if i >= warmup {
            local.push(t.elapsed());
            local_cpu += cpu_time() - c;
        }
    }
    drop(single);
    let group = Group::start(&root.join("group")).await;
    let (leader, channel) = group.leader();
    let mut replicated = Vec::new();
    let mut replicated_cpu = Duration::ZERO;
    let mut leader_stores = Vec::new();
    let mut retries = Vec::new();
    for i in 0..warmup + puts {
        let bytes = random(MIB, 2_000 + i as u64);
        warm(root, 3 * MIB);
        let (t, c) = (Instant::now(), cpu_time());
        let stored = replicated_put(leader, channel, &bytes, &mut retries)
            .await
            .unwrap();
        if i >= warmup {
            replicated.push(t.elapsed());
            replicated_cpu += cpu_time() - c;
            leader_stores.push(stored);
        }
    }
    group.shutdown().await;
    for (p, goal) in [(50, "3-node <= 2x single"), (90, "")] {
        let (s, r) = (percentile(&local, p), percentile(&replicated, p));
        rows.push(Row {
            what: format!("put 1 MiB, p{p} of {puts}"),
            single: ms(s),
            replicated: format!("{}{}", ms(r), refused(&retries)),
            ratio: format!("{:.2}x", r.as_secs_f64() / s.as_secs_f64()),
            goal,
        });
    }
    let proposals: Vec<Duration> = replicated
        .iter()
        .zip(&leader_stores)
        .map(|(all, stored)| all.saturating_sub(*stored))
        .collect();
    for (what, samples) in [
        ("of which the leader's own store", &leader_stores),
        (
            "of which the proposal (quorum prefetch, Raft round)",
            &proposals,
        ),
    ] {
        rows.push(Row {
            what: format!("{what}, p50"),
            single: "-".into(),
            replicated: ms(percentile(samples, 50)),
            ratio: "-".into(),
            goal: "",
        });
    }
    let per_put = |d: Duration| d / u32::try_from(puts).unwrap();
    rows.push(Row {
        what: "CPU time per 1 MiB put (all members in this process)".into(),
        single: ms(per_put(local_cpu)),
        replicated: ms(per_put(replicated_cpu)),
        ratio: format!(
            "{:.2}x",
            replicated_cpu.as_secs_f64() / local_cpu.as_secs_f64()
        ),
        goal: "",
    });
}

/// Large write, then catch-up of a follower stopped during a second write (same group).
async fn large_write_and_catch_up(
    root: &Path,
    large_mib: usize,
    catch_up_mib: usize,
    rows: &mut Vec<Row>,
) {
    let blobs = large_mib * MIB / LARGE_BLOB;
    let bytes_total = blobs * LARGE_BLOB;
    let single = open_store(&root.join("single-large"));
    let mut local = Duration::ZERO;
    for i in 0..blobs {
        let bytes = random(LARGE_BLOB, 10_000 + i as u64);
        warm(root, LARGE_BLOB);
        let t = Instant::now();
        local_put(&single, &bytes).await;
        local += t.elapsed();
    }
    drop(single);
    let mut group = Group::start(&root.join("group-large")).await;
    let mut replicated = Duration::ZERO;
    let mut retries = Vec::new();
    {
        let (leader, channel) = group.leader();
        for i in 0..blobs {
            let bytes = random(LARGE_BLOB, 20_000 + i as u64);
            warm(root, 3 * LARGE_BLOB);
            let t = Instant::now();
            if let Err(e) = replicated_put(leader, channel, &bytes, &mut retries).await {
                for c in group.channels.iter().flatten() {
                    let st = c.status();
                    eprintln!(
                        "leader {} applied {:?} prefetched {:?} fetched {:?}",
                        st.is_leader, st.applied, st.prefetched, st.fetched
                    );
                }
                for m in group.members.iter().flatten() {
                    eprintln!(
                        "prefetch rejections {} peer auth rejections {}",
                        m.replication.prefetch_rejections(),
                        m.replication.peer_auth_rejections()
                    );
                }
                panic!("blob {i} of {blobs}: {e}");
            }
            replicated += t.elapsed();
        }
    }
    let (s, r) = (mib_s(bytes_total, local), mib_s(bytes_total, replicated));
    rows.push(Row {
        what: format!(
            "write {} MiB as {blobs} x 4 MiB blobs, one at a time",
            bytes_total / MIB
        ),
        single: format!("{s:.0} MiB/s ({:.1} s)", local.as_secs_f64()),
        replicated: format!(
            "{r:.0} MiB/s ({:.1} s){}",
            replicated.as_secs_f64(),
            refused(&retries)
        ),
        ratio: format!("{:.2}x", r / s),
        goal: "3-node >= 0.6x single",
    });

    // Catch-up: a follower misses `catch_up_mib` of pins of blobs it never had.
    let follower = (group.leader + 1) % 3;
    let (identity, dir, port) = group.stop(follower).await;
    let blobs = catch_up_mib * MIB / LARGE_BLOB;
    let mut retries = Vec::new();
    {
        let (leader, channel) = group.leader();
        for i in 0..blobs {
            let bytes = random(LARGE_BLOB, 30_000 + i as u64);
            replicated_put(leader, channel, &bytes, &mut retries)
                .await
                .unwrap();
        }
    }
    let target = group.leader().1.status().committed.unwrap();
    let t = Instant::now();
    let back = Member::start(identity, dir, port).await;
    let channel = ReplicatedChannel::open(
        &back.replication,
        back.store.clone(),
        CHANNEL,
        back.endpoint.clone(),
        &config(),
    )
    .await
    .unwrap();
    let store = back.store.clone();
    until("the restarted follower caught up", || {
        stored_applied(&store, CHANNEL)
            .unwrap()
            .is_some_and(|(_, index)| index >= target)
    })
    .await;
    let took = t.elapsed();
    let fetched = channel.status().fetched;
    rows.push(Row {
        what: format!(
            "catch-up of a restarted follower: {blobs} pins, {} MiB it lacked",
            blobs * LARGE_BLOB / MIB
        ),
        single: "-".into(),
        replicated: format!(
            "{:.0} MiB/s ({:.1} s, fetched {} MiB){}",
            mib_s(blobs * LARGE_BLOB, took),
            took.as_secs_f64(),
            fetched.bytes / MIB as u64,
            refused(&retries)
        ),
        ratio: "-".into(),
        goal: "",
    });
    channel.shutdown().await.unwrap();
    back.stop().await;
    drop(store);
    group.shutdown().await;
}

async fn elections(root: &Path, samples: usize, rows: &mut Vec<Row>) {
    let mut times = Vec::new();
    for s in 0..samples {
        let mut group = Group::start(&root.join(format!("election{s}"))).await;
        let old = group.leader().1.status().term;
        let stopped = group.leader;
        let t = Instant::now();
        group.stop(stopped).await;
        let survivors: Vec<&ReplicatedChannel> = group.channels.iter().flatten().collect();
        until("a new leader", || {
            let st: Vec<_> = survivors.iter().map(|c| c.status()).collect();
            st.iter().any(|s| s.is_leader && s.term > old)
                && st.iter().all(|s| s.term > old && s.leader == st[0].leader)
        })
        .await;
        times.push(t.elapsed());
        group.shutdown().await;
    }
    let mut sorted = times.clone();
    sorted.sort();
    rows.push(Row {
        what: format!("new leader after the leader stops, p50 of {samples}"),
        single: "-".into(),
        replicated: format!(
            "{} (min {}, max {})",
            ms(percentile(&times, 50)),
            ms(sorted[0]),
            ms(sorted[sorted.len() - 1])
        ),
        ratio: "-".into(),
        goal: "expected: leader lease 1.5 s + election timeout 0.75-1.5 s (docs/REPLICATION.md)",
    });
}

fn main() {
    if std::env::var_os("NET_MESH_BENCH_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_max_level(tracing::Level::WARN)
            .try_init();
    }
    let puts = env("NET_MESH_BENCH_PUTS", 50);
    let large_mib = env("NET_MESH_BENCH_LARGE_MIB", 256);
    let catch_up_mib = env("NET_MESH_BENCH_CATCHUP_MIB", 256);
    let samples = env("NET_MESH_BENCH_ELECTIONS", 5);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    rt.block_on(async {
        let root = tempfile::tempdir().unwrap();
        // A size of 0 leaves that part out.
        if puts > 0 {
            put_latency(root.path(), puts, &mut rows).await;
        }
        if large_mib > 0 && catch_up_mib > 0 {
            large_write_and_catch_up(root.path(), large_mib, catch_up_mib, &mut rows).await;
        }
        if samples > 0 {
            elections(root.path(), samples, &mut rows).await;
        }
    });
    println!();
    println!(
        "replicated_put: cargo bench -p net-mesh-replication --bench replicated_put \
         (NET_MESH_BENCH_PUTS={puts} NET_MESH_BENCH_LARGE_MIB={large_mib} \
         NET_MESH_BENCH_CATCHUP_MIB={catch_up_mib} NET_MESH_BENCH_ELECTIONS={samples}); \
         {} cores; {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        if std::env::var("NET_MESH_BENCH_COLD").is_ok_and(|v| v == "1") {
            "NET_MESH_BENCH_COLD=1: puts fill whatever pages they get"
        } else {
            "each timed put after a warm-up write (see the module docs)"
        }
    );
    println!("| measure | single node | 3-node channel | 3-node / single | goal |");
    println!("|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} |",
            r.what, r.single, r.replicated, r.ratio, r.goal
        );
    }
}
