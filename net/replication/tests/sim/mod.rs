//! A deterministic simulation of a replicated channel: the real `ReplicatedChannel`
//! (openraft 0.9 over the real `LogStore` and `StateMachine`, on real stores in temp dirs)
//! with the nRPC transport swapped for [`net::SimNetwork`], on a current-thread tokio runtime
//! with paused (virtual) time. One seed fixes everything the simulation chooses: the members'
//! election timeouts, the fault rates, every message's fate, the client's operations and the
//! schedule of partitions, crashes, restarts, forged messages and the replica move.
//!
//! [`run_seed`] drives one seed and returns what it saw, or the first invariant it found
//! broken (see `check`).
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

pub mod check;
pub mod net;
pub mod rng;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use net_mesh_engine::{BlobRef, OpenOptions, Store, StoreConfig};
use net_mesh_replication::{ReplicatedChannel, Replication, ReplicationConfig, extension, raft_id};
use net_mesh_rpc::rpc::server::Router;
use net_mesh_rpc::{Endpoint, Identity, NodeAddr};
use tokio::time::{Instant, sleep};

use check::{Attempt, Observations, Op, Outcome};
use net::{Faults, SimNetwork, World};
use rng::Rng;

pub const CHANNEL: &str = "photos";

/// Terms at and above this are only ever carried by forged messages: a member reaching one
/// has let a forged message change its state.
pub const FORGED_TERM: u64 = 1_000_000;

/// How a seed's run went.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub acked: usize,
    pub unknown: usize,
    pub crashes: usize,
    pub partitions: usize,
    pub forged: usize,
    pub moved: bool,
    /// The move's first membership change was cut off after its joint entry, left for the
    /// leader to finish (`membership::finish_left_joint`).
    pub joint_cut: bool,
    /// ... and a leader did (else the driver proposed again after 15 s).
    pub joint_finished_by_leader: bool,
    pub snapshots: bool,
    pub max_term: u64,
    /// The most leaders seen in one term (more than one is a violation, see `check`).
    pub max_leaders_per_term: usize,
    pub applied: u64,
    pub virtual_time: Duration,
    pub messages: net::Counts,
    /// A digest of what the client saw and the final state (two runs of a seed that agree
    /// on it took the same course as far as the client and the stores can tell).
    pub digest: u64,
}

/// What a seed chose before it started.
#[derive(Debug, Clone)]
struct Plan {
    ops: usize,
    /// A fourth node joins and replaces one of the three (add learner, change voters).
    move_replica: bool,
    /// Of those moves, half: the first change of voters is cut off once its joint entry is
    /// appended (its caller gone), and the driver waits for the leader to finish it before
    /// it proposes again. Drawn from a hash of the seed, not from the seed's stream, so the
    /// rest of the plan is what it was before this choice existed.
    cut_cutover: bool,
    /// Snapshot every few entries and purge the log (members catch up by snapshot).
    snapshots: bool,
}

/// One member: who it is and what it runs on.
struct Node {
    identity: Identity,
    addr: NodeAddr,
    dir: PathBuf,
    config: ReplicationConfig,
    store: Option<Arc<Store>>,
    /// The store handle of the run that crashed: reopened only once every task let it go.
    old_store: Option<Weak<Store>>,
    started: bool,
}

pub struct Cluster {
    seed: u64,
    rng: Rng,
    world: Arc<World>,
    nodes: Vec<Node>,
    blobs: Vec<BlobRef>,
    /// Members that `create` the group (the first three).
    founders: Vec<usize>,
    /// The voters the group must end with.
    target: Vec<usize>,
    obs: Arc<Mutex<Observations>>,
    attempts: Vec<Attempt>,
    pinned: BTreeSet<usize>,
    next_blob: usize,
    summary: Summary,
    forged_seq: u64,
    /// Change the voters as soon as the learner is added, without waiting for every member
    /// to hold that entry (`NET_MESH_SIM_UNGUARDED_MOVE`): shows the stuck voter.
    unguarded_move: bool,
    /// Equal election timeouts and equal message delays (`run_seed`'s `equal_timeouts`).
    in_step: bool,
    /// The plan's `cut_cutover`, until the cut happened.
    cut_cutover: bool,
}

