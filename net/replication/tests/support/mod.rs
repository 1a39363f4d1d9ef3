//! Members of a replicated channel for tests: a real store in a temp dir, a real nRPC endpoint
//! on 127.0.0.1, the replication router, and helpers that wait (bounded) for a condition.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use net_mesh_engine::{OpenOptions, Store, StoreConfig};
use net_mesh_replication::{
    ChannelStatus, ReplicatedChannel, Replication, ReplicationConfig, extension,
};
use net_mesh_rpc::rpc::Config;
use net_mesh_rpc::{Endpoint, Identity, NodeAddr};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub const CHANNEL: &str = "photos";
/// Upper bound for every wait (a bound on the test, not a timed assertion).
pub const WAIT: Duration = Duration::from_secs(60);

pub fn open_store(dir: &Path) -> Arc<Store> {
    let deadline = Instant::now() + WAIT;
    loop {
        match Store::open_with(
            dir,
            OpenOptions::new(StoreConfig::default()).extension(extension()),
        ) {
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

/// One member: identity, store dir, and (while running) its endpoint and serve loop.
pub struct Member {
    pub identity: Identity,
    pub dir: PathBuf,
    pub addr: NodeAddr,
    pub replication: Replication,
    pub endpoint: Endpoint,
    pub store: Arc<Store>,
    stop: CancellationToken,
    serving: tokio::task::JoinHandle<()>,
}

impl Member {
    /// Starts a member serving on `port` (0: any free port).
    pub async fn start(identity: Identity, dir: PathBuf, port: u16) -> Member {
        let store = open_store(&dir);
        let replication = Replication::new();
        let endpoint = Endpoint::new(identity.clone(), replication.router(), Config::default());
        let listener = bind(port).await;
        let local = listener.local_addr().unwrap();
        let addr = NodeAddr {
            node_id: identity.node_id(),
            host_port: local.to_string(),
        };
        let stop = CancellationToken::new();
        let serving = {
            let endpoint = endpoint.clone();
            let stop = stop.clone();
            tokio::spawn(async move { endpoint.serve(listener, stop).await })
        };
        Member {
            identity,
            dir,
            addr,
            replication,
            endpoint,
            store,
            stop,
            serving,
        }
    }

    /// Stops serving (sessions close) and gives back what a restart needs.
    pub async fn stop(self) -> (Identity, PathBuf, u16) {
        self.stop.cancel();
        let _ = self.serving.await;
        let port = self
            .addr
            .host_port
            .rsplit_once(':')
            .unwrap()
            .1
            .parse()
            .unwrap();
        (self.identity, self.dir, port)
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

/// Three members with fresh stores, each holding `blobs` (stored, so their objects exist).
pub async fn three_members(root: &Path) -> Vec<Member> {
    let mut members = Vec::new();
    for i in 0..3u8 {
        let identity = Identity::from_seed([i + 1; 32]);
        members.push(Member::start(identity, root.join(format!("m{i}")), 0).await);
    }
    members
}

pub fn addrs(members: &[Member]) -> Vec<NodeAddr> {
    members.iter().map(|m| m.addr.clone()).collect()
}

pub async fn create_all(members: &[Member]) -> Vec<ReplicatedChannel> {
    create_all_with(members, &config()).await
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
