//! The storage-node service: the nRPC router a node serves, thin glue between the protocol
//! ([`crate::proto`]) and the store. Every store operation runs on a blocking worker (a worker
//! owns its upload, read or pull and talks to its call through a bounded channel), so no engine
//! call and no lock ever blocks the async runtime, and a peer that stalls stalls only its own
//! worker until a timer of [`NodeConfig`] ends its call. Each handler is a `*_impl` returning
//! [`NodeResult`], wrapped once where the error is mapped and the call is measured.
//!
//! * `put`: resumable uploads (the feed, the worker, what a stop leaves behind);
//! * `stream`: verified reads streamed as objects, the `objects` and `has` calls of pulls.

mod put;
mod slots;
mod stream;

pub use put::fuzz_decode_put_part;

use std::collections::HashSet;
use std::future::Future;
use std::marker::PhantomData;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use net_mesh_engine::codec::Encoding;
use net_mesh_engine::index::blob_id;
use net_mesh_engine::{
    BlobRef, ErrorClass, GcOptions, Store, StoreError, Unpinned as EngineUnpinned,
};
use net_mesh_rpc::rpc::{
    ResponseSink, Router, RpcContext, RpcServerStreamingHandler, RpcUnaryHandler,
};
use net_mesh_rpc::{Endpoint, NodeId, RpcError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_bytes::ByteBuf;
use tokio_util::sync::CancellationToken;

use crate::allow::{Allow, AllowHook};
use crate::bandwidth::Bandwidth;
use crate::call_token::metadata_channel;
use crate::config::NodeConfig;
use crate::error::{Classified, NodeError, NodeResult};
use crate::metrics::Metrics;
use crate::proto::{
    BlobSpec, ChannelRow, ChunkRow, GcDone, GcRequest, Method, MoveBind, MoveDone, MoveRun, PinRow,
    PullDone, PullRequest, PutDone, ReplicaStatus, ReplicateRequest, Resolved, RevokeRequest,
    StagingRow, StagingState, Stat, Status, TAG_BLOB_TREE, Unpinned,
};
use crate::replicas::Replicas;
use crate::revoke::{self, Floors};
use slots::{ByteBudget, Lookups, Slots};

/// A storage node: the store, its limits, and what it reports.
#[derive(Debug)]
pub struct Node {
    store: Arc<Store>,
    node_id: NodeId,
    config: NodeConfig,
    metrics: Arc<Metrics>,
    started: Instant,
    /// Upload workers alive (counted until the worker has returned, not the call).
    live_uploads: AtomicU64,
    /// Staging ids a worker of this node is writing right now.
    live_ids: Mutex<HashSet<String>>,
    uploads: Arc<Slots>,
    streams: Arc<Slots>,
    pulls: Arc<Slots>,
    /// What erasure-coded uploads hold for their parity.
    erasure_bytes: Arc<ByteBudget>,
    /// Turns of the unary calls' store lookups.
    lookups: Arc<Lookups>,
    /// Fires when the node shuts down: live uploads checkpoint and stop, pulls stop.
    shutdown: CancellationToken,
    /// The endpoint the node serves on and dials other nodes with (pulls), once it exists
    /// (weak: the endpoint's router holds the node).
    endpoint: OnceLock<Weak<Endpoint>>,
    /// The byte rate streams share, and their class counters.
    bandwidth: Arc<Bandwidth>,
    /// Token revocation floors, as persisted in the store.
    floors: Floors,
    /// The replicated channels, when the node runs any (set before the router is built).
    replicas: OnceLock<Arc<dyn Replicas>>,
}

impl Node {
    /// A node over `store` with the default limits.
    pub fn new(store: Arc<Store>, node_id: NodeId) -> NodeResult<Arc<Node>> {
        Node::with_config(store, node_id, NodeConfig::default())
    }

    /// A node over `store` (opened with [`revoke::with_node_tables`]); fails when the stored
    /// revocation floors cannot be read, so a node never serves with a revocation forgotten.
    pub fn with_config(
        store: Arc<Store>,
        node_id: NodeId,
        config: NodeConfig,
    ) -> NodeResult<Arc<Node>> {
        let floors = Floors::new(revoke::load_floors(&store)?.into());
        Ok(Arc::new(Node {
            store,
            node_id,
            bandwidth: Arc::new(Bandwidth::new(config.bandwidth, config.realtime_reserve)),
            uploads: Slots::new("uploads", config.max_uploads, config.max_uploads_per_peer),
            streams: Slots::new("reads", config.max_streams, config.max_streams_per_peer),
            pulls: Slots::new("pulls", config.max_pulls, config.max_pulls_per_peer),
            erasure_bytes: ByteBudget::new("erasure-coded uploads", config.max_erasure_bytes),
            lookups: Lookups::new(config.max_lookups, config.max_lookups_per_peer),
            config,
            metrics: Arc::new(Metrics::default()),
            started: Instant::now(),
            live_uploads: AtomicU64::new(0),
            live_ids: Mutex::new(HashSet::new()),
            shutdown: CancellationToken::new(),
            endpoint: OnceLock::new(),
            floors,
            replicas: OnceLock::new(),
        }))
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn bandwidth(&self) -> &Arc<Bandwidth> {
        &self.bandwidth
    }

    /// Gives the node the endpoint it serves on; pulls dial other nodes with it.
    pub fn set_dialer(&self, endpoint: &Arc<Endpoint>) {
        let _ = self.endpoint.set(Arc::downgrade(endpoint));
    }

    /// Gives the node its replicated channels; call it before [`Node::router`] (which adds
    /// their methods and admission). `false` if it had some already.
    pub fn set_replicas(&self, replicas: Arc<dyn Replicas>) -> bool {
        self.replicas.set(replicas).is_ok()
    }

    pub fn replicas(&self) -> Option<&Arc<dyn Replicas>> {
        self.replicas.get()
    }

    /// The replicated channels if `channel` is one of them.
    fn replicated(&self, channel: &str) -> Option<&Arc<dyn Replicas>> {
        self.replicas.get().filter(|r| r.is_replicated(channel))
    }

    fn endpoint(&self) -> Option<Arc<Endpoint>> {
        self.endpoint.get().and_then(Weak::upgrade)
    }

    /// Makes live uploads checkpoint and stop, and pulls stop; new ones are refused.
    pub fn shut_down(&self) {
        self.shutdown.cancel();
    }

    /// Upload workers alive right now (a stopped upload counts until it has checkpointed).
    pub fn live_uploads(&self) -> u64 {
        self.live_uploads.load(Ordering::SeqCst)
    }

    /// Waits until no upload worker is alive, at most `grace`; returns whether none is.
    pub async fn uploads_settled(&self, grace: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + grace;
        while self.live_uploads() > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// Sessions open on the node's endpoint.
    pub fn open_sessions(&self) -> u64 {
        self.endpoint().map_or(0, |e| {
            net_mesh_rpc::rpc::Metrics::get(&e.metrics().open_sessions)
        })
    }

    /// Sets the gauges from the store (blocking: run it on a blocking thread) and returns
    /// the metrics in the Prometheus text format.
    pub fn render_metrics(&self) -> String {
        if let Ok((store_bytes, blobs)) = gauges(&self.store) {
            self.metrics.set_gauges(
                self.live_uploads(),
                store_bytes,
                self.open_sessions(),
                blobs,
            );
        }
        self.metrics.set_streams(&self.bandwidth.live());
        if let Some(endpoint) = self.endpoint() {
            self.metrics.set_transport(endpoint.metrics());
        }
        if let Some(replicas) = self.replicas.get() {
            self.metrics.set_replicas(&replicas.counters());
        }
        self.metrics.render()
    }

    /// The router to serve: every method of [`Method`], behind the allow list, and the
    /// replicated channels' methods behind their own admission.
    pub fn router(self: &Arc<Self>, allow: Allow) -> Router {
        let n = self;
        let router = match self.replicas.get() {
            Some(replicas) => replicas.routes(Router::new()),
            None => Router::new(),
        };
        router
            .unary(Method::Status.name(), unary(n, Method::Status, status_impl))
            .server_streaming(Method::List.name(), streaming(n, Method::List, list_impl))
            .unary(
                Method::Resolve.name(),
                unary(n, Method::Resolve, resolve_impl),
            )
            .unary(Method::Stat.name(), unary(n, Method::Stat, stat_impl))
            .server_streaming(
                Method::Read.name(),
                streaming(n, Method::Read, stream::read_impl),
            )
            .server_streaming(
                Method::Chunks.name(),
                streaming(n, Method::Chunks, chunks_impl),
            )
            .unary(Method::Remove.name(), unary(n, Method::Remove, remove_impl))
            .client_streaming(Method::Put.name(), put::PutHandler(Arc::clone(n)))
            .unary(
                Method::StagingList.name(),
                unary(n, Method::StagingList, staging_list_impl),
            )
            .unary(
                Method::StagingState.name(),
                unary(n, Method::StagingState, staging_state_impl),
            )
            .unary(
                Method::StagingAbort.name(),
                unary(n, Method::StagingAbort, staging_abort_impl),
            )
            .unary(Method::Has.name(), unary(n, Method::Has, stream::has_impl))
            .server_streaming(
                Method::Objects.name(),
                streaming(n, Method::Objects, stream::objects_impl),
            )
            .unary(Method::Pull.name(), unary(n, Method::Pull, pull_impl))
            .unary(Method::Gc.name(), unary(n, Method::Gc, gc_impl))
            .unary(
                Method::TokenRevoke.name(),
                unary(n, Method::TokenRevoke, token_revoke_impl),
            )
            .unary(
                Method::ChannelCreate.name(),
                unary(n, Method::ChannelCreate, channel_create_impl),
            )
            .unary(
                Method::ChannelList.name(),
                unary(n, Method::ChannelList, channel_list_impl),
            )
            .unary(
                Method::ChannelReplicate.name(),
                unary(n, Method::ChannelReplicate, channel_replicate_impl),
            )
            .unary(
                Method::ChannelStatus.name(),
                unary(n, Method::ChannelStatus, channel_status_impl),
            )
            .unary(
                Method::ChannelMoveBind.name(),
                unary(n, Method::ChannelMoveBind, channel_move_bind_impl),
            )
            .unary(
                Method::ChannelMove.name(),
                unary(n, Method::ChannelMove, channel_move_impl),
            )
            .unary(
                Method::ChannelMoveAbandon.name(),
                unary(n, Method::ChannelMoveAbandon, channel_move_abandon_impl),
            )
            .authorize(AllowHook {
                allow: allow.with_floors(Arc::clone(&self.floors)),
                metrics: Arc::clone(&self.metrics),
                replicas: self.replicas.get().cloned(),
            })
    }

    /// Runs a unary call's `work` on a blocking thread with the store, in the turn of the
    /// call's `peer` among the node's lookups (the turn lasts until the work ends, also when
    /// the call went away meanwhile).
    async fn blocking<T: Send + 'static>(
        &self,
        peer: NodeId,
        work: impl FnOnce(&Store) -> NodeResult<T> + Send + 'static,
    ) -> NodeResult<T> {
        let turn = self.lookups.turn(peer).await?;
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            work(&store)
        })
        .await
        .map_err(worker_failed)?
    }
}

