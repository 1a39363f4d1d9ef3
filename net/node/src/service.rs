//! The storage-node service: the nRPC router a node serves, thin glue between the protocol
//! ([`crate::proto`]) and the store. Every store operation runs on a blocking thread (the
//! engine's worker model: a worker owns its upload or read, fed through a bounded channel), so
//! no engine call and no lock ever blocks the async runtime, and a client that stalls stalls only
//! its own worker. Each handler is a `*_impl` returning [`NodeResult`], wrapped once where the
//! error is mapped and the call is measured.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use net_mesh_engine::codec::{Encoding, Hash};
use net_mesh_engine::index::{blob_id, check_pin_name};
use net_mesh_engine::write::{CommitWhenFull, FinishedUpload, Upload};
use net_mesh_engine::{
    BlobRef, ChunkingStrategy, ErrorClass, GcOptions, ObjectKind, Store, Unpinned as EngineUnpinned,
};
use net_mesh_rpc::rpc::{
    Chunk, RequestStreamTyped, ResponseSink, Router, RpcClientStreamingHandler, RpcContext,
    RpcServerStreamingHandler, RpcUnaryHandler,
};
use net_mesh_rpc::{Endpoint, NodeId, RpcError};
use net_mesh_staging::{
    CheckpointCadence, Resumed, StagingConfig, StagingHandle, begin_streaming_store,
    resume_streaming_store,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_bytes::ByteBuf;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::allow::{Allow, AllowHook};
use crate::error::{Classified, NodeError, NodeResult};
use crate::metrics::Metrics;
use crate::proto::{
    BlobSpec, ChunkRow, GcDone, GcRequest, MAX_PIECE, Method, ObjectPart, PinRow, PullDone,
    PullRequest, PutDone, PutPart, PutStart, ReadRequest, Resolved, StagingRow, StagingState, Stat,
    Status, TAG_BLOB_TREE, Unpinned,
};

/// Most object ids one [`Method::Objects`] call may ask for.
pub const MAX_OBJECTS_PER_CALL: usize = 1024;

/// Messages of object data in flight between a read worker and the call's sink.
const READ_QUEUE: usize = 8;
/// Input pieces in flight between a put call and its worker.
const PUT_QUEUE: usize = 8;

/// A storage node: the store, who may call what, and what it reports.
#[derive(Debug)]
pub struct Node {
    store: Arc<Store>,
    node_id: NodeId,
    metrics: Arc<Metrics>,
    started: Instant,
    live_uploads: AtomicU64,
    /// Fires when the node shuts down: live uploads checkpoint and stop.
    shutdown: CancellationToken,
    /// The endpoint the node dials other nodes with (pulls), set once it exists.
    dialer: std::sync::OnceLock<Arc<Endpoint>>,
    /// Staging ids a put call is writing right now: one call writes an upload at a time.
    writing: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// A put call's claim on its staging id, released when the call's worker is done.
struct Writing<'n> {
    node: &'n Node,
    staging_id: String,
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        if let Ok(mut writing) = self.node.writing.lock() {
            writing.remove(&self.staging_id);
        }
    }
}

