//! The simulated network: openraft's `RaftNetworkFactory` for every member, delivering each
//! message in-process through the callee's [`Replication::deliver_append`] (and vote,
//! snapshot): the same admission check and handling as the `raft/v1/*` nRPC handlers, with
//! the sender's node id in place of the session's authenticated peer.
//!
//! Every message's fate (delay, drop, duplicate, lost reply) is a hash of the seed, the link
//! and the message's number on that link; partitions and liveness are read when the message
//! leaves and again when it (and its reply) arrives.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use net_mesh_replication::network::Reply;
use net_mesh_replication::{Member, ReplicatedChannel, Replication, TypeConfig};
use net_mesh_rpc::{NodeId, RpcError};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, SnapshotMismatch,
    Unreachable,
};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{RaftNetwork, RaftNetworkFactory};

use super::rng::mix;

/// Message faults, in percent of messages (and the largest one-way delay).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    pub drop_pct: u64,
    pub duplicate_pct: u64,
    pub lose_reply_pct: u64,
    pub max_delay_ms: u64,
}

/// A running member as the network sees it.
#[derive(Clone)]
pub struct Slot {
    pub replication: Replication,
    pub channel: Arc<ReplicatedChannel>,
    /// Which run of this member (bumped at every restart): messages sent by an earlier run
    /// are not delivered once it crashed (its duplicates already on the wire are).
    pub incarnation: u64,
}

#[derive(Default)]
struct State {
    faults: Faults,
    /// Messages pass only between members on the same side.
    side: Vec<u8>,
    slots: Vec<Option<Slot>>,
    incarnation: Vec<u64>,
    link_seq: HashMap<(usize, usize), u64>,
    counts: Counts,
}

/// What the network did, for the seed's summary.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    pub sent: u64,
    /// Dropped by the seed's fault rate.
    pub dropped: u64,
    /// Not delivered because of a partition or a member down.
    pub cut: u64,
    pub duplicated: u64,
    pub replies_lost: u64,
    pub refused: u64,
}

/// The simulated network of one seed.
pub struct World {
    seed: u64,
    channel: String,
    ids: Vec<NodeId>,
    raft_ids: Vec<u64>,
    state: Mutex<State>,
    epoch: tokio::time::Instant,
}

struct Fate {
    delay: Duration,
    reply_delay: Duration,
    drop: bool,
    lose_reply: bool,
    duplicate_after: Option<Duration>,
}