fn worker_failed(e: tokio::task::JoinError) -> NodeError {
    NodeError::new(ErrorClass::Io, format!("worker failed: {e}"))
}

/// Store bytes and pin rows (counted, not read: a scrape costs no memory per pin).
fn gauges(store: &Store) -> NodeResult<(u64, u64)> {
    let blobs = store.pin_rows().node_err()?;
    Ok((store.disk_bytes(), blobs))
}

// ---- handler adapters: each wraps an `*_impl` once (error mapping, metrics) --------------

type Bound<Req, Resp, F> = (Arc<Node>, Method, F, PhantomData<fn(Req) -> Resp>);

struct Unary<Req, Resp, F>(Bound<Req, Resp, F>);

fn unary<Req, Resp, F>(node: &Arc<Node>, method: Method, f: F) -> Unary<Req, Resp, F> {
    Unary((Arc::clone(node), method, f, PhantomData))
}

impl<Req, Resp, F, Fut> RpcUnaryHandler for Unary<Req, Resp, F>
where
    Req: DeserializeOwned + Serialize + Send + 'static,
    Resp: Serialize + Send + 'static,
    F: Fn(Arc<Node>, RpcContext, Req) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = NodeResult<Resp>> + Send + 'static,
{
    type Req = Req;
    type Resp = Resp;

    fn call(
        &self,
        ctx: RpcContext,
        req: Req,
    ) -> impl Future<Output = Result<Resp, RpcError>> + Send {
        let (node, method, f, _) = &self.0;
        measured(Arc::clone(node), *method, f(Arc::clone(node), ctx, req))
    }

    fn max_answer_bytes(&self) -> usize {
        let (node, method, _, _) = &self.0;
        node.config.max_answer(*method)
    }
}

