//! Deterministic simulation of a replicated channel under faults (docs/REPLICATION.md,
//! "Simulation"): three real members (openraft over the real log store and state machine,
//! on real stores) on a simulated network with seeded drops, delays, duplicates, lost
//! replies and partitions, members crashing and restarting from their stores, forged
//! messages from a non-member and with stale terms, and on some seeds a replica move. Every
//! seed's invariants are checked (`tests/sim/check.rs`).
//!
//! `NET_MESH_SIM_SEEDS=N` runs N seeds (default 200) from `NET_MESH_SIM_FIRST` (default 0),
//! `NET_MESH_SIM_SEED=N` replays one, `NET_MESH_SIM_OPS=N` sets the client operations per seed
//! (default 24), `NET_MESH_SIM_VERBOSE=1` prints every seed's summary. A panic anywhere while a
//! seed runs (a member's openraft task included: tokio would only end that task) fails the
//! seed with the panic's message and the replay line.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod sim;

use std::sync::Mutex;
use std::time::Instant;

/// Panics seen (on any thread, in any task) since the running seed started.
static PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn panics() -> std::sync::MutexGuard<'static, Vec<String>> {
    PANICS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Records every panic (then prints it as the default hook does).
fn record_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        panics().push(info.to_string());
        default(info);
    }));
}

const TEST: &str = "simulation_keeps_every_acknowledged_pin_under_faults";

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
    })
}

/// A current-thread runtime with paused (virtual) time and one blocking thread, for one seed.
fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .max_blocking_threads(1)
        .build()
        .unwrap()
}

/// Runs one seed on its own [`paused_runtime`].
fn run(seed: u64, ops: usize, equal_timeouts: bool) -> Result<sim::Summary, String> {
    let runtime = paused_runtime();
    panics().clear();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runtime.block_on(sim::run_seed(seed, ops, equal_timeouts))
    }));
    drop(runtime);
    let panicked = std::mem::take(&mut *panics());
    if !panicked.is_empty() {
        return Err(format!("panicked: {}", panicked.join("\n")));
    }
    match outcome {
        Ok(r) => r,
        Err(p) => Err(format!(
            "panicked: {}",
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        )),
    }
}

#[test]
fn simulation_keeps_every_acknowledged_pin_under_faults() {
    let ops = env_u64("NET_MESH_SIM_OPS").unwrap_or(24) as usize;
    let seeds: Vec<u64> = match env_u64("NET_MESH_SIM_SEED") {
        Some(seed) => vec![seed],
        None => {
            let first = env_u64("NET_MESH_SIM_FIRST").unwrap_or(0);
            (first..first + env_u64("NET_MESH_SIM_SEEDS").unwrap_or(200)).collect()
        }
    };
    record_panics();
    let verbose = seeds.len() == 1 || std::env::var_os("NET_MESH_SIM_VERBOSE").is_some();
    let started = Instant::now();
    let mut failures = Vec::new();
    let mut totals = sim::Summary::default();
    let (mut moved, mut snapshots, mut joints_cut, mut joints_finished) = (0, 0, 0, 0);
    for &seed in &seeds {
        let t = Instant::now();
        if verbose {
            eprintln!("seed {seed} ...");
        }
        match run(seed, ops, false) {
            Ok(s) => {
                if verbose {
                    eprintln!("seed {seed}: {s:?} in {:?}", t.elapsed());
                }
                totals.acked += s.acked;
                totals.unknown += s.unknown;
                totals.crashes += s.crashes;
                totals.partitions += s.partitions;
                totals.forged += s.forged;
                totals.virtual_time += s.virtual_time;
                totals.max_term = totals.max_term.max(s.max_term);
                totals.max_leaders_per_term =
                    totals.max_leaders_per_term.max(s.max_leaders_per_term);
                totals.messages.sent += s.messages.sent;
                totals.messages.dropped += s.messages.dropped;
                totals.messages.cut += s.messages.cut;
                totals.messages.duplicated += s.messages.duplicated;
                totals.messages.replies_lost += s.messages.replies_lost;
                totals.messages.refused += s.messages.refused;
                moved += usize::from(s.moved);
                joints_cut += usize::from(s.joint_cut);
                joints_finished += usize::from(s.joint_finished_by_leader);
                snapshots += usize::from(s.snapshots);
            }
            Err(e) => {
                eprintln!(
                    "seed {seed} FAILED:\n{e}\nreplay: NET_MESH_SIM_SEED={seed} NET_MESH_SIM_OPS={ops} \
                     cargo test -p net-mesh-replication --test {TEST} -- --nocapture"
                );
                failures.push(seed);
                if failures.len() >= 5 {
                    break;
                }
            }
        }
    }
    eprintln!(
        "{} seeds x {ops} ops in {:?}: {} acknowledged, {} unknown, {} crashes, {} partitions, \
         {} forged rounds, {moved} replica moves ({joints_cut} of them cut off in their \
         joint membership, {joints_finished} of those finished by the leader), {snapshots} snapshotting seeds, max term {}, \
         at most {} leaders in a term, {:?} virtual; messages {:?}",
        seeds.len(),
        started.elapsed(),
        totals.acked,
        totals.unknown,
        totals.crashes,
        totals.partitions,
        totals.forged,
        totals.max_term,
        totals.max_leaders_per_term,
        totals.virtual_time,
        totals.messages,
    );
    assert!(
        failures.is_empty(),
        "seeds {failures:?} broke an invariant; replay one with NET_MESH_SIM_SEED=<seed> \
         NET_MESH_SIM_OPS={ops} cargo test -p net-mesh-replication --test {TEST} -- --nocapture"
    );
    // A joint membership left by its proposer is finished by the group's leader on its own
    // (some cut entries are lost with a crashed leader; then the driver proposes again).
    assert!(
        joints_cut == 0 || joints_finished > 0,
        "none of the {joints_cut} joint memberships cut off was finished by a leader"
    );
}

