//! Nodes on 127.0.0.1 for the node crate's tests: each with its own store (staging
//! registered), identity and allow list, serving until its stop token fires; clients with
//! chosen identities and capability tags; helpers to damage a stored object.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;

use net_mesh_engine::codec::Hash;
use net_mesh_engine::{BlobRef, ChunkingStrategy, OpenOptions, Store, StoreConfig, TreePolicy};
use net_mesh_node::proto::{PutDone, PutStart, TreeShape};
use net_mesh_node::{Allow, Node, NodeClient, NodeConfig, NodeResult, PutInput};
use net_mesh_rpc::rpc::Config;
use net_mesh_rpc::{Capabilities, Identity, NodeAddr, NodeId};
use tokio_util::sync::CancellationToken;

pub struct TestNode {
    pub node: Arc<Node>,
    pub addr: NodeAddr,
    pub id: NodeId,
    pub stop: CancellationToken,
    pub task: tokio::task::JoinHandle<()>,
}

impl TestNode {
    /// Stops the node and waits until it has returned (live uploads checkpointed).
    pub async fn shut(self) {
        self.stop.cancel();
        self.task.await.unwrap();
    }
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
        net_mesh_node::revoke::with_node_tables(net_mesh_staging::with_staging(
            OpenOptions::new(config()),
            net_mesh_staging::DEFAULT_ABANDON_GRACE,
        )),
    )
    .unwrap()
}

/// Starts a node on `dir`; `allow(own id)` gives its allow-file text.
pub async fn start(dir: &Path, allow: impl FnOnce(NodeId) -> String) -> TestNode {
    start_with(dir, allow, NodeConfig::default()).await
}

/// Starts a node on `dir` with limits `config`.
pub async fn start_with(
    dir: &Path,
    allow: impl FnOnce(NodeId) -> String,
    config: NodeConfig,
) -> TestNode {
    let identity = Identity::generate_ephemeral().unwrap();
    start_as(identity, dir, allow, config).await
}

/// Starts a node on `dir` as `identity`.
pub async fn start_as(
    identity: Identity,
    dir: &Path,
    allow: impl FnOnce(NodeId) -> String,
    config: NodeConfig,
) -> TestNode {
    let id = identity.node_id();
    let allow = Allow::parse(id, &allow(id)).unwrap();
    start_allowing(identity, dir, allow, config).await
}

/// Starts a node on `dir` as `identity` with authorization state `allow`.
pub async fn start_allowing(
    identity: Identity,
    dir: &Path,
    allow: Allow,
    config: NodeConfig,
) -> TestNode {
    let id = identity.node_id();
    let node = Node::with_config(Arc::new(open_store(dir)), id, config).unwrap();
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

/// A fresh identity and its id.
pub fn identity() -> (Identity, NodeId) {
    let identity = Identity::generate_ephemeral().unwrap();
    let id = identity.node_id();
    (identity, id)
}

/// A client with a fresh identity, and that identity's id.
pub async fn client(addr: &NodeAddr) -> (NodeClient, NodeId) {
    let (identity, id) = identity();
    (NodeClient::connect(identity, addr).await.unwrap(), id)
}

/// A client that connects as `identity`.
pub async fn client_as(identity: Identity, addr: &NodeAddr) -> NodeClient {
    NodeClient::connect(identity, addr).await.unwrap()
}

/// A client that connects as `identity` and announces no capability tags.
pub async fn tagless_client_as(identity: Identity, addr: &NodeAddr) -> NodeClient {
    let config = Config {
        capabilities: Capabilities::default(),
        ..Config::default()
    };
    NodeClient::connect_with(identity, addr, config)
        .await
        .unwrap()
}

/// The shape of the test stores' trees.
pub fn tree_shape() -> TreeShape {
    let t = config().tree;
    TreeShape {
        leaf_fanout: t.leaf_fanout as u32,
        internal_fanout: t.internal_fanout as u32,
        manifest_max_refs: t.manifest_max_refs as u32,
    }
}

/// A new resumable upload named `name` with the test stores' layout.
pub fn begin(staging_id: Option<&str>, name: &str, checkpoint_interval: u64) -> PutStart {
    PutStart::Begin {
        class: Default::default(),
        staging_id: staging_id.map(str::to_string),
        name: name.into(),
        chunking: Some(config().chunking.to_string()),
        tree: Some(tree_shape()),
        checkpoint_interval: Some(checkpoint_interval),
        name_given: false,
    }
}

/// Puts `data` through `client` as one call.
pub async fn put(client: &NodeClient, start: PutStart, data: &[u8]) -> NodeResult<PutDone> {
    let input = PutInput::Stream(Box::new(std::io::Cursor::new(data.to_vec())));
    client.put(start, input, &mut |_| {}).await
}

/// The ref a local put of `data` into a store of the test configuration gives.
pub fn local_ref(data: &[u8]) -> BlobRef {
    let tmp = tempfile::tempdir().unwrap();
    open_store(tmp.path()).store(data).unwrap().blob_ref
}

/// Reads `range` of `blob_ref` through `client` (verified by the client), on a blocking
/// thread; returns what reached the sink along with the result.
pub async fn read(
    client: &Arc<NodeClient>,
    blob_ref: &BlobRef,
    range: std::ops::Range<u64>,
) -> (NodeResult<u64>, Vec<u8>) {
    let client = Arc::clone(client);
    let blob_ref = blob_ref.clone();
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let mut sink = Vec::new();
        let result = client.read_blocking(&runtime, &blob_ref, range, &mut sink);
        (result, sink)
    })
    .await
    .unwrap()
}