struct Streaming<Req, Resp, F>(Bound<Req, Resp, F>);

fn streaming<Req, Resp, F>(node: &Arc<Node>, method: Method, f: F) -> Streaming<Req, Resp, F> {
    Streaming((Arc::clone(node), method, f, PhantomData))
}

impl<Req, Resp, F, Fut> RpcServerStreamingHandler for Streaming<Req, Resp, F>
where
    Req: DeserializeOwned + Serialize + Send + 'static,
    Resp: Serialize + Send + Sync + 'static,
    F: Fn(Arc<Node>, RpcContext, Req, ResponseSink<Resp>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = NodeResult<()>> + Send + 'static,
{
    type Req = Req;
    type Resp = Resp;

    fn call(
        &self,
        ctx: RpcContext,
        req: Req,
        sink: ResponseSink<Resp>,
    ) -> impl Future<Output = Result<(), RpcError>> + Send {
        let (node, method, f, _) = &self.0;
        measured(
            Arc::clone(node),
            *method,
            f(Arc::clone(node), ctx, req, sink),
        )
    }
}

async fn measured<T>(
    node: Arc<Node>,
    method: Method,
    work: impl Future<Output = NodeResult<T>>,
) -> Result<T, RpcError> {
    let start = Instant::now();
    let result = work.await;
    node.metrics.call(
        method.name(),
        start.elapsed(),
        result.as_ref().err().map(|e| e.class),
    );
    result.map_err(|e| e.to_rpc())
}

/// Sends one response message, ending the call when the peer makes no room for it within the
/// node's send timeout.
async fn send_within<T: Serialize>(
    node: &Node,
    sink: &mut ResponseSink<T>,
    item: &T,
) -> NodeResult<()> {
    let limit = node.config.send_timeout;
    match tokio::time::timeout(limit, sink.send(item)).await {
        Ok(sent) => sent.map_err(|e| NodeError::new(ErrorClass::Io, format!("sending: {e}"))),
        Err(_) => Err(NodeError::new(
            ErrorClass::Busy,
            format!("the peer took no data for {limit:?}"),
        )),
    }
}

// ---- blobs -------------------------------------------------------------------------------

fn decode_ref(bytes: &[u8]) -> NodeResult<BlobRef> {
    BlobRef::decode(bytes)
        .map_err(|e| NodeError::new(ErrorClass::Usage, format!("blob ref does not decode: {e}")))
}

/// Where a finished put or pull pins its blob: a channel and a pin name; on a replicated
/// channel (`replicas` set) the blob is kept by the group's hold instead, and pinned through
/// the group after (crate::replicas).
#[derive(Clone, Copy)]
pub(crate) struct PinAt<'a> {
    pub(crate) channel: &'a str,
    pub(crate) name: &'a str,
    pub(crate) replicas: Option<&'a dyn Replicas>,
}