/// The seeds' faults, crashes and partitions with every member's election timeout the same and
/// every message delayed the same: many more split votes, and the split-vote breaker
/// (`src/elect.rs`) standing members up on its own schedule; every invariant must still hold.
/// (It passes without the breaker too: crashes and partitions put the timers out of step; the
/// next test shows the split that never ends.) `NET_MESH_SIM_EQUAL_SEEDS=N` (default 20).
#[test]
fn members_with_equal_election_timeouts_still_elect_leaders() {
    let ops = env_u64("NET_MESH_SIM_OPS").unwrap_or(24) as usize;
    record_panics();
    let seeds = env_u64("NET_MESH_SIM_EQUAL_SEEDS").unwrap_or(20);
    let mut failures = Vec::new();
    let mut terms = 0;
    let mut virtual_time = std::time::Duration::ZERO;
    for seed in 0..seeds {
        match run(seed, ops, true) {
            Ok(s) => {
                terms += s.max_term;
                virtual_time += s.virtual_time;
            }
            Err(e) => {
                eprintln!("seed {seed} with equal timeouts FAILED:\n{e}");
                failures.push(seed);
                if failures.len() >= 3 {
                    break;
                }
            }
        }
    }
    eprintln!(
        "{seeds} seeds with equal election timeouts: highest terms summed {terms}, \
         {virtual_time:?} virtual"
    );
    assert!(failures.is_empty(), "seeds failed: {failures:?}");
}

/// The survivors of a crashed leader whose election timers run in step (equal timeouts, equal
/// message delays, virtual time): openraft draws a member's timeout once and checks it on a
/// tick, so both stand in the same instant every round and split; the split-vote breaker
/// (`src/elect.rs`) has one stand first. Without it not even the first leader is elected (the
/// three founders split every round). The seeds differ only in their store dirs here.
#[test]
fn survivors_whose_election_timers_run_in_step_still_elect_a_leader() {
    let within = std::time::Duration::from_secs(30);
    for seed in 0..2 {
        let took = paused_runtime().block_on(sim::leader_lost_in_step(seed, within));
        match took {
            Ok(took) => eprintln!("seed {seed}: a new leader {took:?} (virtual) after the crash"),
            Err(e) => panic!("seed {seed}: {e}"),
        }
    }
}
