//! Members of a replicated channel for tests: a real store in a temp dir, a real nRPC endpoint
//! on 127.0.0.1 serving the storage node's methods (`net_mesh_node::Node`) and the replication
//! methods on one router (each behind its own authorization: the replication hook for
//! `raft/v1/*`, the node's allow list for the rest, where the members of [`PEER_SEEDS`] have
//! read), and helpers that wait (bounded) for a condition.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use net_mesh_engine::{OpenOptions, Store, StoreConfig};
use net_mesh_node::{Allow, Node, NodeConfig};
use net_mesh_replication::{
    ChannelStatus, ReplicatedChannel, Replication, ReplicationConfig, extension,
};
use net_mesh_rpc::rpc::{Denied, ResponseSink, Router, RpcContext, RpcServerStreamingHandler};
use net_mesh_rpc::{Endpoint, Identity, NodeAddr, PeerIdentity, RpcError};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub const CHANNEL: &str = "photos";
/// Upper bound for every wait (a bound on the test, not a timed assertion).
pub const WAIT: Duration = Duration::from_secs(60);

pub fn open_store(dir: &Path) -> Arc<Store> {
    open_store_with(dir, StoreConfig::default())
}

/// A store config whose blobs of more than a few 64 KiB chunks are trees several levels deep
/// (so fetching walks tree nodes, children first).
pub fn small_tree_config() -> StoreConfig {
    StoreConfig {
        chunking: net_mesh_engine::chunking::ChunkingStrategy::Fixed { size: 64 * 1024 },
        tree: net_mesh_engine::tree::TreePolicy {
            leaf_fanout: 4,
            internal_fanout: 3,
            manifest_max_refs: 2,
        },
        ..StoreConfig::default()
    }
}

/// Opens the store in `dir` as a member does, once.
pub fn try_open_store(
    dir: &Path,
    config: StoreConfig,
) -> Result<Store, net_mesh_engine::OpenError> {
    Store::open_with(
        dir,
        net_mesh_node::revoke::with_node_tables(OpenOptions::new(config).extension(extension())),
    )
}