impl PinAt<'_> {
    /// On a replicated channel, the group's hold that keeps `blob_ref` instead of a pin.
    pub(crate) fn hold(&self, blob_ref: &BlobRef) -> Option<Box<dyn net_mesh_engine::ExtensionOp>> {
        self.replicas.map(|r| r.hold(self.channel, blob_ref))
    }
}

/// The channel a call acts on, from its metadata (which the authorization hook has already
/// decoded and accepted).
fn channel_of(ctx: &RpcContext) -> NodeResult<String> {
    metadata_channel(ctx.metadata())
        .map_err(|e| NodeError::new(ErrorClass::Usage, format!("call metadata: {e}")))
}

/// The channel a call reads the pins of ([`channel_of`]): refused on a replicated channel
/// whose copy here is no longer the group's ([`Replicas::readable`]).
fn read_channel(node: &Node, ctx: &RpcContext) -> NodeResult<String> {
    let channel = channel_of(ctx)?;
    if let Some(replicas) = node.replicated(&channel) {
        replicas.readable(&channel)?;
    }
    Ok(channel)
}

/// The ref a spec names, and its pin name if it is pinned in `channel` (an id prefix names a
/// blob pinned there).
fn resolve(store: &Store, channel: &str, spec: &BlobSpec) -> NodeResult<(BlobRef, Option<String>)> {
    match spec {
        BlobSpec::Ref(bytes) => {
            let blob_ref = decode_ref(bytes)?;
            let name = store
                .reader()
                .node_err()?
                .pin_in(channel, &blob_id(&blob_ref))
                .node_err()?
                .map(|p| p.name);
            Ok((blob_ref, name))
        }
        BlobSpec::IdPrefix(prefix) => {
            let (_, pin) = store.find_pin_in(channel, prefix).node_err()?;
            Ok((pin.blob_ref, Some(pin.name)))
        }
    }
}

/// Whether the peer announced it reads Tree refs.
fn reads_trees(ctx: &RpcContext) -> bool {
    ctx.peer().capabilities().contains(TAG_BLOB_TREE)
}

/// Refuses, before anything is sent, to hand a Tree ref (or its objects) to a peer that did
/// not announce it reads one.
fn gate_tree(ctx: &RpcContext, blob_ref: &BlobRef) -> NodeResult<()> {
    if matches!(blob_ref, BlobRef::Tree { .. }) && !reads_trees(ctx) {
        return Err(tree_refused("the blob is a Tree"));
    }
    Ok(())
}

fn tree_refused(what: &str) -> NodeError {
    NodeError::new(
        ErrorClass::Refused,
        format!("{what} and the peer does not announce {TAG_BLOB_TREE}"),
    )
}

