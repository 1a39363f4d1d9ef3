//! The storage-node service: the nRPC router a node serves, thin glue between the protocol
//! ([`crate::proto`]) and the store. Every store operation runs on a blocking worker (a worker
//! owns its upload, read or pull and talks to its call through a bounded channel), so no engine
//! call and no lock ever blocks the async runtime, and a peer that stalls stalls only its own
//! worker until a timer of [`NodeConfig`] ends its call. Each handler is a `*_impl` returning
//! [`NodeResult`], wrapped once where the error is mapped and the call is measured.
//!
//! * `blobs`: status, list, resolve, stat, chunks and remove;
//! * `put`: resumable uploads (the feed, the worker, what a stop leaves behind);
//! * `staging`: list, state and abort of live uploads;
//! * `stream`: verified reads streamed as objects, the `objects` and `has` calls of pulls;
//! * `admin`: pull, GC and token revocation;
//! * `channels`: channel create and list, and the replicated channels' methods;
//! * `slots`: worker slots shared fairly among peers, byte budgets and store lookups.

mod admin;
mod blobs;
mod channels;
mod put;
mod slots;
mod staging;
mod stream;

pub use put::fuzz_decode_put_part;

use std::collections::HashSet;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use net_mesh_engine::index::blob_id;
use net_mesh_engine::{BlobRef, ErrorClass, Store};
use net_mesh_rpc::rpc::{
    ResponseSink, Router, RpcContext, RpcServerStreamingHandler, RpcUnaryHandler,
};
use net_mesh_rpc::{Endpoint, NodeId, RpcError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::allow::{Allow, AllowHook};
use crate::bandwidth::Bandwidth;
use crate::call_token::metadata_channel;
use crate::config::NodeConfig;
use crate::error::{Classified, NodeError, NodeResult};
use crate::metrics::Metrics;
use crate::proto::{BlobSpec, Method, TAG_BLOB_TREE};
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
            erasure_bytes: ByteBudget::new(
                "erasure-coded uploads",
                config.max_erasure_bytes,
                config.max_erasure_bytes_per_peer,
            ),
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
        if let Ok(g) = gauges(&self.store) {
            self.metrics.set_gauges(
                g.staged_uploads,
                g.store_bytes,
                self.open_sessions(),
                g.blobs,
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
            .unary(
                Method::Status.name(),
                unary(n, Method::Status, blobs::status_impl),
            )
            .server_streaming(
                Method::List.name(),
                streaming(n, Method::List, blobs::list_impl),
            )
            .unary(
                Method::Resolve.name(),
                unary(n, Method::Resolve, blobs::resolve_impl),
            )
            .unary(
                Method::Stat.name(),
                unary(n, Method::Stat, blobs::stat_impl),
            )
            .server_streaming(
                Method::Read.name(),
                streaming(n, Method::Read, stream::read_impl),
            )
            .server_streaming(
                Method::Chunks.name(),
                streaming(n, Method::Chunks, blobs::chunks_impl),
            )
            .unary(
                Method::Remove.name(),
                unary(n, Method::Remove, blobs::remove_impl),
            )
            .client_streaming(Method::Put.name(), put::PutHandler(Arc::clone(n)))
            .unary(
                Method::StagingList.name(),
                unary(n, Method::StagingList, staging::staging_list_impl),
            )
            .unary(
                Method::StagingState.name(),
                unary(n, Method::StagingState, staging::staging_state_impl),
            )
            .unary(
                Method::StagingAbort.name(),
                unary(n, Method::StagingAbort, staging::staging_abort_impl),
            )
            .unary(Method::Has.name(), unary(n, Method::Has, stream::has_impl))
            .server_streaming(
                Method::Objects.name(),
                streaming(n, Method::Objects, stream::objects_impl),
            )
            .unary(
                Method::Pull.name(),
                unary(n, Method::Pull, admin::pull_impl),
            )
            .unary(Method::Gc.name(), unary(n, Method::Gc, admin::gc_impl))
            .unary(
                Method::TokenRevoke.name(),
                unary(n, Method::TokenRevoke, admin::token_revoke_impl),
            )
            .unary(
                Method::ChannelCreate.name(),
                unary(n, Method::ChannelCreate, channels::channel_create_impl),
            )
            .unary(
                Method::ChannelList.name(),
                unary(n, Method::ChannelList, channels::channel_list_impl),
            )
            .unary(
                Method::ChannelReplicate.name(),
                unary(
                    n,
                    Method::ChannelReplicate,
                    channels::channel_replicate_impl,
                ),
            )
            .unary(
                Method::ChannelStatus.name(),
                unary(n, Method::ChannelStatus, channels::channel_status_impl),
            )
            .unary(
                Method::ChannelMoveBind.name(),
                unary(n, Method::ChannelMoveBind, channels::channel_move_bind_impl),
            )
            .unary(
                Method::ChannelMove.name(),
                unary(n, Method::ChannelMove, channels::channel_move_impl),
            )
            .unary(
                Method::ChannelMoveAbandon.name(),
                unary(
                    n,
                    Method::ChannelMoveAbandon,
                    channels::channel_move_abandon_impl,
                ),
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

/// What the status and the metrics report of the store.
struct Gauges {
    /// Bytes of the store's segment files.
    store_bytes: u64,
    /// Pin rows, every channel.
    blobs: u64,
    /// Resumable uploads with a live checkpoint in the store (what `staging list` lists, every
    /// channel): also those no call is moving now, so a node and a local `status` count the
    /// same.
    staged_uploads: u64,
}

/// Store bytes, pin rows (counted, not read: a scrape costs no memory per pin) and staged
/// uploads (rows counted, not decoded).
fn gauges(store: &Store) -> NodeResult<Gauges> {
    Ok(Gauges {
        store_bytes: store.disk_bytes(),
        blobs: store.pin_rows().node_err()?,
        staged_uploads: net_mesh_staging::staged_upload_count(store).node_err()?,
    })
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

// ---- what blob calls share: the call's channel, a readable replica, Tree-ref gating -------

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
    /// Whether the user gave `name` (it then renames an existing pin).
    pub(crate) given: bool,
    pub(crate) replicas: Option<&'a dyn Replicas>,
}

impl PinAt<'_> {
    /// The name to pin under, and whether the user gave it.
    pub(crate) fn pin_name(&self) -> net_mesh_engine::index::PinName {
        net_mesh_engine::index::PinName {
            name: self.name.to_string(),
            given: self.given,
        }
    }

    /// On a replicated channel, the group's hold that keeps `blob_ref` instead of a pin.
    pub(crate) fn hold(&self, blob_ref: &BlobRef) -> Option<Box<dyn net_mesh_engine::ExtensionOp>> {
        self.replicas.map(|r| r.hold(self.channel, blob_ref))
    }
}

/// The name of `blob_ref`'s pin in `channel` once a put or pull pinned it there. On a
/// replicated channel a pin is not renamed (its pin log entry carries no name change): a name
/// the user gave (`given`) that differs from the pin's is refused, and nothing changed.
async fn resulting_pin_name(
    node: &Node,
    peer: NodeId,
    channel: &str,
    blob_ref: &BlobRef,
    given: Option<&str>,
    replicated: bool,
) -> NodeResult<Option<String>> {
    let (at, pinned) = (channel.to_string(), blob_ref.clone());
    let name = node
        .blocking(peer, move |store| {
            store.pin_name_in(&at, &pinned).node_err()
        })
        .await?;
    if let (true, Some(given), Some(kept)) = (replicated, given, &name)
        && given != kept
    {
        return Err(NodeError::new(
            ErrorClass::Refused,
            format!(
                "channel {channel} is replicated and already pins this blob as {kept:?}: a \
                 replicated pin is not renamed (unpin it, then pin it again under the new name)"
            ),
        ));
    }
    Ok(name)
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

/// Not found unless the store has `channel`: a listing of a channel that does not exist is not
/// an empty one.
fn check_channel_exists(store: &Store, channel: &str) -> NodeResult<()> {
    if store.has_channel(channel).node_err()? {
        Ok(())
    } else {
        Err(NodeError::from_classified(
            &net_mesh_engine::StoreError::NoSuchChannel(channel.to_string()),
        ))
    }
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