impl Node {
    pub fn new(store: Arc<Store>, node_id: NodeId) -> Arc<Node> {
        Arc::new(Node {
            store,
            node_id,
            metrics: Arc::new(Metrics::default()),
            started: Instant::now(),
            live_uploads: AtomicU64::new(0),
            shutdown: CancellationToken::new(),
            dialer: std::sync::OnceLock::new(),
            writing: std::sync::Mutex::new(std::collections::HashSet::new()),
        })
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Gives the node the endpoint it dials other nodes with (the one it serves on).
    pub fn set_dialer(&self, endpoint: Arc<Endpoint>) {
        let _ = self.dialer.set(endpoint);
    }

    /// Makes live uploads checkpoint and stop; new uploads are refused.
    pub fn shut_down(&self) {
        self.shutdown.cancel();
    }

    /// Uploads in progress right now.
    pub fn live_uploads(&self) -> u64 {
        self.live_uploads.load(Ordering::SeqCst)
    }

    /// The node's status; sets the metrics' gauges to the same numbers, so call it before
    /// rendering the metrics.
    pub async fn status(self: &Arc<Self>) -> NodeResult<Status> {
        let (store_bytes, blobs, live) = self
            .blocking(move |store| {
                let blobs = store.pins().node_err()?.pins.len() as u64;
                let live = net_mesh_staging::list_staging(store).node_err()?.len() as u64;
                Ok((store.disk_bytes(), blobs, live))
            })
            .await?;
        let open_sessions = self.dialer.get().map_or(0, |e| {
            let m = e.metrics();
            m.sessions_opened
                .load(Ordering::Relaxed)
                .saturating_sub(m.sessions_closed.load(Ordering::Relaxed))
        });
        self.metrics
            .set_gauges(live, store_bytes, open_sessions, blobs);
        let (bytes_in, bytes_out) = self.metrics.transferred();
        Ok(Status {
            node_id: self.node_id.to_hex(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_secs: self.started.elapsed().as_secs(),
            store_bytes,
            blob_count: blobs,
            live_uploads: live,
            open_sessions,
            bytes_in,
            bytes_out,
            capabilities: self
                .dialer
                .get()
                .map(|e| e.config().capabilities.iter().map(str::to_string).collect())
                .unwrap_or_default(),
        })
    }

    /// The router to serve: every method of [`Method`], behind the allow list.
    pub fn router(self: &Arc<Self>, allow: Allow) -> Router {
        let n = self;
        Router::new()
            .unary(Method::Status.name(), unary(n, Method::Status, status_impl))
            .server_streaming(Method::List.name(), streaming(n, Method::List, list_impl))
            .unary(
                Method::Resolve.name(),
                unary(n, Method::Resolve, resolve_impl),
            )
            .unary(Method::Stat.name(), unary(n, Method::Stat, stat_impl))
            .server_streaming(Method::Read.name(), streaming(n, Method::Read, read_impl))
            .server_streaming(
                Method::Chunks.name(),
                streaming(n, Method::Chunks, chunks_impl),
            )
            .unary(Method::Remove.name(), unary(n, Method::Remove, remove_impl))
            .client_streaming(Method::Put.name(), PutHandler(Arc::clone(n)))
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
            .server_streaming(
                Method::Objects.name(),
                streaming(n, Method::Objects, objects_impl),
            )
            .unary(Method::Pull.name(), unary(n, Method::Pull, pull_impl))
            .unary(Method::Gc.name(), unary(n, Method::Gc, gc_impl))
            .authorize(AllowHook {
                allow,
                metrics: Arc::clone(&self.metrics),
            })
    }

    /// Claims `staging_id` for one put call; busy while another call still writes it (a
    /// client that lost its connection and came back before the node noticed).
    fn claim(&self, staging_id: &str) -> NodeResult<Writing<'_>> {
        let mut writing = self
            .writing
            .lock()
            .map_err(|_| NodeError::new(ErrorClass::Io, "the upload registry is poisoned"))?;
        if !writing.insert(staging_id.to_string()) {
            return Err(NodeError::new(
                ErrorClass::Busy,
                format!("upload {staging_id} is still being written by another call; retry"),
            ));
        }
        Ok(Writing {
            node: self,
            staging_id: staging_id.to_string(),
        })
    }

    /// Runs `work` on a blocking thread with the store.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Store) -> NodeResult<T> + Send + 'static,
    ) -> NodeResult<T> {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || work(&store))
            .await
            .map_err(|e| NodeError::new(ErrorClass::Io, format!("worker failed: {e}")))?
    }
}

// ---- handler adapters: each wraps an `*_impl` once (error mapping, metrics) --------------

type UnaryFn<Req, Resp, F> = (Arc<Node>, Method, F, PhantomData<fn(Req) -> Resp>);

struct Unary<Req, Resp, F>(UnaryFn<Req, Resp, F>);

fn unary<Req, Resp, F>(node: &Arc<Node>, method: Method, f: F) -> Unary<Req, Resp, F> {
    Unary((Arc::clone(node), method, f, PhantomData))
}