async fn status_impl(node: Arc<Node>, ctx: RpcContext, _: ()) -> NodeResult<Status> {
    let (store_bytes, blobs) = node.blocking(ctx.peer().node_id(), gauges).await?;
    let live = node.live_uploads();
    let open_sessions = node.open_sessions();
    node.metrics
        .set_gauges(live, store_bytes, open_sessions, blobs);
    let (bytes_in, bytes_out) = node.metrics.transferred();
    Ok(Status {
        node_id: node.node_id.to_hex(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        uptime_secs: node.started.elapsed().as_secs(),
        store_bytes,
        blob_count: blobs,
        live_uploads: live,
        open_sessions,
        bytes_in,
        bytes_out,
        capabilities: node
            .config
            .rpc
            .capabilities
            .iter()
            .map(str::to_string)
            .collect(),
        streams: node.bandwidth.live(),
    })
}

/// Lists the channel's pins in id order as they are read, on a stream worker (see
/// [`stream_rows`]): a channel of any size lists in constant memory.
async fn list_impl(
    node: Arc<Node>,
    ctx: RpcContext,
    _: (),
    mut sink: ResponseSink<PinRow>,
) -> NodeResult<()> {
    let channel = read_channel(&node, &ctx)?;
    let trees = reads_trees(&ctx);
    stream_rows(&node, &ctx, &mut sink, move |store, send| {
        store
            .for_each_pin_in(&channel, &mut |row| {
                send(match row {
                    Ok((id, pin)) if trees || !matches!(pin.blob_ref, BlobRef::Tree { .. }) => {
                        PinRow::Pin {
                            blob_id: id,
                            name: pin.name,
                            blob_ref: ByteBuf::from(pin.blob_ref.encode()),
                            created_unix_ms: pin.created_unix_ms,
                        }
                    }
                    Ok((id, _)) => PinRow::Undecodable {
                        blob_id: id,
                        error: format!(
                            "a Tree ref, withheld: the peer does not announce {TAG_BLOB_TREE}"
                        ),
                    },
                    Err(bad) => PinRow::Undecodable {
                        blob_id: bad.id,
                        error: bad.error.to_string(),
                    },
                })
            })
            .node_err()
    })
    .await
}

async fn resolve_impl(node: Arc<Node>, ctx: RpcContext, spec: BlobSpec) -> NodeResult<Resolved> {
    let channel = read_channel(&node, &ctx)?;
    let (blob_ref, name) = node
        .blocking(ctx.peer().node_id(), move |store| {
            resolve(store, &channel, &spec)
        })
        .await?;
    gate_tree(&ctx, &blob_ref)?;
    Ok(Resolved {
        blob_ref: ByteBuf::from(blob_ref.encode()),
        name,
    })
}

async fn stat_impl(node: Arc<Node>, ctx: RpcContext, spec: BlobSpec) -> NodeResult<Stat> {
    let channel = read_channel(&node, &ctx)?;
    node.blocking(ctx.peer().node_id(), move |store| {
        let (blob_ref, _) = resolve(store, &channel, &spec)?;
        gate_tree(&ctx, &blob_ref)?;
        let stat = store.stat(&blob_ref).node_err()?;
        Ok(Stat {
            blob_ref: ByteBuf::from(blob_ref.encode()),
            kind: stat.kind.to_string(),
            size: stat.size,
            depth: stat.depth,
            chunks: stat.chunks,
            encoding: match stat.encoding {
                Encoding::Plain => None,
                Encoding::ReedSolomon {
                    data_shards,
                    total_shards,
                } => Some((data_shards, total_shards)),
            },
        })
    })
    .await
}

/// Rows of a listing a worker hands over at once: at most this many, and no more once they
/// hold [`BATCH_BYTES`] (a pin row can hold a Manifest ref of megabytes).
const ROWS_PER_BATCH: usize = 1024;
const BATCH_BYTES: usize = 1024 * 1024;

/// Roughly what a listed row holds in memory.
trait RowBytes {
    fn row_bytes(&self) -> usize;
}

impl RowBytes for ChunkRow {
    fn row_bytes(&self) -> usize {
        std::mem::size_of::<ChunkRow>() + self.role.len()
    }
}

impl RowBytes for PinRow {
    fn row_bytes(&self) -> usize {
        std::mem::size_of::<PinRow>()
            + match self {
                PinRow::Pin { name, blob_ref, .. } => name.len() + blob_ref.len(),
                PinRow::Undecodable { error, .. } => error.len(),
            }
    }
}

/// Runs `list` on a stream worker (one of the node's read slots) and sends the rows it hands
/// its `send` to `sink` as they come: at most [`READ_QUEUE`](crate::config::READ_QUEUE)
/// batches of [`ROWS_PER_BATCH`] rows or [`BATCH_BYTES`] wait for the caller, whatever the
/// listing's length (a tree can list billions of chunks in a few nodes); a caller that stops
/// reading stops the listing (`send` breaks).
async fn stream_rows<Row: RowBytes + Serialize + Send + 'static>(
    node: &Arc<Node>,
    ctx: &RpcContext,
    sink: &mut ResponseSink<Row>,
    list: impl FnOnce(&Store, &mut dyn FnMut(Row) -> ControlFlow<()>) -> NodeResult<ControlFlow<()>>
    + Send
    + 'static,
) -> NodeResult<()> {
    let slot = node.streams.take(ctx.peer().node_id())?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<Row>>(crate::config::READ_QUEUE);
    let store = Arc::clone(&node.store);
    let worker = tokio::task::spawn_blocking(move || -> NodeResult<()> {
        let _slot = slot;
        let mut batch = Vec::new();
        let mut batch_bytes = 0usize;
        let listed = list(&store, &mut |row| {
            batch_bytes = batch_bytes.saturating_add(row.row_bytes());
            batch.push(row);
            if batch.len() < ROWS_PER_BATCH && batch_bytes < BATCH_BYTES {
                return ControlFlow::Continue(());
            }
            batch_bytes = 0;
            let full = std::mem::take(&mut batch);
            match tx.blocking_send(full) {
                Ok(()) => ControlFlow::Continue(()),
                Err(_) => ControlFlow::Break(()),
            }
        })?;
        if listed.is_continue() && !batch.is_empty() {
            // A caller gone by now has its own error.
            let _ = tx.blocking_send(batch);
        }
        Ok(())
    });
    let forward = async {
        // Owned here, so a failed send drops it and the worker's next send stops the listing.
        let mut rx = rx;
        while let Some(rows) = rx.recv().await {
            for row in &rows {
                send_within(node, sink, row).await?;
            }
        }
        Ok::<(), NodeError>(())
    };
    let (sent, worked) = tokio::join!(forward, worker);
    let worked = worked.map_err(worker_failed)?;
    // A failed send stopped the worker: its error is the cause.
    sent.and(worked)
}