fn store_dir_root() -> tempfile::TempDir {
    // tmpfs when there is one: fsyncs cost nothing there, and a process crash (what is
    // simulated) loses nothing a sync would have kept anyway.
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(d) = tempfile::Builder::new()
            .prefix("net-mesh-sim")
            .tempdir_in(shm)
    {
        return d;
    }
    tempfile::Builder::new()
        .prefix("net-mesh-sim")
        .tempdir()
        .unwrap()
}

fn open_store(dir: &Path) -> Result<Store, String> {
    Store::open_with(
        dir,
        OpenOptions::new(StoreConfig::default()).extension(extension()),
    )
    .map_err(|e| format!("open {}: {e}", dir.display()))
}

/// How far apart the members' (fixed) election timeouts are: more than two message delays.
const TIMEOUT_SPACING_MS: u64 = 170;

/// Runs seed `seed` with `ops` client operations. With `equal_timeouts` every member gets the
/// same election timeout and every message the same delay (the draws that would differ are
/// still made, so the rest of the seed's plan is the same): the members' election timers then
/// run in step and split every vote, until the channel's split-vote breaker
/// (`net/replication/src/elect.rs`) ends it.
pub async fn run_seed(seed: u64, ops: usize, equal_timeouts: bool) -> Result<Summary, String> {
    let (root, plan, cluster) = build(seed, ops, equal_timeouts)?;
    run_built(root, plan, cluster).await
}

/// The members, stores and plan of seed `seed` (see [`run_seed`]).
fn build(
    seed: u64,
    ops: usize,
    equal_timeouts: bool,
) -> Result<(tempfile::TempDir, Plan, Cluster), String> {
    let root = store_dir_root();
    let mut rng = Rng::new(seed);
    let plan = Plan {
        ops,
        move_replica: rng.chance(35),
        snapshots: rng.chance(30),
        cut_cutover: false,
    };
    let plan = Plan {
        cut_cutover: plan.move_replica && Rng::new(seed ^ 0xC07_C07).below(2) == 0,
        ..plan
    };
    let count = if plan.move_replica { 4 } else { 3 };
    let blobs_needed = ops + 1;
    let blob_bytes: Vec<Vec<u8>> = (0..blobs_needed)
        .map(|k| format!("simulated blob {k}").into_bytes())
        .collect();
    let mut rank: Vec<u64> = (0..count as u64).collect();
    for k in (1..rank.len()).rev() {
        let j = rng.below(k as u64 + 1) as usize;
        rank.swap(k, j);
    }
    let mut nodes = Vec::new();
    let mut blobs = Vec::new();
    for (i, rank) in rank.iter().enumerate() {
        let identity = Identity::from_seed([i as u8 + 1; 32]);
        let addr = NodeAddr {
            node_id: identity.node_id(),
            host_port: format!("sim-{i}.invalid:1"),
        };
        let dir = root.path().join(format!("m{i}"));
        let store = open_store(&dir)?;
        blobs = blob_bytes
            .iter()
            .map(|b| store.store(b).map(|s| s.blob_ref))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("store blobs: {e}"))?;
        // Election timeouts drawn from the seed; openraft draws in [min, max), so a 1 ms
        // range leaves it nothing to choose. (openraft 0.9 draws a member's timeout once, when
        // it starts, and checks it on a tick; with `single-term-leader` two candidates of one
        // term both lose, and members whose timeouts lie within a message delay of each other
        // split term after term: seeds 735, 5470 and 6014 did forever, timeouts 566/567/572
        // ms, before the split-vote breaker.) So timeouts are spaced further apart than two
        // message delays (at most 79 ms each), in an order drawn from the seed; with
        // `equal_timeouts` they are all the same.
        let spaced = 300 + TIMEOUT_SPACING_MS * rank + rng.below(20);
        let min = if equal_timeouts { 300 } else { spaced };
        let config = ReplicationConfig {
            heartbeat: Duration::from_millis(50),
            election_timeout: (Duration::from_millis(min), Duration::from_millis(min + 1)),
            snapshot_every: if plan.snapshots {
                4 + rng.below(4)
            } else {
                5000
            },
            keep_after_snapshot: if plan.snapshots { rng.below(3) } else { 1000 },
            learner_catch_up: Duration::from_secs(5),
            quorum_durable: false,
            prefetch_timeout: Duration::from_secs(5),
        };
        nodes.push(Node {
            identity,
            addr,
            dir,
            config,
            store: Some(Arc::new(store)),
            old_store: None,
            started: false,
        });
    }
    let world = World::new(
        seed,
        CHANNEL,
        nodes.iter().map(|n| n.identity.node_id()).collect(),
    );
    let cluster = Cluster {
        seed,
        rng,
        world,
        nodes,
        blobs,
        founders: vec![0, 1, 2],
        target: vec![0, 1, 2],
        obs: Arc::new(Mutex::new(Observations::default())),
        attempts: Vec::new(),
        pinned: BTreeSet::new(),
        next_blob: 1,
        summary: Summary {
            moved: plan.move_replica,
            snapshots: plan.snapshots,
            ..Summary::default()
        },
        forged_seq: 0,
        unguarded_move: std::env::var_os("NET_MESH_SIM_UNGUARDED_MOVE").is_some(),
        cut_cutover: plan.cut_cutover,
        in_step: equal_timeouts,
    };
    Ok((root, plan, cluster))
}