impl<Req, Resp, F, Fut> RpcUnaryHandler for Unary<Req, Resp, F>
where
    Req: DeserializeOwned + Send + 'static,
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
}

struct Streaming<Req, Resp, F>(UnaryFn<Req, Resp, F>);

fn streaming<Req, Resp, F>(node: &Arc<Node>, method: Method, f: F) -> Streaming<Req, Resp, F> {
    Streaming((Arc::clone(node), method, f, PhantomData))
}

impl<Req, Resp, F, Fut> RpcServerStreamingHandler for Streaming<Req, Resp, F>
where
    Req: DeserializeOwned + Send + 'static,
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

fn sent(e: RpcError) -> NodeError {
    NodeError::new(ErrorClass::Io, format!("sending: {e}"))
}

// ---- blobs -------------------------------------------------------------------------------

fn decode_ref(bytes: &[u8]) -> NodeResult<BlobRef> {
    BlobRef::decode(bytes)
        .map_err(|e| NodeError::new(ErrorClass::Usage, format!("blob ref does not decode: {e}")))
}

/// The ref a spec names, and its pin name if it is pinned.
fn resolve(store: &Store, spec: &BlobSpec) -> NodeResult<(BlobRef, Option<String>)> {
    match spec {
        BlobSpec::Ref(bytes) => {
            let blob_ref = decode_ref(bytes)?;
            let name = store
                .reader()
                .node_err()?
                .pin(&blob_id(&blob_ref))
                .node_err()?
                .map(|p| p.name);
            Ok((blob_ref, name))
        }
        BlobSpec::IdPrefix(prefix) => {
            let (_, pin) = store.find_pin(prefix).node_err()?;
            Ok((pin.blob_ref, Some(pin.name)))
        }
    }
}

/// Refuses, before anything is sent, to hand a Tree ref's objects to a peer that did not
/// announce it reads them.
fn gate_tree(ctx: &RpcContext, blob_ref: &BlobRef) -> NodeResult<()> {
    if matches!(blob_ref, BlobRef::Tree { .. })
        && !ctx.peer().capabilities().contains(TAG_BLOB_TREE)
    {
        return Err(NodeError::new(
            ErrorClass::Refused,
            format!("the blob is a Tree and the peer does not announce {TAG_BLOB_TREE}"),
        ));
    }
    Ok(())
}

async fn status_impl(node: Arc<Node>, _: RpcContext, _: ()) -> NodeResult<Status> {
    node.status().await
}

async fn list_impl(
    node: Arc<Node>,
    _: RpcContext,
    _: (),
    mut sink: ResponseSink<PinRow>,
) -> NodeResult<()> {
    let listing = node.blocking(|store| store.pins().node_err()).await?;
    for (id, pin) in listing.pins {
        sink.send(&PinRow::Pin {
            blob_id: id,
            name: pin.name,
            blob_ref: ByteBuf::from(pin.blob_ref.encode()),
            created_unix_ms: pin.created_unix_ms,
        })
        .await
        .map_err(sent)?;
    }
    for bad in listing.bad {
        sink.send(&PinRow::Undecodable {
            blob_id: bad.id,
            error: bad.error.to_string(),
        })
        .await
        .map_err(sent)?;
    }
    Ok(())
}

async fn resolve_impl(node: Arc<Node>, _: RpcContext, spec: BlobSpec) -> NodeResult<Resolved> {
    let (blob_ref, name) = node.blocking(move |store| resolve(store, &spec)).await?;
    Ok(Resolved {
        blob_ref: ByteBuf::from(blob_ref.encode()),
        name,
    })
}