/// XORs payload byte `at` of object `hash` of the (closed or open) store in `dir` with 0x40,
/// and syncs the file.
pub fn flip_payload_byte(store: &Store, hash: &Hash, at: u64) {
    let entry = store.reader().unwrap().object(hash).unwrap().unwrap();
    let path = store
        .dir()
        .join("segments")
        .join(net_mesh_segments::segment_file_name(entry.loc.segment));
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let pos = entry.loc.offset + net_mesh_segments::codec::RECORD_HEADER_LEN as u64 + at;
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(pos)).unwrap();
    f.read_exact(&mut b).unwrap();
    b[0] ^= 0x40;
    f.seek(SeekFrom::Start(pos)).unwrap();
    f.write_all(&b).unwrap();
    f.sync_all().unwrap();
}

/// Waits (without a time limit: the test harness has one) until `cond` holds.
/// Waits for `cond`, failing the test after 20 s.
pub async fn wait_until(mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "the condition did not hold within 20 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
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

/// Starts upload `staging_id` of `data` through a client of its own, sends the first
/// `sent` bytes in pieces of `piece`, waits until the node has checkpointed part of them,
/// then drops the client (its session closes mid-stream) and waits until the node's worker
/// has stopped. Returns the upload's resume offset.
pub async fn vanish_mid_upload(
    node: &TestNode,
    as_identity: Identity,
    staging_id: &str,
    data: &[u8],
    sent: usize,
    piece: usize,
) -> u64 {
    vanish_mid_upload_with(node, as_identity, Vec::new(), staging_id, data, sent, piece).await
}

/// [`vanish_mid_upload`] with the put call carrying `metadata` (a channel, a token).
pub async fn vanish_mid_upload_with(
    node: &TestNode,
    as_identity: Identity,
    metadata: Vec<u8>,
    staging_id: &str,
    data: &[u8],
    sent: usize,
    piece: usize,
) -> u64 {
    use net_mesh_node::proto::{PutPart, StagingState};
    use serde_bytes::ByteBuf;
    let client = client_as(as_identity.clone(), &node.addr).await;
    let mut call = client
        .session()
        .call_client_streaming::<PutPart, PutDone>(
            net_mesh_node::proto::Method::Put.name(),
            net_mesh_rpc::rpc::CallOptions::default().metadata(metadata.clone()),
        )
        .unwrap();
    call.send(&PutPart::Start(begin(
        Some(staging_id),
        "vanishing",
        64 * 1024,
    )))
    .await
    .unwrap();
    for chunk in data[..sent].chunks(piece) {
        call.send(&PutPart::Data(ByteBuf::from(chunk)))
            .await
            .unwrap();
    }
    let store = Arc::clone(node.node.store());
    let id = staging_id.to_string();
    let checkpointed = move || {
        net_mesh_staging::list_staging(&store)
            .unwrap()
            .iter()
            .any(|u| u.staging_id == id && u.bytes_committed > 0)
    };
    wait_until(checkpointed).await;
    drop(call);
    drop(client);
    let live = Arc::clone(&node.node);
    wait_until(move || live.live_uploads() == 0).await;
    // Asked on the call's channel (the upload's).
    let observer = client_as(as_identity, &node.addr).await;
    let state = observer
        .session()
        .call_unary::<String, StagingState>(
            net_mesh_node::proto::Method::StagingState.name(),
            &staging_id.to_string(),
            net_mesh_rpc::rpc::CallOptions::default().metadata(metadata),
        )
        .await
        .unwrap();
    match state {
        StagingState::Live { resume_offset } => resume_offset,
        other => panic!("the upload should be live, it is {other:?}"),
    }
}

// ------------------------------------------------------- hand-built trees (hostile shapes)

/// Imports a chunk of `data` and a plain leaf listing it once; gives the leaf's id.
pub fn import_leaf(importer: &mut net_mesh_engine::Importer<'_>, data: &[u8]) -> Hash {
    use net_mesh_engine::ObjectKind;
    use net_mesh_engine::codec::{ChunkRef, ChunkRole, Encoding, LeafNode, chunk_id, leaf_id};
    let chunk = chunk_id(data);
    importer.import(ObjectKind::Chunk, &chunk, data).unwrap();
    let leaf = LeafNode {
        encoding: Encoding::Plain,
        chunks: vec![ChunkRef {
            hash: chunk,
            size: data.len() as u32,
            role: ChunkRole::Data,
        }],
    }
    .encode();
    let id = leaf_id(&leaf);
    importer.import(ObjectKind::LeafNode, &id, &leaf).unwrap();
    id
}

/// An internal node of `level` listing `children`, each covering `covered` bytes.
pub fn internal_node(
    level: u8,
    children: &[Hash],
    covered: u64,
) -> net_mesh_engine::codec::InternalNode {
    net_mesh_engine::codec::InternalNode {
        level,
        children: children
            .iter()
            .map(|hash| net_mesh_engine::codec::ChildRef {
                hash: *hash,
                covered,
            })
            .collect(),
    }
}

/// Imports [`internal_node`] (the importer refuses children of another level); gives its id.
pub fn import_internal(
    importer: &mut net_mesh_engine::Importer<'_>,
    level: u8,
    children: &[Hash],
    covered: u64,
) -> Hash {
    let node = internal_node(level, children, covered).encode();
    let id = net_mesh_engine::codec::internal_id(&node);
    importer
        .import(net_mesh_engine::ObjectKind::InternalNode, &id, &node)
        .unwrap();
    id
}

/// An upload whose batch takes hand-built nodes as they are ([`put_internal`]): how a test
/// stores a tree of a shape an importer refuses, as a faulty or hostile node would serve it.
pub fn raw_nodes(store: &net_mesh_engine::Store) -> net_mesh_engine::Upload<'_> {
    net_mesh_engine::Upload::new(
        store,
        store.config().chunking,
        net_mesh_engine::TreePolicy::default(),
        net_mesh_engine::Encoding::Plain,
    )
    .unwrap()
}