/// Seed `seed`'s three founders with equal election timeouts and equal message delays
/// ([`run_seed`]'s `equal_timeouts`), no faults: once they agree on a leader it crashes, and
/// this returns the virtual time until the two survivors agree on a new one (`Err` when they
/// have not within `within`). Their timers run in step, so every election they start on
/// their own splits.
pub async fn leader_lost_in_step(seed: u64, within: Duration) -> Result<Duration, String> {
    let (root, _, mut cluster) = build(seed, 0, true)?;
    cluster.start_founders().await?;
    let result = async {
        let leader = cluster
            .wait_leader(Duration::from_secs(30))
            .await
            .ok_or("the founders elected no first leader")?;
        let term = cluster
            .world
            .slot(leader)
            .ok_or("leader gone")?
            .channel
            .status()
            .term;
        cluster.crash(leader).await;
        let lost = Instant::now();
        loop {
            let views: Vec<_> = cluster
                .live()
                .into_iter()
                .filter_map(|i| cluster.world.slot(i).map(|s| s.channel.status()))
                .collect();
            let agreed = views.len() == 2
                && views.iter().any(|v| v.is_leader && v.term > term)
                && views
                    .iter()
                    .all(|v| v.term > term && v.leader == views[0].leader);
            if agreed {
                return Ok(lost.elapsed());
            }
            if lost.elapsed() > within {
                return Err(format!(
                    "no new leader {within:?} after the leader crashed; terms now {:?}",
                    views.iter().map(|v| v.term).collect::<Vec<_>>()
                ));
            }
            sleep(Duration::from_millis(20)).await;
        }
    }
    .await;
    cluster.stop_all().await;
    drop(root);
    result
}

