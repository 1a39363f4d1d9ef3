//! Nodes on 127.0.0.1 for the node crate's tests: each with its own store (staging
//! registered), identity and allow list, serving until its stop token fires.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::Path;
use std::sync::Arc;

use net_mesh_engine::{ChunkingStrategy, OpenOptions, Store, StoreConfig, TreePolicy};
use net_mesh_node::{Allow, Node, NodeClient};
use net_mesh_rpc::{Identity, NodeAddr, NodeId};
use tokio_util::sync::CancellationToken;

pub struct TestNode {
    pub node: Arc<Node>,
    pub addr: NodeAddr,
    pub id: NodeId,
    pub stop: CancellationToken,
    pub task: tokio::task::JoinHandle<()>,
}

pub fn config() -> StoreConfig {
    StoreConfig {
        chunking: ChunkingStrategy::Cdc {
            avg: 16 * 1024,
            min: 4 * 1024,
            max: 64 * 1024,
        },
        tree: TreePolicy {
            leaf_fanout: 16,
            internal_fanout: 4,
            manifest_max_refs: net_mesh_engine::tree::DEFAULT_MANIFEST_MAX_REFS,
        },
        ..StoreConfig::default()
    }
}

pub fn open_store(dir: &Path) -> Store {
    Store::open_with(
        dir,
        net_mesh_staging::with_staging(
            OpenOptions::new(config()),
            net_mesh_staging::DEFAULT_ABANDON_GRACE,
        ),
    )
    .unwrap()
}

/// Starts a node on `dir`; `allow(own id)` gives its allow-file text.
pub async fn start(dir: &Path, allow: impl FnOnce(NodeId) -> String) -> TestNode {
    let identity = Identity::generate_ephemeral().unwrap();
    let id = identity.node_id();
    let allow = Allow::parse(id, &allow(id)).unwrap();
    let node = Node::new(Arc::new(open_store(dir)), id);
    let (listener, local) = net_mesh_node::bind("127.0.0.1:0").await.unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(net_mesh_node::serve(
        Arc::clone(&node),
        identity,
        allow,
        listener,
        stop.clone(),
    ));
    TestNode {
        node,
        addr: NodeAddr {
            node_id: id,
            host_port: local.to_string(),
        },
        id,
        stop,
        task,
    }
}

/// A client with a fresh identity, and that identity's id.
pub async fn client(addr: &NodeAddr) -> (NodeClient, NodeId) {
    let identity = Identity::generate_ephemeral().unwrap();
    let id = identity.node_id();
    (NodeClient::connect(identity, addr).await.unwrap(), id)
}

/// A client that connects as `identity`.
pub async fn client_as(identity: Identity, addr: &NodeAddr) -> NodeClient {
    NodeClient::connect(identity, addr).await.unwrap()
}

/// Deterministic pseudo-random bytes.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
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