/// Stores [`internal_node`] (its children stored or in this batch) whatever their levels;
/// gives its id.
pub fn put_internal(
    batch: &mut net_mesh_engine::OpenBatch<'_>,
    level: u8,
    children: &[Hash],
    covered: u64,
) -> Hash {
    use net_mesh_engine::tree::NodeSink;
    batch
        .put_internal(&internal_node(level, children, covered))
        .unwrap()
}

/// A plain Tree ref.
pub fn tree_ref(root: Hash, size: u64, depth: u8) -> BlobRef {
    BlobRef::Tree {
        encoding: net_mesh_engine::codec::Encoding::Plain,
        root_hash: root,
        total_size: size,
        depth,
    }
}

/// A fake node playing the attacker: a real nRPC endpoint on 127.0.0.1 with a fresh identity
/// and the client's capability tags, serving `router` until [`FakeNode::shut`].
pub struct FakeNode {
    pub addr: NodeAddr,
    stop: CancellationToken,
    serving: tokio::task::JoinHandle<()>,
}

impl FakeNode {
    pub async fn serve(router: net_mesh_rpc::rpc::Router) -> FakeNode {
        let (identity, node_id) = identity();
        let config = Config {
            capabilities: net_mesh_node::client::client_capabilities(),
            ..Config::default()
        };
        let endpoint = net_mesh_rpc::Endpoint::new(identity, router, config);
        let (listener, local) = net_mesh_node::bind("127.0.0.1:0").await.unwrap();
        let stop = CancellationToken::new();
        let serving = tokio::spawn({
            let stop = stop.clone();
            async move { endpoint.serve(listener, stop).await }
        });
        FakeNode {
            addr: NodeAddr {
                node_id,
                host_port: local.to_string(),
            },
            stop,
            serving,
        }
    }

    pub async fn shut(self) {
        self.stop.cancel();
        self.serving.await.unwrap();
    }
}