async fn run_built(
    root: tempfile::TempDir,
    plan: Plan,
    mut cluster: Cluster,
) -> Result<Summary, String> {
    let started = Instant::now();
    let sampler = cluster.spawn_sampler();
    let result = cluster.run(&plan).await;
    sampler.abort();
    cluster.summary.virtual_time = started.elapsed();
    let result = match result {
        Ok(()) => cluster.check().await,
        Err(e) => {
            // What the run already saw broken says more than the stall it led to.
            let obs = cluster.obs.lock().unwrap();
            let mut lines = obs.violations.clone();
            if obs.max_term >= FORGED_TERM {
                lines.push(format!(
                    "a member reached term {}: a forged message was obeyed",
                    obs.max_term
                ));
            }
            lines.push(e);
            Err(lines.join("\n"))
        }
    };
    cluster.stop_all().await;
    drop(root);
    result.map(|()| cluster.summary.clone())
}

impl Cluster {
    fn faults(&mut self) -> Faults {
        let rng = &mut self.rng;
        let faults = Faults {
            drop_pct: rng.below(25),
            duplicate_pct: rng.below(15),
            lose_reply_pct: rng.below(15),
            max_delay_ms: rng.below(80),
        };
        // In step: no message lost, every one takes the same time, so a heartbeat reaches
        // every member at once and their election timers run in step.
        if self.in_step {
            Faults::default()
        } else {
            faults
        }
    }

    /// Samples every running member's view every 5 ms of virtual time (leaders per term, the
    /// highest term).
    fn spawn_sampler(&self) -> tokio::task::JoinHandle<()> {
        let world = self.world.clone();
        let obs = self.obs.clone();
        tokio::spawn(async move {
            loop {
                sample(&world, &obs);
                sleep(Duration::from_millis(5)).await;
            }
        })
    }

    fn sample(&self) {
        sample(&self.world, &self.obs);
    }

    /// Starts the founders, each creating the group of all of them.
    async fn start_founders(&mut self) -> Result<(), String> {
        let founders: Vec<NodeAddr> = self
            .founders
            .iter()
            .map(|i| self.nodes[*i].addr.clone())
            .collect();
        for i in self.founders.clone() {
            self.start(i, Some(&founders), true).await?;
        }
        Ok(())
    }

    async fn run(&mut self, plan: &Plan) -> Result<(), String> {
        self.start_founders().await?;
        let faults = self.faults();
        self.world.set_faults(faults);
        let move_at = plan.ops / 2;
        for op in 0..plan.ops {
            if plan.move_replica && op == move_at {
                self.replica_move(8).await?;
            }
            for _ in 0..self.rng.below(3) {
                self.random_event().await?;
            }
            self.client_op().await?;
            self.sample();
        }
        // Heal: no partitions, no message faults, every member up (the removed one too: its
        // messages must be refused).
        self.world.heal();
        self.world.set_faults(Faults::default());
        for i in 0..self.nodes.len() {
            if self.nodes[i].started && self.world.slot(i).is_none() {
                self.restart(i).await?;
            }
        }
        if plan.move_replica && self.target.contains(&3) && !self.moved() {
            self.replica_move(40).await?;
            if !self.moved() {
                return Err("the replica move did not complete after healing".into());
            }
        }
        self.converge().await
    }

    /// Starts member `i` (creating the group with `members`, joining it, or opening it).
    async fn start(
        &mut self,
        i: usize,
        members: Option<&[NodeAddr]>,
        create: bool,
    ) -> Result<(), String> {
        let node = &mut self.nodes[i];
        let store = match &node.store {
            Some(s) => s.clone(),
            None => {
                let s = Arc::new(open_store(&node.dir)?);
                node.store = Some(s.clone());
                s
            }
        };
        let replication = Replication::new();
        let endpoint = Endpoint::new(
            node.identity.clone(),
            Router::new(),
            net_mesh_node::node_config(),
        );
        let network = SimNetwork {
            world: self.world.clone(),
            from: i,
            incarnation: self.world.next_incarnation(i),
        };
        let channel = match (members, create) {
            (Some(m), true) => {
                ReplicatedChannel::create_with_network(
                    &replication,
                    store,
                    CHANNEL,
                    m,
                    endpoint,
                    &node.config,
                    network,
                )
                .await
            }
            (Some(m), false) => {
                ReplicatedChannel::join_with_network(
                    &replication,
                    store,
                    CHANNEL,
                    m,
                    endpoint,
                    &node.config,
                    network,
                )
                .await
            }
            (None, _) => {
                ReplicatedChannel::open_with_network(
                    &replication,
                    store,
                    CHANNEL,
                    endpoint,
                    &node.config,
                    network,
                )
                .await
            }
        }
        .map_err(|e| format!("start member {i}: {e}"))?;
        node.started = true;
        self.world.up(i, replication, Arc::new(channel));
        Ok(())
    }