pub fn open_store_with(dir: &Path, config: StoreConfig) -> Arc<Store> {
    let deadline = Instant::now() + WAIT;
    loop {
        match try_open_store(dir, config.clone()) {
            Ok(s) => return Arc::new(s),
            // A reopen right after shutdown may race the last task dropping the old handle.
            Err(e) if Instant::now() < deadline => {
                eprintln!("reopen {}: {e}; retrying", dir.display());
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("open {}: {e}", dir.display()),
        }
    }
}

pub fn config() -> ReplicationConfig {
    ReplicationConfig::default()
}

/// The identities (seeds of `Identity::from_seed([seed; 32])`) that members of these tests
/// have: each member's node allow list gives them read (so they may fetch objects).
pub const PEER_SEEDS: [u8; 5] = [1, 2, 3, 4, 5];

/// A member's `node/v1/objects` that can be made to lie: while `corrupt` is set, every object
/// it sends has its first byte flipped (and is counted in `served_corrupt`).
#[derive(Debug, Clone, Default)]
pub struct Liar {
    pub corrupt: Arc<AtomicBool>,
    pub served_corrupt: Arc<AtomicU64>,
}

/// The node protocol's `ObjectPart` as it travels (postcard encodes a byte vector and
/// `serde_bytes::ByteBuf` alike).
#[derive(Debug, Serialize)]
enum WirePart {
    Object {
        hash: [u8; 32],
        kind: u8,
        len: u32,
    },
    Piece(Vec<u8>),
    Missing {
        hash: [u8; 32],
        kind: u8,
        reason: String,
    },
}

struct LyingObjects {
    store: Arc<Store>,
    liar: Liar,
}

impl RpcServerStreamingHandler for LyingObjects {
    type Req = Vec<[u8; 32]>;
    type Resp = WirePart;

    async fn call(
        &self,
        _ctx: RpcContext,
        hashes: Vec<[u8; 32]>,
        mut sink: ResponseSink<WirePart>,
    ) -> Result<(), RpcError> {
        for hash in hashes {
            match self.store.read_object(&hash) {
                Ok(object) => {
                    let mut bytes = object.bytes.to_vec();
                    if self.liar.corrupt.load(Ordering::SeqCst) {
                        bytes[0] ^= 1;
                        self.liar.served_corrupt.fetch_add(1, Ordering::SeqCst);
                    }
                    sink.send(&WirePart::Object {
                        hash,
                        kind: object.kind as u8,
                        len: bytes.len() as u32,
                    })
                    .await?;
                    for piece in bytes.chunks(net_mesh_node::proto::MAX_PIECE) {
                        sink.send(&WirePart::Piece(piece.to_vec())).await?;
                    }
                }
                Err(e) => {
                    sink.send(&WirePart::Missing {
                        hash,
                        kind: 0,
                        reason: e.to_string(),
                    })
                    .await?
                }
            }
        }
        Ok(())
    }
}

/// One member: identity, store dir, and (while running) its endpoint and serve loop.
pub struct Member {
    pub identity: Identity,
    pub dir: PathBuf,
    pub addr: NodeAddr,
    pub replication: Replication,
    pub endpoint: Endpoint,
    pub store: Arc<Store>,
    /// Set when started with [`Member::start_lying`].
    pub liar: Option<Liar>,
    serving: Serving,
}

/// An endpoint serving on 127.0.0.1 until stopped.
pub struct Serving {
    endpoint: Endpoint,
    port: u16,
    /// None while paused.
    running: Option<(CancellationToken, tokio::task::JoinHandle<()>)>,
}

impl Serving {
    /// Serves `endpoint` on `port` (0: any free port; a port just freed is retried); gives
    /// the address it serves on.
    pub async fn start(endpoint: &Endpoint, port: u16) -> (Serving, NodeAddr) {
        let listener = bind(port).await;
        let local = listener.local_addr().unwrap();
        let addr = NodeAddr {
            node_id: endpoint.identity().node_id(),
            host_port: local.to_string(),
        };
        let serving = Serving {
            endpoint: endpoint.clone(),
            port: local.port(),
            running: Some(Self::run(endpoint, listener)),
        };
        (serving, addr)
    }

    fn run(
        endpoint: &Endpoint,
        listener: TcpListener,
    ) -> (CancellationToken, tokio::task::JoinHandle<()>) {
        let stop = CancellationToken::new();
        let endpoint = endpoint.clone();
        let stopped = stop.clone();
        let task = tokio::spawn(async move { endpoint.serve(listener, stopped).await });
        (stop, task)
    }

    /// Stops serving (sessions close); gives back the port it served on.
    pub async fn stop(mut self) -> u16 {
        self.pause().await;
        self.port
    }

    /// Stops accepting (the sessions it accepted close; nobody reaches the endpoint), keeping
    /// the port for [`Serving::resume`].
    pub async fn pause(&mut self) {
        if let Some((stop, task)) = self.running.take() {
            stop.cancel();
            let _ = task.await;
        }
    }

    /// Serves again on the same port after [`Serving::pause`].
    pub async fn resume(&mut self) {
        if self.running.is_none() {
            self.running = Some(Self::run(&self.endpoint, bind(self.port).await));
        }
    }
}

/// The node's allow list of a member: read for every identity of [`PEER_SEEDS`].
pub fn peer_allow(own: &Identity) -> Allow {
    let text: String = PEER_SEEDS
        .iter()
        .map(|s| format!("{} read\n", Identity::from_seed([*s; 32]).node_id()))
        .collect();
    Allow::parse(own.node_id(), &text).unwrap()
}

/// A member's limits: its node's (nRPC's among them) and its channels' object streams from
/// one member.
#[derive(Clone)]
pub struct Limits {
    pub node: NodeConfig,
    pub member_streams: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            node: NodeConfig::default(),
            member_streams: net_mesh_replication::MEMBER_STREAMS,
        }
    }
}

impl Member {
    /// Starts a member serving on `port` (0: any free port).
    pub async fn start(identity: Identity, dir: PathBuf, port: u16) -> Member {
        Member::start_with_limits(identity, dir, port, Limits::default()).await
    }