impl World {
    pub fn new(seed: u64, channel: &str, ids: Vec<NodeId>) -> Arc<World> {
        let raft_ids = ids.iter().map(net_mesh_replication::raft_id).collect();
        let n = ids.len();
        Arc::new(World {
            seed,
            channel: channel.to_string(),
            ids,
            raft_ids,
            state: Mutex::new(State {
                side: vec![0; n],
                slots: vec![None; n],
                incarnation: vec![0; n],
                ..State::default()
            }),
            epoch: tokio::time::Instant::now(),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// When the seed started (virtual time).
    pub fn epoch(&self) -> tokio::time::Instant {
        self.epoch
    }

    pub fn node_id(&self, i: usize) -> NodeId {
        self.ids[i]
    }

    pub fn index_of(&self, raft_id: u64) -> Option<usize> {
        self.raft_ids.iter().position(|r| *r == raft_id)
    }

    pub fn set_faults(&self, faults: Faults) {
        self.state().faults = faults;
    }

    pub fn faults(&self) -> Faults {
        self.state().faults
    }

    pub fn set_sides(&self, side: Vec<u8>) {
        self.state().side = side;
    }

    pub fn sides(&self) -> Vec<u8> {
        self.state().side.clone()
    }

    pub fn heal(&self) {
        let mut s = self.state();
        let n = s.side.len();
        s.side = vec![0; n];
    }

    pub fn counts(&self) -> Counts {
        self.state().counts
    }

    /// Member `i` runs again (a new incarnation); returns the incarnation its network uses.
    pub fn up(&self, i: usize, replication: Replication, channel: Arc<ReplicatedChannel>) {
        let mut s = self.state();
        s.incarnation[i] += 1;
        let incarnation = s.incarnation[i];
        s.slots[i] = Some(Slot {
            replication,
            channel,
            incarnation,
        });
    }

    /// The incarnation the next [`World::up`] of member `i` will have.
    pub fn next_incarnation(&self, i: usize) -> u64 {
        self.state().incarnation[i] + 1
    }

    /// Member `i` is down: nothing is delivered to it, and what it sent is no longer delivered.
    pub fn down(&self, i: usize) -> Option<Slot> {
        self.state().slots[i].take()
    }

    pub fn slot(&self, i: usize) -> Option<Slot> {
        self.state().slots[i].clone()
    }

    pub fn slots(&self) -> Vec<Option<Slot>> {
        self.state().slots.clone()
    }

    pub fn fate_of_next(&self, from: usize, to: usize) -> (Faults, u64) {
        let mut s = self.state();
        s.counts.sent += 1;
        let seq = s.link_seq.entry((from, to)).or_insert(0);
        *seq += 1;
        let seq = *seq;
        (s.faults, seq)
    }

    fn fate(&self, from: usize, to: usize) -> Fate {
        let (faults, seq) = self.fate_of_next(from, to);
        let h = mix(self.seed ^ mix(((from as u64) << 32) | to as u64) ^ mix(seq ^ 0xA5A5));
        let h2 = mix(h);
        let pct = |x: u64| x % 100;
        // Every message takes at least 1 ms each way: a peer that retries at once (a refused
        // call) then spins in virtual time, which goes on, not at one instant forever.
        let ms = |x: u64| Duration::from_millis(1 + x % (faults.max_delay_ms + 1));
        Fate {
            delay: ms(h),
            reply_delay: ms(h2 >> 7),
            drop: pct(h >> 20) < faults.drop_pct,
            lose_reply: pct(h >> 40) < faults.lose_reply_pct,
            duplicate_after: (pct(h2 >> 30) < faults.duplicate_pct)
                .then(|| ms(h2 >> 50) + Duration::from_millis(h2 % 200)),
        }
    }

    /// Where a message from `from` (run `incarnation`, `None`: a packet already on the wire)
    /// to `to` goes now: the callee's replication, if both are up, the sender still the same
    /// run, and nothing partitions them.
    fn route(&self, from: usize, incarnation: Option<u64>, to: usize) -> Option<Replication> {
        let s = self.state();
        if s.side.get(from) != s.side.get(to) {
            return None;
        }
        if let Some(inc) = incarnation {
            match s.slots.get(from).and_then(Option::as_ref) {
                Some(slot) if slot.incarnation == inc => {}
                _ => return None,
            }
        }
        s.slots
            .get(to)
            .and_then(Option::as_ref)
            .map(|slot| slot.replication.clone())
    }

    fn count(&self, f: impl FnOnce(&mut Counts)) {
        f(&mut self.state().counts);
    }
}

/// The network factory of member `from` (one per run of it).
#[derive(Clone)]
pub struct SimNetwork {
    pub world: Arc<World>,
    pub from: usize,
    pub incarnation: u64,
}

impl RaftNetworkFactory<TypeConfig> for SimNetwork {
    type Network = SimClient;

    async fn new_client(&mut self, target: u64, _node: &Member) -> SimClient {
        SimClient {
            world: self.world.clone(),
            from: self.from,
            incarnation: self.incarnation,
            target,
            to: self.world.index_of(target),
        }
    }
}

/// Member `from`'s link to `target`.
pub struct SimClient {
    world: Arc<World>,
    from: usize,
    incarnation: u64,
    target: u64,
    to: Option<usize>,
}

#[derive(Clone)]
enum Msg {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<u64>),
    Snapshot(InstallSnapshotRequest<TypeConfig>),
}

enum Answer {
    Append(AppendEntriesResponse<u64>),
    Vote(VoteResponse<u64>),
    Snapshot(InstallSnapshotResponse<u64>),
}

enum Failed {
    Unreachable(String),
    Refused(String),
    Mismatch(SnapshotMismatch),
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct SimError(String);

fn answer<T>(r: Result<Reply<T>, RpcError>, wrap: fn(T) -> Answer) -> Result<Answer, Failed> {
    match r {
        Ok(Reply::Ok(t)) => Ok(wrap(t)),
        Ok(Reply::Stopped(why)) => Err(Failed::Unreachable(why)),
        Ok(Reply::SnapshotMismatch(m)) => Err(Failed::Mismatch(m)),
        Err(e) => Err(Failed::Refused(e.to_string())),
    }
}

async fn deliver(
    world: &World,
    to: &Replication,
    from: &NodeId,
    msg: Msg,
) -> Result<Answer, Failed> {
    let channel = world.channel.as_str();
    let r = match msg {
        Msg::Append(r) => answer(to.deliver_append(from, channel, r).await, Answer::Append),
        Msg::Vote(r) => answer(to.deliver_vote(from, channel, r).await, Answer::Vote),
        Msg::Snapshot(r) => answer(
            to.deliver_snapshot(from, channel, r).await,
            Answer::Snapshot,
        ),
    };
    if matches!(r, Err(Failed::Refused(_))) {
        world.count(|c| c.refused += 1);
    }
    r
}

impl SimClient {
    async fn transmit(&mut self, msg: Msg, ttl: Duration) -> Result<Answer, Failed> {
        let Some(to) = self.to else {
            return Err(Failed::Refused(format!("no member {:#x}", self.target)));
        };
        let world = self.world.clone();
        let from = self.from;
        let from_id = world.node_id(from);
        let fate = world.fate(from, to);
        let lost = || Failed::Unreachable("no answer".into());
        if let Some(later) = fate.duplicate_after {
            world.count(|c| c.duplicated += 1);
            let copy = msg.clone();
            let world = world.clone();
            tokio::spawn(async move {
                tokio::time::sleep(later).await;
                if let Some(callee) = world.route(from, None, to) {
                    let _ = deliver(&world, &callee, &from_id, copy).await;
                }
            });
        }
        tokio::time::sleep(fate.delay).await;
        let callee = if fate.drop {
            world.count(|c| c.dropped += 1);
            None
        } else {
            let callee = world.route(from, Some(self.incarnation), to);
            if callee.is_none() {
                world.count(|c| c.cut += 1);
            }
            callee
        };
        let Some(callee) = callee else {
            tokio::time::sleep(ttl).await;
            return Err(lost());
        };
        let result = deliver(&world, &callee, &from_id, msg).await;
        tokio::time::sleep(fate.reply_delay).await;
        if fate.lose_reply || world.route(to, None, from).is_none() {
            world.count(|c| c.replies_lost += 1);
            tokio::time::sleep(ttl.saturating_sub(fate.delay + fate.reply_delay)).await;
            return Err(lost());
        }
        result
    }
}

fn ttl(option: &RPCOption) -> Duration {
    option.hard_ttl().min(Duration::from_millis(500))
}

fn rpc_error<E: std::error::Error>(f: Failed) -> RPCError<u64, Member, RaftError<u64, E>> {
    match f {
        Failed::Unreachable(why) => RPCError::Unreachable(Unreachable::new(&SimError(why))),
        Failed::Refused(why) => RPCError::Network(NetworkError::new(&SimError(why))),
        Failed::Mismatch(m) => RPCError::Network(NetworkError::new(&SimError(m.to_string()))),
    }
}

fn wrong_answer<E: std::error::Error>() -> RPCError<u64, Member, RaftError<u64, E>> {
    RPCError::Network(NetworkError::new(&SimError("wrong answer kind".into())))
}

impl RaftNetwork<TypeConfig> for SimClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, Member, RaftError<u64>>> {
        match self.transmit(Msg::Append(rpc), ttl(&option)).await {
            Ok(Answer::Append(r)) => Ok(r),
            Ok(_) => Err(wrong_answer()),
            Err(f) => Err(rpc_error(f)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, Member, RaftError<u64, InstallSnapshotError>>,
    > {
        match self.transmit(Msg::Snapshot(rpc), ttl(&option)).await {
            Ok(Answer::Snapshot(r)) => Ok(r),
            Ok(_) => Err(wrong_answer()),
            Err(Failed::Mismatch(m)) => Err(RPCError::RemoteError(RemoteError::new(
                self.target,
                RaftError::APIError(InstallSnapshotError::SnapshotMismatch(m)),
            ))),
            Err(f) => Err(rpc_error(f)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, Member, RaftError<u64>>> {
        match self.transmit(Msg::Vote(rpc), ttl(&option)).await {
            Ok(Answer::Vote(r)) => Ok(r),
            Ok(_) => Err(wrong_answer()),
            Err(f) => Err(rpc_error(f)),
        }
    }
}