/// Lists a blob's chunks as the tree is walked, on a stream worker (see [`stream_rows`]).
async fn chunks_impl(
    node: Arc<Node>,
    ctx: RpcContext,
    spec: BlobSpec,
    mut sink: ResponseSink<ChunkRow>,
) -> NodeResult<()> {
    let channel = read_channel(&node, &ctx)?;
    stream_rows(&node, &ctx, &mut sink, move |store, send| {
        let (blob_ref, _) = resolve(store, &channel, &spec)?;
        store
            .for_each_chunk(&blob_ref, &mut |c| {
                send(ChunkRow {
                    hash: c.hash,
                    size: c.size,
                    role: net_mesh_engine::erasure::stripe::role_name(c.role).to_string(),
                    stripe: c.stripe,
                })
            })
            .node_err()
    })
    .await
}

async fn remove_impl(node: Arc<Node>, ctx: RpcContext, spec: BlobSpec) -> NodeResult<Unpinned> {
    let channel = channel_of(&ctx)?;
    if let Some(replicas) = node.replicated(&channel) {
        // The group unpins: proposed only for a pin this member has applied (a row that
        // does not decode counts), answered once committed and applied here.
        let named = channel.clone();
        let (id, pinned) = node
            .blocking(ctx.peer().node_id(), move |store| {
                let id = match &spec {
                    BlobSpec::Ref(bytes) => blob_id(&decode_ref(bytes)?),
                    BlobSpec::IdPrefix(prefix) => {
                        store.find_pin_id_in(&named, prefix).node_err()?
                    }
                };
                let pinned = match store.reader().node_err()?.pin_in(&named, &id) {
                    Ok(pin) => pin.map(|_| Unpinned::Removed),
                    Err(_) => Some(Unpinned::RemovedUndecodable),
                };
                Ok((id, pinned))
            })
            .await?;
        let Some(removed) = pinned else {
            return Ok(Unpinned::NotPinned);
        };
        replicas.unpin(&channel, &id).await?;
        return Ok(removed);
    }
    node.blocking(ctx.peer().node_id(), move |store| {
        let id = match &spec {
            BlobSpec::Ref(bytes) => blob_id(&decode_ref(bytes)?),
            BlobSpec::IdPrefix(prefix) => store.find_pin_id_in(&channel, prefix).node_err()?,
        };
        Ok(match store.unpin_in(&channel, &id).node_err()? {
            EngineUnpinned::NotPinned => Unpinned::NotPinned,
            EngineUnpinned::Removed => Unpinned::Removed,
            EngineUnpinned::RemovedUndecodable => Unpinned::RemovedUndecodable,
        })
    })
    .await
}

// ---- staging -----------------------------------------------------------------------------
//
// An upload belongs to the channel it began in (its checkpoint's, then its finished record's).
// A call acting on an upload by its staging id must name that channel, so a token or allow
// entry for one channel never resumes, finishes, aborts or reads the state of another
// channel's upload; `staging_list` shows only the call's channel. An id of another channel
// is refused with that channel named (not answered as missing): ids are 128-bit random, so
// a caller who holds one was given it, and the refusal tells them how to act on it.

/// The channel upload `id` belongs to, from its checkpoint while it is live or its finished
/// record once it finished; `None` when neither exists.
fn upload_channel(store: &Store, id: &str) -> NodeResult<Option<String>> {
    if let Some(checkpoint) = net_mesh_staging::checkpoint_of(store, id).node_err()? {
        return Ok(Some(checkpoint.channel));
    }
    let finished = store
        .read_extension(net_mesh_staging::table::NAMESPACE, |r| {
            net_mesh_staging::table::finished(r, id)
        })
        .node_err()?;
    Ok(finished.map(|done| done.channel))
}

/// Refuses a call on `channel` that acts on upload `id` of another channel (a missing id
/// passes: the caller's own answer for it is "not found").
pub(super) fn check_upload_channel(store: &Store, id: &str, channel: &str) -> NodeResult<()> {
    match upload_channel(store, id)? {
        Some(belongs) if belongs != channel => Err(NodeError::new(
            ErrorClass::Refused,
            format!(
                "upload {id} belongs to channel {belongs}, not {channel}: name it with \
                 --channel {belongs}"
            ),
        )),
        _ => Ok(()),
    }
}