    /// [`Member::start`] whose endpoint runs with nRPC limits `rpc`.
    pub async fn start_with_rpc(
        identity: Identity,
        dir: PathBuf,
        port: u16,
        rpc: net_mesh_rpc::rpc::Config,
    ) -> Member {
        let node = NodeConfig {
            rpc,
            ..NodeConfig::default()
        };
        let limits = Limits {
            node,
            ..Limits::default()
        };
        Member::start_with_limits(identity, dir, port, limits).await
    }

    /// [`Member::start`] with `limits`.
    pub async fn start_with_limits(
        identity: Identity,
        dir: PathBuf,
        port: u16,
        limits: Limits,
    ) -> Member {
        Member::start_with(identity, dir, port, None, StoreConfig::default(), limits).await
    }

    /// [`Member::start`] with a store opened with `config`.
    pub async fn start_with_store(
        identity: Identity,
        dir: PathBuf,
        port: u16,
        config: StoreConfig,
    ) -> Member {
        Member::start_with(identity, dir, port, None, config, Limits::default()).await
    }

    /// [`Member::start`] with a `node/v1/objects` that lies while told to.
    pub async fn start_lying(identity: Identity, dir: PathBuf, port: u16) -> Member {
        Member::start_with(
            identity,
            dir,
            port,
            Some(Liar::default()),
            StoreConfig::default(),
            Limits::default(),
        )
        .await
    }

    async fn start_with(
        identity: Identity,
        dir: PathBuf,
        port: u16,
        liar: Option<Liar>,
        config: StoreConfig,
        limits: Limits,
    ) -> Member {
        let store = open_store_with(&dir, config);
        let replication = Replication::with_member_streams(limits.member_streams);
        let rpc = limits.node.rpc.clone();
        let node = Node::with_config(store.clone(), identity.node_id(), limits.node).unwrap();
        let allow = peer_allow(&identity);
        let mut router: Router = replication.routes(node.router(allow.clone()));
        if let Some(liar) = &liar {
            router = router.server_streaming(
                net_mesh_node::proto::Method::Objects.name(),
                LyingObjects {
                    store: store.clone(),
                    liar: liar.clone(),
                },
            );
        }
        let hook_replication = replication.clone();
        let router = router.authorize(
            move |peer: &PeerIdentity, method: &str, metadata: &[u8]| -> Result<(), Denied> {
                if let Some(verdict) = hook_replication.authorize_call(peer, method, metadata) {
                    return verdict;
                }
                allow
                    .authorize(
                        &peer.node_id(),
                        peer.public_key(),
                        method,
                        metadata,
                        net_mesh_node::call_token::now_unix_s(),
                    )
                    .map(|_| ())
                    .map_err(|r| Denied::new(r.to_string()))
            },
        );
        let endpoint = Endpoint::new(identity.clone(), router, rpc);
        let (serving, addr) = Serving::start(&endpoint, port).await;
        Member {
            identity,
            dir,
            addr,
            replication,
            endpoint,
            store,
            liar,
            serving,
        }
    }

    /// Stops serving (sessions close) and gives back what a restart needs.
    pub async fn stop(self) -> (Identity, PathBuf, u16) {
        let port = self.serving.stop().await;
        (self.identity, self.dir, port)
    }

    /// Stops serving (nobody reaches it), keeping its store and its channels.
    pub async fn pause(&mut self) {
        self.serving.pause().await;
    }

    /// Serves again on the same port after [`Member::pause`].
    pub async fn resume(&mut self) {
        self.serving.resume().await;
    }
}