    /// Crashes member `i`: its network is cut, its group stopped, its store handle dropped
    /// (what it wrote stays on disk).
    async fn crash(&mut self, i: usize) {
        if trace() {
            eprintln!("event: crash m{i}");
        }
        let Some(slot) = self.world.down(i) else {
            return;
        };
        self.summary.crashes += 1;
        let _ = slot.channel.shutdown().await;
        drop(slot);
        let node = &mut self.nodes[i];
        node.old_store = node.store.take().map(|s| Arc::downgrade(&s));
    }

    /// Restarts member `i` from its store on disk (`open`, or `join` again if it never got
    /// the group's state).
    async fn restart(&mut self, i: usize) -> Result<(), String> {
        if trace() {
            eprintln!("event: restart m{i}");
        }
        if let Some(old) = self.nodes[i].old_store.take() {
            let mut waited = 0;
            while old.strong_count() > 0 {
                waited += 1;
                if waited > 20_000 {
                    return Err(format!("member {i}'s store is still held after its crash"));
                }
                sleep(Duration::from_millis(1)).await;
            }
        }
        let members: Vec<NodeAddr> = self
            .founders
            .iter()
            .map(|j| self.nodes[*j].addr.clone())
            .collect();
        // `join` opens the group when the store holds its state, else waits to be added.
        let founder = self.founders.contains(&i);
        if founder {
            self.start(i, None, false).await
        } else {
            self.start(i, Some(&members), false).await
        }
    }

    async fn stop_all(&mut self) {
        for i in 0..self.nodes.len() {
            if let Some(slot) = self.world.down(i) {
                let _ = slot.channel.shutdown().await;
            }
        }
    }