async fn staging_list_impl(node: Arc<Node>, ctx: RpcContext, _: ()) -> NodeResult<Vec<StagingRow>> {
    let channel = channel_of(&ctx)?;
    node.blocking(ctx.peer().node_id(), move |store| {
        Ok(net_mesh_staging::list_staging(store)
            .node_err()?
            .into_iter()
            .filter(|u| u.channel == channel)
            .map(|u| StagingRow {
                staging_id: u.staging_id,
                bytes_committed: u.bytes_committed,
                resume_offset: u.resume_offset,
                seq: u.seq,
                chunks: u.chunks,
                created_unix_ms: u.created_unix_ms,
                last_checkpoint_unix_ms: u.last_checkpoint_unix_ms,
                chunking: u.chunking.to_string(),
                name: u.pin_name,
            })
            .collect())
    })
    .await
}

/// Where upload `id` of the call's channel stands, read from its checkpoint or its finished
/// record (nothing is opened for writing). Busy while a put call still writes it: its offset
/// is still moving.
async fn staging_state_impl(
    node: Arc<Node>,
    ctx: RpcContext,
    id: String,
) -> NodeResult<StagingState> {
    let channel = channel_of(&ctx)?;
    let checked = id.clone();
    node.blocking(ctx.peer().node_id(), move |store| {
        if !net_mesh_staging::valid_staging_id(&checked) {
            return Err(NodeError::from_classified(
                &net_mesh_staging::StagingError::InvalidId(checked),
            ));
        }
        check_upload_channel(store, &checked, &channel)
    })
    .await?;
    let writing = node
        .live_ids
        .lock()
        .map_err(|_| NodeError::new(ErrorClass::Io, "the live upload table is poisoned"))?
        .contains(&id);
    if writing {
        return Err(NodeError::new(
            ErrorClass::Busy,
            format!(
                "upload {id} is still being written on this node (its last call has not \
                 checkpointed yet); ask again"
            ),
        ));
    }
    node.blocking(ctx.peer().node_id(), move |store| {
        if let Some(checkpoint) = net_mesh_staging::checkpoint_of(store, &id).node_err()? {
            return Ok(StagingState::Live {
                resume_offset: checkpoint.replay_offset(),
            });
        }
        let finished = store
            .read_extension(net_mesh_staging::table::NAMESPACE, |r| {
                net_mesh_staging::table::finished(r, &id)
            })
            .node_err()?;
        let Some(done) = finished else {
            return Ok(StagingState::NotFound);
        };
        gate_tree(&ctx, &done.blob_ref)?;
        Ok(StagingState::Finished(PutDone {
            blob_ref: ByteBuf::from(done.blob_ref.encode()),
            chunks: done.chunks,
            new_chunks: 0,
            new_bytes: 0,
            staging_id: Some(id),
            resumed_from: None,
        }))
    })
    .await
}

/// Aborts live upload `id` of the call's channel; `false` when there is none.
async fn staging_abort_impl(node: Arc<Node>, ctx: RpcContext, id: String) -> NodeResult<bool> {
    let channel = channel_of(&ctx)?;
    node.blocking(ctx.peer().node_id(), move |store| {
        check_upload_channel(store, &id, &channel)?;
        net_mesh_staging::abort_staging_id(store, &id).node_err()
    })
    .await
}

// ---- node to node and admin --------------------------------------------------------------

async fn pull_impl(node: Arc<Node>, ctx: RpcContext, req: PullRequest) -> NodeResult<PullDone> {
    let blob_ref = decode_ref(&req.blob_ref)?;
    net_mesh_engine::index::check_pin_name(&req.name)
        .map_err(|e| NodeError::new(ErrorClass::Usage, e.to_string()))?;
    let from: net_mesh_rpc::NodeAddr = req
        .from
        .parse()
        .map_err(|e| NodeError::new(ErrorClass::Usage, format!("--from {}: {e}", req.from)))?;
    if node.shutdown.is_cancelled() {
        return Err(NodeError::new(
            ErrorClass::Busy,
            "the node is shutting down",
        ));
    }
    let channel = channel_of(&ctx)?;
    let named = channel.clone();
    if !node
        .blocking(ctx.peer().node_id(), move |store| {
            store.has_channel(&named).node_err()
        })
        .await?
    {
        return Err(NodeError::from_classified(&StoreError::NoSuchChannel(
            channel,
        )));
    }
    let slot = node.pulls.take(ctx.peer().node_id())?;
    let dialer = node
        .endpoint()
        .ok_or_else(|| NodeError::new(ErrorClass::Busy, "the node cannot dial yet"))?;
    let session = dialer.connect_node(&from).await.map_err(|e| {
        NodeError::new(
            ErrorClass::Io,
            format!("connecting to {}: {e}", from.host_port),
        )
    })?;
    // A session lives until closed (or idle for minutes): closed once the pull ends.
    let closing = session.clone();
    let client = crate::client::NodeClient::from_session(session)
        .with_silence_timeout(node.config.send_timeout);
    // The pull stops when its call ends or the node shuts down.
    let stop = ctx.token().child_token();
    let on_shutdown = node.shutdown.clone();
    let stop_on_shutdown = stop.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = on_shutdown.cancelled() => stop_on_shutdown.cancel(),
            _ = stop_on_shutdown.cancelled() => {}
        }
    });
    let runtime = tokio::runtime::Handle::current();
    let worker_stop = stop.clone();
    let store = Arc::clone(&node.store);
    let stream = node.bandwidth.open("pull", req.class);
    let replicas = node.replicated(&channel).cloned();
    let (held_by, pinned) = (replicas.clone(), blob_ref.clone());
    let (at_channel, name) = (channel.clone(), req.name.clone());
    let done = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        crate::pull::pull(
            &store,
            &client,
            &runtime,
            &worker_stop,
            &blob_ref,
            PinAt {
                channel: &at_channel,
                name: &name,
                replicas: held_by.as_deref(),
            },
            &stream,
        )
    })
    .await
    .map_err(worker_failed);
    stop.cancel();
    closing.close();
    let done = done??;
    node.metrics.received(done.bytes_fetched);
    if let Some(replicas) = replicas {
        replicas.pin(&channel, &pinned, &req.name).await?;
    }
    Ok(done)
}