async fn bind(port: u16) -> TcpListener {
    let deadline = Instant::now() + WAIT;
    loop {
        match TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await {
            Ok(l) => return l,
            Err(e) if Instant::now() < deadline => {
                eprintln!("bind {port}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("bind {port}: {e}"),
        }
    }
}

/// Panics unless the store in `dir` (its member stopped) opens again within 5 s: nothing of
/// the member still holds it. (Its last tasks may take a moment to drop their handles.)
pub async fn store_opens_again(dir: &Path) {
    let mut last = None;
    for _ in 0..50 {
        match try_open_store(dir, StoreConfig::default()) {
            Ok(_) => return,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the store stayed held after the member stopped: {last:?}");
}

/// Three members with fresh stores, each holding `blobs` (stored, so their objects exist).
pub async fn three_members(root: &Path) -> Vec<Member> {
    let mut members = Vec::new();
    for i in 0..3u8 {
        let identity = Identity::from_seed([i + 1; 32]);
        members.push(Member::start(identity, root.join(format!("m{i}")), 0).await);
    }
    members
}

/// [`three_members`] whose stores are opened with `config`.
pub async fn three_members_with(root: &Path, config: StoreConfig) -> Vec<Member> {
    let mut members = Vec::new();
    for i in 0..3u8 {
        let identity = Identity::from_seed([i + 1; 32]);
        members.push(
            Member::start_with_store(identity, root.join(format!("m{i}")), 0, config.clone()).await,
        );
    }
    members
}

/// [`three_members`] whose endpoints run with nRPC limits `rpc`.
pub async fn three_members_with_rpc(root: &Path, rpc: net_mesh_rpc::rpc::Config) -> Vec<Member> {
    let mut members = Vec::new();
    for i in 0..3u8 {
        let identity = Identity::from_seed([i + 1; 32]);
        members.push(
            Member::start_with_rpc(identity, root.join(format!("m{i}")), 0, rpc.clone()).await,
        );
    }
    members
}

/// [`three_members`] whose `node/v1/objects` can each be made to lie ([`Member::liar`]).
pub async fn three_lying_members(root: &Path) -> Vec<Member> {
    let mut members = Vec::new();
    for i in 0..3u8 {
        let identity = Identity::from_seed([i + 1; 32]);
        members.push(Member::start_lying(identity, root.join(format!("m{i}")), 0).await);
    }
    members
}

pub fn addrs(members: &[Member]) -> Vec<NodeAddr> {
    members.iter().map(|m| m.addr.clone()).collect()
}

pub async fn create_all(members: &[Member]) -> Vec<ReplicatedChannel> {
    create_all_with(members, &config()).await
}

/// A config whose leader proposes without making a pin's objects durable on a quorum first
/// (for tests of apply-time fetching: the followers then lack the objects when they apply).
pub fn without_prefetch() -> ReplicationConfig {
    ReplicationConfig {
        quorum_durable: false,
        ..ReplicationConfig::default()
    }
}

/// A config that snapshots every `every` applied entries and purges everything a snapshot
/// covers but `keep` entries.
pub fn snapshotting(every: u64, keep: u64) -> ReplicationConfig {
    ReplicationConfig {
        snapshot_every: every,
        keep_after_snapshot: keep,
        ..ReplicationConfig::default()
    }
}

pub async fn create_all_with(
    members: &[Member],
    config: &ReplicationConfig,
) -> Vec<ReplicatedChannel> {
    let all = addrs(members);
    let mut channels = Vec::new();
    for m in members {
        channels.push(
            ReplicatedChannel::create(
                &m.replication,
                m.store.clone(),
                CHANNEL,
                &all,
                m.endpoint.clone(),
                config,
            )
            .await
            .unwrap(),
        );
    }
    channels
}

/// Waits (bounded by [`WAIT`]) until `check` holds, polling.
pub async fn wait_until<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("gave up waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until one of `channels` is leader and the others agree on it; returns its position.
pub async fn wait_for_leader(channels: &[&ReplicatedChannel]) -> usize {
    wait_until("one agreed leader", || {
        let statuses: Vec<ChannelStatus> = channels.iter().map(|c| c.status()).collect();
        let leaders: Vec<usize> = statuses
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_leader)
            .map(|(i, _)| i)
            .collect();
        let [leader] = leaders[..] else { return None };
        let leader_addr = statuses[leader].leader.clone()?;
        statuses
            .iter()
            .all(|s| s.leader.as_ref() == Some(&leader_addr) && s.term == statuses[leader].term)
            .then_some(leader)
    })
    .await
}

/// Stores `count` distinct small blobs on every member; returns their refs.
pub fn store_blobs(members: &[&Member], tag: &str, count: u32) -> Vec<net_mesh_engine::BlobRef> {
    (0..count)
        .map(|i| {
            let bytes = format!("{tag} blob {i}").into_bytes();
            let mut r = None;
            for m in members {
                r = Some(m.store.store(&bytes).unwrap().blob_ref);
            }
            r.unwrap()
        })
        .collect()
}

/// The (blob id, name) pairs pinned in the test channel of `store`, in id order.
pub fn pin_set(store: &Store) -> Vec<([u8; 32], String)> {
    store
        .pins_in(CHANNEL)
        .unwrap()
        .pins
        .into_iter()
        .map(|(id, pin)| (id, pin.name))
        .collect()
}

/// The blob ids pinned in the test channel of `store`.
pub fn pinned(store: &Store) -> Vec<[u8; 32]> {
    store
        .pins_in(CHANNEL)
        .unwrap()
        .pins
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

/// `len` bytes that repeat nowhere (xorshift from `seed`), so no chunk is another blob's.
pub fn distinct_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ seed.wrapping_mul(0x2545_f491_4f6c_dd1d);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Leaves the store in `dir` as a member stopped while it installs the leader's current
/// snapshot (taken from `leader_store`) leaves it, driving the storage as openraft does: the
/// snapshot stored (the install, without a fetcher here, fails for want of the objects, as a
/// stopped fetch does) and the purge of the log it covers run, the applied state behind it.
/// Returns the snapshot's last log id.
pub async fn interrupt_install(leader_store: &Arc<Store>, dir: &Path) -> openraft::LogId<u64> {
    use net_mesh_replication::log_store::LogStore;
    use net_mesh_replication::state_machine::{InstallGate, StateMachine, has_interrupted_install};
    use openraft::storage::{RaftLogStorage, RaftStateMachine};

    let snapshot = StateMachine::new(leader_store.clone(), CHANNEL)
        .get_current_snapshot()
        .await
        .unwrap()
        .unwrap();
    let last = snapshot.meta.last_log_id.unwrap();
    {
        let store = open_store(dir);
        let gate = InstallGate::new(CancellationToken::new());
        let mut sm = StateMachine::new(store.clone(), CHANNEL).with_install_gate(gate.clone());
        let mut log = LogStore::new(store.clone(), CHANNEL).with_install_gate(gate);
        let installed = sm.install_snapshot(&snapshot.meta, snapshot.snapshot).await;
        assert!(installed.is_err(), "installed without the objects");
        log.purge(last).await.unwrap();
        assert_eq!(
            log.get_log_state().await.unwrap().last_purged_log_id,
            Some(last)
        );
        let applied = net_mesh_replication::stored_applied(&store, CHANNEL)
            .unwrap()
            .map_or(0, |a| a.1);
        assert!(
            applied < last.index,
            "applied {applied}, purged {}",
            last.index
        );
        assert!(has_interrupted_install(&store, CHANNEL).unwrap());
    }
    store_opens_again(dir).await;
    last
}

/// A member run as a node runs it (`net-mesh serve`): the store in `dir`, its replicated
/// channels run by [`NodeReplicas`](net_mesh_replication::NodeReplicas), served on
/// 127.0.0.1:`port`.
pub struct ServedNode {
    pub store: Arc<Store>,
    pub replicas: Arc<net_mesh_replication::NodeReplicas>,
    stop: CancellationToken,
    serving: tokio::task::JoinHandle<()>,
}

impl ServedNode {
    pub async fn start(identity: &Identity, dir: &Path, port: u16) -> ServedNode {
        let store = open_store(dir);
        let own = identity.node_id();
        let replicas =
            net_mesh_replication::NodeReplicas::new(store.clone(), own, config()).unwrap();
        let node = Node::with_config(store.clone(), own, NodeConfig::default()).unwrap();
        node.set_replicas(replicas.clone());
        let (listener, _) = net_mesh_node::bind(&format!("127.0.0.1:{port}"))
            .await
            .unwrap();
        let stop = CancellationToken::new();
        let serving = tokio::spawn(net_mesh_node::serve(
            node,
            identity.clone(),
            peer_allow(identity),
            listener,
            stop.clone(),
        ));
        ServedNode {
            store,
            replicas,
            stop,
            serving,
        }
    }

    pub async fn stop(self) {
        self.stop.cancel();
        self.serving.await.unwrap();
    }
}