    fn live(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.world.slot(*i).is_some())
            .collect()
    }

    fn down(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].started && self.world.slot(*i).is_none())
            .collect()
    }

    fn pick(&mut self, from: &[usize]) -> Option<usize> {
        if from.is_empty() {
            return None;
        }
        Some(from[self.rng.below(from.len() as u64) as usize])
    }

    /// The running member that is leader of the highest term, if any.
    fn leader(&self) -> Option<usize> {
        let mut best: Option<(u64, usize)> = None;
        for i in self.live() {
            let s = self.world.slot(i)?.channel.status();
            if s.is_leader && best.is_none_or(|(t, _)| s.term > t) {
                best = Some((s.term, i));
            }
        }
        best.map(|(_, i)| i)
    }

    async fn wait_leader(&self, within: Duration) -> Option<usize> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(l) = self.leader() {
                return Some(l);
            }
            if Instant::now() > deadline {
                return None;
            }
            sleep(Duration::from_millis(20)).await;
        }
    }

    /// One fault, chosen by the seed.
    async fn random_event(&mut self) -> Result<(), String> {
        let n = self.nodes.len();
        match self.rng.below(100) {
            0..20 => {
                // Isolate one member, or split the members in two sides.
                let started: Vec<usize> = (0..n).filter(|i| self.nodes[*i].started).collect();
                let mut side = vec![0u8; n];
                if self.rng.chance(50) {
                    if let Some(i) = self.pick(&started) {
                        side[i] = 1;
                    }
                } else {
                    for s in side.iter_mut() {
                        *s = self.rng.below(2) as u8;
                    }
                }
                if trace() {
                    eprintln!("event: sides {side:?}");
                }
                self.world.set_sides(side);
                self.summary.partitions += 1;
            }
            20..35 => {
                if trace() {
                    eprintln!("event: heal");
                }
                self.world.heal()
            }
            35..50 => {
                // At most two members down at once.
                if self.down().len() < 2 {
                    let live = self.live();
                    if let Some(i) = self.pick(&live) {
                        self.crash(i).await;
                    }
                }
            }
            50..65 => {
                let down = self.down();
                if let Some(i) = self.pick(&down) {
                    self.restart(i).await?;
                }
            }
            65..75 => {
                let faults = self.faults();
                self.world.set_faults(faults);
            }
            75..88 => {
                let live = self.live();
                if let Some(i) = self.pick(&live) {
                    self.forge(i).await;
                }
            }
            _ => {
                let ms = self.rng.below(1500);
                sleep(Duration::from_millis(ms)).await;
            }
        }
        Ok(())
    }

    /// One client operation on the leader: pin a new blob, or unpin one whose pin was
    /// acknowledged. Sometimes the leader crashes or is cut off while it is in flight.
    async fn client_op(&mut self) -> Result<(), String> {
        let Some(leader) = self.wait_leader(Duration::from_secs(3)).await else {
            return Ok(());
        };
        let Some(slot) = self.world.slot(leader) else {
            return Ok(());
        };
        let unpinnable: Vec<usize> = self.pinned.iter().copied().collect();
        let op = if !unpinnable.is_empty() && self.rng.chance(30) {
            let k = self.pick(&unpinnable).unwrap_or_default();
            self.pinned.remove(&k);
            Op::Unpin(k)
        } else if self.next_blob < self.blobs.len() {
            self.next_blob += 1;
            Op::Pin(self.next_blob - 1)
        } else {
            return Ok(());
        };
        let channel = slot.channel.clone();
        let blob = match op {
            Op::Pin(k) | Op::Unpin(k) => self.blobs[k].clone(),
        };
        let task = tokio::spawn(async move {
            match op {
                Op::Pin(k) => channel.propose_pin(&blob, &check::pin_name(k)).await,
                Op::Unpin(_) => {
                    channel
                        .propose_unpin(&ReplicatedChannel::blob_id(&blob))
                        .await
                }
            }
        });
        if self.rng.chance(15) {
            sleep(Duration::from_millis(self.rng.below(40))).await;
            if self.rng.chance(50) {
                self.crash(leader).await;
            } else {
                let mut side = vec![0u8; self.nodes.len()];
                side[leader] = 1;
                self.world.set_sides(side);
                self.summary.partitions += 1;
            }
        }
        let outcome = match tokio::time::timeout(Duration::from_secs(3), task).await {
            Ok(Ok(Ok(index))) => Outcome::Acked(index),
            _ => Outcome::Unknown,
        };
        if let (Op::Pin(k), Outcome::Acked(_)) = (op, outcome) {
            self.pinned.insert(k);
        }
        match outcome {
            Outcome::Acked(_) => self.summary.acked += 1,
            Outcome::Unknown => self.summary.unknown += 1,
        }
        self.attempts.push(Attempt { op, outcome });
        Ok(())
    }

    /// Whether the group's voters are the target (as the leader sees it, with no change in
    /// flight).
    fn moved(&self) -> bool {
        let Some(l) = self.leader() else { return false };
        let Some(slot) = self.world.slot(l) else {
            return false;
        };
        let status = slot.channel.status();
        let target: BTreeSet<[u8; 32]> = self
            .target
            .iter()
            .map(|i| *self.nodes[*i].addr.node_id.as_bytes())
            .collect();
        let members: BTreeSet<[u8; 32]> = status
            .members
            .iter()
            .map(|m| *m.addr.node_id.as_bytes())
            .collect();
        members == target
    }

    /// Replaces one of the first three voters with member 3: member 3 joins, the leader adds
    /// it as a learner, then makes the target the voters. Retried on the current leader
    /// (faults go on meanwhile) up to `attempts` times.
    async fn replica_move(&mut self, attempts: usize) -> Result<(), String> {
        if !self.nodes[3].started {
            let removed = self.rng.below(3) as usize;
            self.target = vec![0, 1, 2, 3];
            self.target.retain(|i| *i != removed);
            let members: Vec<NodeAddr> = self
                .founders
                .iter()
                .map(|j| self.nodes[*j].addr.clone())
                .collect();
            self.start(3, Some(&members), false).await?;
        }
        let learner = self.nodes[3].addr.clone();
        let voters: Vec<NodeAddr> = self
            .target
            .iter()
            .map(|i| self.nodes[*i].addr.clone())
            .collect();
        for _ in 0..attempts {
            if self.moved() {
                return Ok(());
            }
            let Some(l) = self.wait_leader(Duration::from_secs(3)).await else {
                continue;
            };
            let Some(slot) = self.world.slot(l) else {
                continue;
            };
            let guarded = !self.unguarded_move;
            let cut = self.cut_cutover;
            let step = async {
                let added = slot
                    .channel
                    .add_learner(&learner)
                    .await
                    .map_err(|e| e.to_string())?;
                // Every member must hold the entry that adds the new node before it may
                // become a voter: a voter that missed it refuses the new node's calls (it is
                // no member in that voter's membership), so once the new node leads, that
                // voter never catches up.
                while guarded && !all_hold(&slot.channel, added)? {
                    sleep(Duration::from_millis(20)).await;
                }
                let before = slot.channel.status().last_log_index;
                let change = slot.channel.change_membership(&voters);
                if !cut {
                    return change.await.map(|_| false).map_err(|e| e.to_string());
                }
                // Cut off once the joint entry is appended: the final entry is never proposed
                // by this call (its future is dropped).
                let appended = async {
                    while slot.channel.status().last_log_index <= before {
                        sleep(Duration::from_millis(1)).await;
                    }
                };
                tokio::select! {
                    done = change => done.map(|_| false).map_err(|e| e.to_string()),
                    () = appended => Ok(true),
                }
            };
            match tokio::time::timeout(Duration::from_secs(10), step).await {
                Ok(Ok(true)) => {
                    // Left to the group: a leader holding the joint membership finishes it;
                    // proposed again below only if none did in time (the entry lost with a
                    // leader that crashed, or no leader).
                    self.cut_cutover = false;
                    self.summary.joint_cut = true;
                    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
                    while !self.moved() && tokio::time::Instant::now() < deadline {
                        sleep(Duration::from_millis(100)).await;
                    }
                    if self.moved() {
                        self.summary.joint_finished_by_leader = true;
                    }
                }
                Ok(Ok(false)) => {}
                _ => sleep(Duration::from_millis(300)).await,
            }
        }
        Ok(())
    }

    /// Sends member `i` forged messages: an append and a vote from a node that is no
    /// member (with a term no member will reach), and an append and a vote from a member
    /// carrying a term older than `i`'s. Each must be refused (non-member) or rejected
    /// (stale term); `check` then finds none of their entries or terms anywhere.
    async fn forge(&mut self, i: usize) {
        let Some(slot) = self.world.slot(i) else {
            return;
        };
        self.forged_seq += 1;
        self.summary.forged += 1;
        let status = slot.channel.status();
        let others: Vec<NodeAddr> = status
            .members
            .iter()
            .map(|m| m.addr.clone())
            .filter(|a| a.node_id != self.world.node_id(i))
            .collect();
        let member = others
            .get(self.rng.below(others.len().max(1) as u64) as usize)
            .map(|a| a.node_id);
        let verdicts = check::forge(
            &slot.replication,
            self.world.node_id(i),
            &self.blobs[0],
            self.forged_seq,
            status.term,
            member,
        )
        .await;
        let mut obs = self.obs.lock().unwrap();
        for v in verdicts {
            obs.violations.push(format!("member {i}: {v}"));
        }
    }

    /// Waits (virtual time) until the target members agree: one leader, every member's
    /// applied index equal to its last log index and to each other's.
    async fn converge(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            self.sample();
            let mut views = BTreeMap::new();
            for i in &self.target {
                if let Some(slot) = self.world.slot(*i) {
                    let s = slot.channel.status();
                    views.insert(*i, (s.is_leader, s.applied, s.last_log_index, s.term));
                }
            }
            let leaders = views.values().filter(|v| v.0).count();
            let applied: BTreeSet<_> = views.values().map(|v| (v.1, v.2)).collect();
            let same = applied.len() == 1 && applied.iter().all(|(a, l)| a == l && a.is_some());
            if views.len() == self.target.len() && leaders == 1 && same {
                return Ok(());
            }
            if Instant::now() > deadline {
                let mut detail = String::new();
                for i in 0..self.nodes.len() {
                    if let Some(slot) = self.world.slot(i) {
                        let s = slot.channel.status();
                        let members: Vec<usize> = s
                            .members
                            .iter()
                            .filter_map(|m| {
                                (0..self.nodes.len())
                                    .find(|j| self.nodes[*j].addr.node_id == m.addr.node_id)
                            })
                            .collect();
                        detail.push_str(&format!(
                            "\n  member {i}: leader {}, term {}, applied {:?}, last log {:?}, membership {members:?}, refused {} calls",
                            s.is_leader,
                            s.term,
                            s.applied,
                            s.last_log_index,
                            slot.replication.peer_auth_rejections()
                        ));
                    }
                }
                return Err(format!(
                    "members {:?} did not converge after healing:{detail}",
                    self.target
                ));
            }
            sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Whether `NET_MESH_SIM_TRACE` asks for a trace of every sample and event.
pub fn trace() -> bool {
    std::env::var_os("NET_MESH_SIM_TRACE").is_some()
}

/// Whether every member (voters and learners) holds log index `index`, as the leader
/// `channel` sees it; an error once it is no longer the leader.
fn all_hold(channel: &ReplicatedChannel, index: u64) -> Result<bool, String> {
    let status = channel.status();
    if !status.is_leader {
        return Err("lost the lead".to_string());
    }
    Ok(status
        .members
        .iter()
        .all(|m| m.matched.is_some_and(|i| i >= index)))
}

/// Records what every running member believes now: a leader of its term (itself, or the
/// leader its committed vote names) and its term.
fn sample(world: &World, obs: &Mutex<Observations>) {
    let mut seen = Vec::new();
    let now = tokio::time::Instant::now();
    for (i, slot) in world.slots().into_iter().enumerate() {
        let Some(slot) = slot else { continue };
        let s = slot.channel.status();
        let own = raft_id(&world.node_id(i));
        if s.is_leader {
            seen.push((s.term, Some(own), format!("member {i} as leader")));
        }
        if let Some(l) = &s.leader {
            seen.push((
                s.term,
                Some(raft_id(&l.node_id)),
                format!("member {i}'s vote"),
            ));
        }
        seen.push((s.term, None, String::new()));
        if trace() {
            eprintln!(
                "{:>10.3}s m{i}: term {} leader? {} sees {:?} applied {:?} last {:?}",
                now.duration_since(world.epoch()).as_secs_f64(),
                s.term,
                s.is_leader,
                s.leader
                    .as_ref()
                    .and_then(|l| world.index_of(raft_id(&l.node_id))),
                s.applied,
                s.last_log_index
            );
        }
    }
    let mut obs = obs.lock().unwrap();
    for (term, leader, how) in seen {
        obs.max_term = obs.max_term.max(term);
        if let Some(leader) = leader {
            obs.leaders
                .entry(term)
                .or_default()
                .entry(leader)
                .or_insert((now, how));
        }
    }
}