async fn gc_impl(node: Arc<Node>, ctx: RpcContext, req: GcRequest) -> NodeResult<GcDone> {
    let report = node
        .blocking(ctx.peer().node_id(), move |store| {
            store
                .gc(&GcOptions {
                    grace: Duration::from_secs(req.grace_secs),
                    dry_run: req.dry_run,
                    ..GcOptions::default()
                })
                .node_err()
        })
        .await?;
    node.metrics.gc_ran();
    let report_json = serde_json::to_string(&report)
        .map_err(|e| NodeError::new(ErrorClass::Io, format!("encoding the gc report: {e}")))?;
    Ok(GcDone { report_json })
}

async fn token_revoke_impl(
    node: Arc<Node>,
    ctx: RpcContext,
    req: RevokeRequest,
) -> NodeResult<u32> {
    let floors = Arc::clone(&node.floors);
    node.blocking(ctx.peer().node_id(), move |store| {
        revoke::raise_floor(store, &floors, req.issuer, req.below_generation)
    })
    .await
}

// ---- channels ----------------------------------------------------------------------------

async fn channel_create_impl(node: Arc<Node>, ctx: RpcContext, name: String) -> NodeResult<bool> {
    node.blocking(ctx.peer().node_id(), move |store| {
        store.create_channel(&name).node_err()
    })
    .await
}

/// The node's replicated channels, or a refusal when it runs none.
fn replicas_of(node: &Node) -> NodeResult<&Arc<dyn Replicas>> {
    node.replicas.get().ok_or_else(|| {
        NodeError::new(
            ErrorClass::Refused,
            "this node does not run replicated channels",
        )
    })
}

async fn channel_move_bind_impl(node: Arc<Node>, _: RpcContext, req: MoveBind) -> NodeResult<()> {
    replicas_of(&node)?.move_bind(&req).await
}

async fn channel_move_impl(node: Arc<Node>, _: RpcContext, req: MoveRun) -> NodeResult<MoveDone> {
    replicas_of(&node)?.move_run(&req).await
}

async fn channel_move_abandon_impl(
    node: Arc<Node>,
    _: RpcContext,
    req: MoveRun,
) -> NodeResult<MoveDone> {
    replicas_of(&node)?.move_abandon(&req).await
}

async fn channel_replicate_impl(
    node: Arc<Node>,
    _: RpcContext,
    req: ReplicateRequest,
) -> NodeResult<bool> {
    let replicas = replicas_of(&node)?;
    let members = req
        .members
        .iter()
        .map(|m| {
            m.parse::<net_mesh_rpc::NodeAddr>()
                .map_err(|e| NodeError::new(ErrorClass::Usage, format!("member {m}: {e}")))
        })
        .collect::<NodeResult<Vec<_>>>()?;
    replicas.replicate(&req.channel, &members).await
}

async fn channel_status_impl(
    node: Arc<Node>,
    _: RpcContext,
    channel: String,
) -> NodeResult<ReplicaStatus> {
    match node.replicated(&channel) {
        Some(replicas) => replicas.status(&channel).await,
        None => Err(NodeError::new(
            ErrorClass::NotFound,
            format!("channel {channel} is not replicated on this node"),
        )),
    }
}

async fn channel_list_impl(node: Arc<Node>, ctx: RpcContext, _: ()) -> NodeResult<Vec<ChannelRow>> {
    let channels = node
        .blocking(ctx.peer().node_id(), |store| store.channels().node_err())
        .await?;
    Ok(channels
        .into_iter()
        .map(|c| ChannelRow {
            name: c.name,
            created_unix_ms: c.created_unix_ms,
            pins: c.pins,
        })
        .collect())
}