async fn stat_impl(node: Arc<Node>, _: RpcContext, spec: BlobSpec) -> NodeResult<Stat> {
    node.blocking(move |store| {
        let (blob_ref, _) = resolve(store, &spec)?;
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

/// Streams `parts` from a worker to `sink` until the worker ends; returns the worker's result.
async fn forward(
    mut parts: mpsc::Receiver<ObjectPart>,
    sink: &mut ResponseSink<ObjectPart>,
    metrics: &Metrics,
) -> NodeResult<()> {
    while let Some(part) = parts.recv().await {
        if let ObjectPart::Piece(bytes) = &part {
            metrics.sent(bytes.len() as u64);
        }
        sink.send(&part).await.map_err(sent)?;
    }
    Ok(())
}

/// The parts of one answer: the object in pieces, or `Missing`.
fn object_parts(
    hash: &Hash,
    kind: ObjectKind,
    answer: Result<&[u8], String>,
    send: &mut dyn FnMut(ObjectPart) -> bool,
) -> bool {
    match answer {
        Ok(bytes) => {
            let Ok(len) = u32::try_from(bytes.len()) else {
                return false;
            };
            if !send(ObjectPart::Object {
                hash: *hash,
                kind: kind as u8,
                len,
            }) {
                return false;
            }
            bytes
                .chunks(MAX_PIECE)
                .all(|piece| send(ObjectPart::Piece(ByteBuf::from(piece.to_vec()))))
        }
        Err(reason) => send(ObjectPart::Missing {
            hash: *hash,
            kind: kind as u8,
            reason,
        }),
    }
}

async fn read_impl(
    node: Arc<Node>,
    ctx: RpcContext,
    req: ReadRequest,
    mut sink: ResponseSink<ObjectPart>,
) -> NodeResult<()> {
    let blob_ref = decode_ref(&req.blob_ref)?;
    gate_tree(&ctx, &blob_ref)?;
    let (tx, rx) = mpsc::channel(READ_QUEUE);
    let worker = node.blocking(move |store| {
        let mut send = |part: ObjectPart| tx.blocking_send(part).is_ok();
        store
            .read_objects(&blob_ref, req.start..req.end, &mut |hash, kind, answer| {
                let answer = match answer {
                    Ok(bytes) => Ok(bytes.as_slice()),
                    Err(e) => Err(e.to_string()),
                };
                object_parts(hash, kind, answer, &mut send)
            })
            .node_err()
            .map(|_| ())
    });
    let (sent_all, worked) = tokio::join!(forward(rx, &mut sink, &node.metrics), worker);
    sent_all?;
    worked
}

async fn chunks_impl(
    node: Arc<Node>,
    _: RpcContext,
    spec: BlobSpec,
    mut sink: ResponseSink<ChunkRow>,
) -> NodeResult<()> {
    let rows = node
        .blocking(move |store| {
            let (blob_ref, _) = resolve(store, &spec)?;
            store.blob_chunks(&blob_ref).node_err()
        })
        .await?;
    for c in rows {
        sink.send(&ChunkRow {
            hash: c.hash,
            size: c.size,
            role: net_mesh_engine::erasure::stripe::role_name(c.role).to_string(),
            stripe: c.stripe,
        })
        .await
        .map_err(sent)?;
    }
    Ok(())
}

async fn remove_impl(node: Arc<Node>, _: RpcContext, spec: BlobSpec) -> NodeResult<Unpinned> {
    node.blocking(move |store| {
        let id = match &spec {
            BlobSpec::Ref(bytes) => blob_id(&decode_ref(bytes)?),
            BlobSpec::IdPrefix(prefix) => store.find_pin_id(prefix).node_err()?,
        };
        Ok(match store.unpin(&id).node_err()? {
            EngineUnpinned::NotPinned => Unpinned::NotPinned,
            EngineUnpinned::Removed => Unpinned::Removed,
            EngineUnpinned::RemovedUndecodable => Unpinned::RemovedUndecodable,
        })
    })
    .await
}

// ---- uploads -----------------------------------------------------------------------------

/// What a put call hands its worker.
enum PutInput {
    Data(Vec<u8>),
    /// The client went away or the node is shutting down: checkpoint and stop.
    Stop(NodeError),
}

struct PutHandler(Arc<Node>);

impl RpcClientStreamingHandler for PutHandler {
    type Req = PutPart;
    type Resp = PutDone;

    fn call(
        &self,
        _ctx: RpcContext,
        requests: RequestStreamTyped<PutPart>,
    ) -> impl Future<Output = Result<PutDone, RpcError>> + Send {
        let node = Arc::clone(&self.0);
        measured(Arc::clone(&node), Method::Put, put_impl(node, requests))
    }
}

fn chunking(text: &Option<String>, store: &Store) -> NodeResult<ChunkingStrategy> {
    match text {
        None => Ok(store.config().chunking),
        Some(t) => t
            .parse()
            .map_err(|e| NodeError::new(ErrorClass::Usage, format!("chunking {t:?}: {e}"))),
    }
}

fn cadence(interval: Option<u64>) -> CheckpointCadence {
    let mut c = CheckpointCadence::default();
    if let Some(i) = interval {
        c.interval_bytes = i.max(1);
    }
    c
}

async fn next_part(requests: &mut RequestStreamTyped<PutPart>) -> NodeResult<Option<PutPart>> {
    loop {
        match requests.next_chunk().await {
            Ok(Chunk::Init { .. }) => {}
            Ok(Chunk::Data { item, .. }) => return Ok(Some(item)),
            Ok(Chunk::End) => return Ok(None),
            Err(e) => return Err(NodeError::from_rpc(&e)),
        }
    }
}

async fn put_impl(
    node: Arc<Node>,
    mut requests: RequestStreamTyped<PutPart>,
) -> NodeResult<PutDone> {
    if node.shutdown.is_cancelled() {
        return Err(NodeError::new(
            ErrorClass::Busy,
            "the node is shutting down",
        ));
    }
    let start = match next_part(&mut requests).await? {
        Some(PutPart::Start(start)) => start,
        _ => {
            return Err(NodeError::new(
                ErrorClass::Usage,
                "a put starts with a Start message",
            ));
        }
    };
    let _writing = match &start {
        PutStart::Begin {
            staging_id: Some(id),
            ..
        }
        | PutStart::Resume { staging_id: id, .. } => Some(node.claim(id)?),
        _ => None,
    };
    node.live_uploads.fetch_add(1, Ordering::SeqCst);
    let (tx, rx) = std::sync::mpsc::sync_channel::<PutInput>(PUT_QUEUE);
    let worker = node.blocking(move |store| put_worker(store, start, rx));
    let feed = async {
        loop {
            let next = tokio::select! {
                biased;
                _ = node.shutdown.cancelled() => Err(NodeError::new(
                    ErrorClass::Busy,
                    "the node is shutting down; the upload checkpointed: resume it",
                )),
                part = next_part(&mut requests) => part,
            };
            let input = match next {
                Ok(Some(PutPart::Data(bytes))) => {
                    node.metrics.received(bytes.len() as u64);
                    PutInput::Data(bytes.into_vec())
                }
                Ok(None) => return,
                Ok(Some(PutPart::Start(_))) => PutInput::Stop(NodeError::new(
                    ErrorClass::Usage,
                    "a put has one Start message",
                )),
                Err(e) => PutInput::Stop(e),
            };
            let stop = matches!(input, PutInput::Stop(_));
            let tx = tx.clone();
            // The worker may be busy; wait for room without blocking the runtime.
            if tokio::task::spawn_blocking(move || tx.send(input))
                .await
                .map_or(true, |sent| sent.is_err())
                || stop
            {
                return;
            }
        }
    };
    feed.await;
    drop(tx);
    let result = worker.await;
    node.live_uploads.fetch_sub(1, Ordering::SeqCst);
    result
}

fn put_worker(
    store: &Store,
    start: PutStart,
    input: std::sync::mpsc::Receiver<PutInput>,
) -> NodeResult<PutDone> {
    let (mut handle, staging_id, resumed_from) = match start {
        PutStart::Begin {
            staging_id,
            name,
            chunking: chunking_text,
            checkpoint_interval,
        } => {
            let handle = begin_streaming_store(
                store,
                StagingConfig {
                    staging_id,
                    pin_name: name,
                    chunking: chunking(&chunking_text, store)?,
                    tree: store.config().tree,
                    cadence: cadence(checkpoint_interval),
                },
            )
            .node_err()?;
            let id = handle.staging_id().to_string();
            (handle, id, 0)
        }
        PutStart::Resume {
            staging_id,
            offset,
            checkpoint_interval,
        } => match resume_streaming_store(store, &staging_id, cadence(checkpoint_interval))
            .node_err()?
        {
            Resumed::Live { writer, offset: at } => {
                if at != offset {
                    // The upload moved on since the client asked where it stands.
                    return Err(NodeError::new(
                        ErrorClass::Busy,
                        format!(
                            "upload {staging_id} resumes at offset {at}, the data starts at \
                             {offset}: ask where it stands again"
                        ),
                    ));
                }
                (*writer, staging_id, offset)
            }
            Resumed::Finished(outcome) => {
                return Ok(PutDone {
                    blob_ref: ByteBuf::from(outcome.blob_ref.encode()),
                    chunks: outcome.chunks,
                    new_chunks: 0,
                    new_bytes: 0,
                    staging_id: Some(staging_id),
                    resumed_from: None,
                });
            }
        },
        PutStart::ErasureCoded {
            name,
            chunking: chunking_text,
            k,
            n,
        } => return put_erasure_coded(store, &name, chunking_text, k, n, input),
    };
    for piece in input.iter() {
        match piece {
            PutInput::Data(bytes) => handle.write(&bytes).node_err()?,
            PutInput::Stop(why) => return Err(checkpointed(handle, why)),
        }
    }
    let outcome = handle.finish().node_err()?;
    Ok(PutDone {
        blob_ref: ByteBuf::from(outcome.blob_ref.encode()),
        chunks: outcome.chunks,
        new_chunks: outcome.new_chunks,
        new_bytes: outcome.new_bytes,
        staging_id: Some(staging_id),
        resumed_from: Some(resumed_from),
    })
}

/// Commits what `handle` holds as a checkpoint before the upload stops (so a resume re-sends
/// as little as possible) and returns why it stopped.
fn checkpointed(mut handle: StagingHandle<'_>, why: NodeError) -> NodeError {
    if let Err(e) = handle.checkpoint() {
        tracing::warn!(error = %e, "checkpoint of a stopped upload failed");
    }
    why
}

/// An erasure-coded upload with the chunking asked for (the store's without one).
fn put_erasure_coded(
    store: &Store,
    name: &str,
    chunking_text: Option<String>,
    k: u8,
    n: u8,
    input: std::sync::mpsc::Receiver<PutInput>,
) -> NodeResult<PutDone> {
    check_pin_name(name)
        .map_err(net_mesh_engine::StoreError::from)
        .node_err()?;
    let params = net_mesh_engine::RsParams::for_writing(k, n).node_err()?;
    let mut upload = Upload::new(
        store,
        chunking(&chunking_text, store)?,
        store.config().tree,
        params.encoding(),
    )
    .node_err()?;
    for piece in input.iter() {
        match piece {
            PutInput::Data(bytes) => upload.write(&bytes, &mut CommitWhenFull).node_err()?,
            PutInput::Stop(why) => return Err(why),
        }
    }
    let FinishedUpload {
        blob_ref,
        chunks,
        mut batch,
    } = upload.finish(&mut CommitWhenFull).node_err()?;
    batch.pin(&blob_ref, name);
    batch.commit().node_err()?;
    Ok(PutDone {
        blob_ref: ByteBuf::from(blob_ref.encode()),
        chunks,
        new_chunks: batch.new_chunks(),
        new_bytes: batch.new_bytes(),
        staging_id: None,
        resumed_from: None,
    })
}

async fn staging_list_impl(node: Arc<Node>, _: RpcContext, _: ()) -> NodeResult<Vec<StagingRow>> {
    node.blocking(|store| {
        Ok(net_mesh_staging::list_staging(store)
            .node_err()?
            .into_iter()
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

async fn staging_state_impl(
    node: Arc<Node>,
    _: RpcContext,
    id: String,
) -> NodeResult<StagingState> {
    node.blocking(move |store| {
        match resume_streaming_store(store, &id, CheckpointCadence::default()) {
            Ok(Resumed::Live { offset, .. }) => Ok(StagingState::Live {
                resume_offset: offset,
            }),
            Ok(Resumed::Finished(outcome)) => Ok(StagingState::Finished(PutDone {
                blob_ref: ByteBuf::from(outcome.blob_ref.encode()),
                chunks: outcome.chunks,
                new_chunks: 0,
                new_bytes: 0,
                staging_id: Some(id),
                resumed_from: None,
            })),
            Err(net_mesh_staging::StagingError::NotFound(_)) => Ok(StagingState::NotFound),
            Err(e) => Err(NodeError::from_classified(&e)),
        }
    })
    .await
}

async fn staging_abort_impl(node: Arc<Node>, _: RpcContext, id: String) -> NodeResult<bool> {
    node.blocking(move |store| net_mesh_staging::abort_staging_id(store, &id).node_err())
        .await
}

// ---- node to node ------------------------------------------------------------------------

async fn objects_impl(
    node: Arc<Node>,
    ctx: RpcContext,
    hashes: Vec<[u8; 32]>,
    mut sink: ResponseSink<ObjectPart>,
) -> NodeResult<()> {
    if hashes.len() > MAX_OBJECTS_PER_CALL {
        return Err(NodeError::new(
            ErrorClass::Usage,
            format!(
                "{} objects asked for in one call, at most {MAX_OBJECTS_PER_CALL}",
                hashes.len()
            ),
        ));
    }
    let reads_trees = ctx.peer().capabilities().contains(TAG_BLOB_TREE);
    let (tx, rx) = mpsc::channel(READ_QUEUE);
    let worker = node.blocking(move |store| {
        let mut send = |part: ObjectPart| tx.blocking_send(part).is_ok();
        for hash in &hashes {
            let answer = store.read_object(hash);
            let kind = match &answer {
                Ok(object) => object.kind,
                Err(_) => ObjectKind::Chunk,
            };
            if kind != ObjectKind::Chunk && !reads_trees {
                return Err(NodeError::new(
                    ErrorClass::Refused,
                    format!("tree nodes are only sent to peers announcing {TAG_BLOB_TREE}"),
                ));
            }
            let answer = match &answer {
                Ok(object) => Ok(object.bytes.as_slice()),
                Err(e) => Err(e.to_string()),
            };
            if !object_parts(hash, kind, answer, &mut send) {
                break;
            }
        }
        Ok(())
    });
    let (sent_all, worked) = tokio::join!(forward(rx, &mut sink, &node.metrics), worker);
    sent_all?;
    worked
}

async fn pull_impl(node: Arc<Node>, _: RpcContext, req: PullRequest) -> NodeResult<PullDone> {
    let blob_ref = decode_ref(&req.blob_ref)?;
    let from: net_mesh_rpc::NodeAddr = req
        .from
        .parse()
        .map_err(|e| NodeError::new(ErrorClass::Usage, format!("--from {}: {e}", req.from)))?;
    let dialer = node
        .dialer
        .get()
        .cloned()
        .ok_or_else(|| NodeError::new(ErrorClass::Busy, "the node cannot dial yet"))?;
    let session = dialer.connect_node(&from).await.map_err(|e| {
        NodeError::new(
            ErrorClass::Io,
            format!("connecting to {}: {e}", from.host_port),
        )
    })?;
    let client = crate::client::NodeClient::from_session(session);
    let runtime = tokio::runtime::Handle::current();
    let done = node
        .blocking(move |store| crate::pull::pull(store, &client, &runtime, &blob_ref, &req.name))
        .await?;
    node.metrics.received(done.bytes_fetched);
    Ok(done)
}

async fn gc_impl(node: Arc<Node>, _: RpcContext, req: GcRequest) -> NodeResult<GcDone> {
    let n = Arc::clone(&node);
    let report = node
        .blocking(move |store| {
            store
                .gc(&GcOptions {
                    grace: std::time::Duration::from_secs(req.grace_secs),
                    dry_run: req.dry_run,
                    ..GcOptions::default()
                })
                .node_err()
        })
        .await?;
    n.metrics.gc_ran();
    let report_json = serde_json::to_string(&report)
        .map_err(|e| NodeError::new(ErrorClass::Io, format!("encoding the gc report: {e}")))?;
    Ok(GcDone { report_json })
}
