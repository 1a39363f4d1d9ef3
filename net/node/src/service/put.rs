//! Remote uploads: a put call is a staging upload on the node, fed to a blocking worker.
//!
//! The call's task (the *feed*) takes the request stream's messages and hands the input to the
//! worker through a bounded channel of [`PUT_QUEUE`] pieces of at most [`MAX_PIECE`] bytes, so
//! an upload holds at most that much beyond the nRPC window, and a slow disk slows its client
//! through the window instead of growing a queue. The worker owns the staging handle and writes
//! the pieces — on two threads when the upload runs alone (`StagingHandle::write_from`: one
//! cuts chunks, the worker's own hashes, stores and checkpoints them on the upload's cadence),
//! else on its own; it finishes the blob only on the explicit end of the input. Whenever the feed stops first — the client's stream
//! fails or the session is lost, the client sends nothing for
//! [`NodeConfig::upload_idle_timeout`](crate::NodeConfig), the node shuts down, or the call's
//! task is dropped — the channel closes without that end, and the worker commits a checkpoint
//! of every chunk cut so far and returns: the upload stays live at a resume offset
//! (`staging_state`), and a `PutStart::Resume` from that offset finishes it to the same ref.
//! A worker counts as a live upload, and its staging id as in use, until it has returned.
//!
//! Each piece received waits for the upload's bandwidth ([`crate::bandwidth`]) before the feed
//! hands it over and reads the next, so a waiting upload stops its client through the window.
//! A resumable upload keeps the class it began with, and its counters, across its calls.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use net_mesh_engine::tree::TreePolicy;
use net_mesh_engine::write::{CommitWhenFull, FinishedUpload, Upload};
use net_mesh_engine::{ChunkingStrategy, ErrorClass, Store};
use net_mesh_rpc::rpc::{
    Chunk, Encoded, RawBytes, RequestStreamTyped, RpcClientStreamingHandler, RpcContext,
};
use net_mesh_rpc::{NodeId, RpcError};
use net_mesh_staging::{
    CheckpointCadence, InputEnd, Piece, Resumed, StagingConfig, StagingHandle,
    begin_streaming_store_in, resume_streaming_store,
};
use serde_bytes::ByteBuf;
use tokio::sync::mpsc;

use super::slots::{HeldBytes, Slot};
use super::staging::check_upload_channel;
use super::{Node, PinAt, measured, reads_trees, tree_refused, worker_failed};
use crate::bandwidth::LiveStream;
use crate::config::PUT_QUEUE;
use crate::error::{Classified, NodeError, NodeResult};
use crate::proto::{MAX_PIECE, Method, PutDone, PutPart, PutStart, Tagged, TreeShape};
use crate::replicas::Replicas;

/// How the feed ended.
enum Fed {
    /// The input's end was handed over.
    End,
    /// The worker stopped taking input (it failed; its result says why).
    WorkerGone,
    /// The feed stopped before the input's end, for this reason.
    Stopped(NodeError),
}

/// How a worker ended without a blob.
enum WorkerEnd {
    /// Its input stopped before the end; what was cut is checkpointed.
    Stopped,
    Failed(NodeError),
}

impl<E: net_mesh_engine::Classify + std::fmt::Display> From<E> for WorkerEnd {
    fn from(e: E) -> Self {
        WorkerEnd::Failed(NodeError::from_classified(&e))
    }
}

/// The cores this process may run on (read once: it may read the cgroup's quota files).
static CORES: std::sync::LazyLock<u64> =
    std::sync::LazyLock::new(|| std::thread::available_parallelism().map_or(1, |n| n.get()) as u64);

pub(super) struct PutHandler(pub(super) Arc<Node>);

impl RpcClientStreamingHandler for PutHandler {
    type Req = Encoded;
    type Resp = PutDone;

    fn call(
        &self,
        ctx: RpcContext,
        requests: RequestStreamTyped<Encoded>,
    ) -> impl Future<Output = Result<PutDone, RpcError>> + Send {
        let node = Arc::clone(&self.0);
        measured(
            Arc::clone(&node),
            Method::Put,
            put_impl(node, ctx, requests),
        )
    }
}

/// An upload worker's claim on the node: counted as live, its staging id in use, one upload
/// slot taken; all given back when the worker returns.
struct LiveUpload {
    node: Arc<Node>,
    staging_id: Option<String>,
    _slot: Slot,
}

impl LiveUpload {
    fn claim(node: &Arc<Node>, staging_id: Option<&str>, slot: Slot) -> NodeResult<LiveUpload> {
        if let Some(id) = staging_id {
            let mut live = node
                .live_ids
                .lock()
                .map_err(|_| NodeError::new(ErrorClass::Io, "the live upload table is poisoned"))?;
            if !live.insert(id.to_string()) {
                return Err(NodeError::new(
                    ErrorClass::Busy,
                    format!(
                        "upload {id} is still being written on this node (its last call has not \
                         checkpointed yet); try again"
                    ),
                ));
            }
        }
        node.live_uploads.fetch_add(1, Ordering::SeqCst);
        Ok(LiveUpload {
            node: Arc::clone(node),
            staging_id: staging_id.map(str::to_string),
            _slot: slot,
        })
    }
}

impl Drop for LiveUpload {
    fn drop(&mut self) {
        if let Some(id) = &self.staging_id
            && let Ok(mut live) = self.node.live_ids.lock()
        {
            live.remove(id);
        }
        self.node.live_uploads.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn next_part(requests: &mut RequestStreamTyped<Encoded>) -> NodeResult<Option<Part>> {
    loop {
        match requests.next_chunk().await {
            Ok(Chunk::Init { .. }) => {}
            Ok(Chunk::Data { item, .. }) => {
                return decode_part(item)
                    .map(Some)
                    .map_err(|e| NodeError::from_rpc(&e));
            }
            Ok(Chunk::End) => return Ok(None),
            Err(e) => return Err(NodeError::from_rpc(&e)),
        }
    }
}

/// A [`PutPart`] as the node takes it: a `Data` piece's bytes stay in the frame they arrived
/// in (no copy).
enum Part {
    Start(PutStart),
    Data(RawBytes),
}

/// Postcard's tag of [`PutPart::Data`] (its variant index, one byte).
const DATA_TAG: u8 = 1;

/// Decodes one put message, accepting what decoding a [`PutPart`] accepts with the same
/// result: a well-formed `Data` piece is taken without a copy ([`Tagged`]).
fn decode_part(message: Encoded) -> Result<Part, RpcError> {
    Ok(match Tagged::<PutPart>::decode(message, DATA_TAG)? {
        Tagged::Bytes(bytes) => Part::Data(bytes),
        Tagged::Other(PutPart::Start(start)) => Part::Start(start),
        Tagged::Other(PutPart::Data(bytes)) => Part::Data(RawBytes::from(bytes.into_vec())),
    })
}

/// Fuzz harness of the put message decoder: any bytes give what decoding a [`PutPart`] gives
/// (the same piece bytes, the same Start, or a refusal for both), never a panic.
pub fn fuzz_decode_put_part(data: &[u8]) {
    // As nRPC decodes a message typed `PutPart` (whole, nothing after it).
    let expected = Encoded::from(data.to_vec()).decode::<PutPart>().ok();
    let agree = match (decode_part(Encoded::from(data.to_vec())).ok(), expected) {
        (None, None) => true,
        (Some(Part::Data(got)), Some(PutPart::Data(want))) => got.as_slice() == want.as_slice(),
        (Some(Part::Start(got)), Some(PutPart::Start(want))) => got == want,
        _ => false,
    };
    assert!(agree, "decode_part and PutPart decode {data:?} differently");
}

/// The next message, or why there is none within the upload idle timeout or before shutdown.
async fn next_within(
    node: &Node,
    requests: &mut RequestStreamTyped<Encoded>,
) -> NodeResult<Option<Part>> {
    let idle = node.config.upload_idle_timeout;
    tokio::select! {
        biased;
        _ = node.shutdown.cancelled() => Err(NodeError::new(
            ErrorClass::Busy,
            "the node is shutting down; the upload checkpointed: resume it",
        )),
        next = tokio::time::timeout(idle, next_part(requests)) => next.unwrap_or_else(|_| {
            Err(NodeError::new(
                ErrorClass::Busy,
                format!("no data for {idle:?}; the upload checkpointed: resume it"),
            ))
        }),
    }
}

async fn put_impl(
    node: Arc<Node>,
    ctx: RpcContext,
    mut requests: RequestStreamTyped<Encoded>,
) -> NodeResult<PutDone> {
    if node.shutdown.is_cancelled() {
        return Err(NodeError::new(
            ErrorClass::Busy,
            "the node is shutting down",
        ));
    }
    if !reads_trees(&ctx) {
        // The answer is a ref, and whether it is a Tree is known only at the end.
        return Err(tree_refused("a put answers with a ref that may be a Tree"));
    }
    let channel = super::channel_of(&ctx)?;
    let slot = node.uploads.take(ctx.peer().node_id())?;
    let start = match next_within(&node, &mut requests).await? {
        Some(Part::Start(start)) => start,
        _ => {
            return Err(NodeError::new(
                ErrorClass::Usage,
                "a put starts with a Start message",
            ));
        }
    };
    let start = match start {
        // A fresh id now, so the upload is claimed under it like any other.
        PutStart::Begin {
            staging_id: None,
            name,
            chunking,
            tree,
            checkpoint_interval,
            class,
            name_given,
        } => PutStart::Begin {
            staging_id: Some(net_mesh_staging::new_staging_id()),
            name,
            chunking,
            tree,
            checkpoint_interval,
            class,
            name_given,
        },
        other => other,
    };
    let (claimed_id, class) = match &start {
        PutStart::Begin {
            staging_id, class, ..
        } => (staging_id.as_deref(), *class),
        PutStart::Resume {
            staging_id, class, ..
        } => (Some(staging_id.as_str()), *class),
        PutStart::ErasureCoded { class, .. } => (None, *class),
    };
    // Checked before the id keys anything (the live table, the bandwidth counters): a peer's
    // id of any length would otherwise be kept until pruned.
    if let Some(id) = claimed_id
        && !net_mesh_staging::valid_staging_id(id)
    {
        return Err(NodeError::from_classified(
            &net_mesh_staging::StagingError::InvalidId(short_id(id)),
        ));
    }
    // An erasure-coded upload's parity comes out of the node's budget for it.
    let parity = match &start {
        PutStart::ErasureCoded { chunking, k, n, .. } => Some(erasure_bytes(
            &node,
            ctx.peer().node_id(),
            chunking.as_deref(),
            *k,
            *n,
        )?),
        _ => None,
    };
    let live = LiveUpload::claim(&node, claimed_id, slot)?;
    let stream = match claimed_id {
        Some(id) => node.bandwidth.open_upload(id, class),
        None => node.bandwidth.open("put", class),
    };
    let finished_id = claimed_id.map(str::to_string);
    let (tx, rx) = mpsc::channel(PUT_QUEUE);
    let store = Arc::clone(&node.store);
    // Which channel the blob lands in is known in the worker (a resumed upload is refused
    // unless the call names the channel it began in).
    let replicas = node.replicas().cloned();
    let held_by = replicas.clone();
    let pinned_in = channel.clone();
    // A second (cutting) thread only while the node has a core for it beside one per live
    // upload (this one counted): with as many uploads as cores the cores are busy anyway,
    // and a split upload holds the pieces of one more chunk.
    let split = node.live_uploads() < *CORES;
    let worker = tokio::task::spawn_blocking(move || {
        let _live = live;
        let _parity = parity;
        put_worker(&store, &channel, held_by.as_deref(), start, rx, split)
    });
    let fed = feed(&node, &stream, &mut requests, &tx).await;
    drop(tx);
    let result = worker.await.map_err(worker_failed)?;
    if let (Some(id), Ok(_)) = (&finished_id, &result) {
        node.bandwidth.upload_finished(id);
    }
    match (fed, result) {
        (Fed::Stopped(why), _) => Err(why),
        (
            _,
            Ok(Finished {
                mut done,
                pin_as,
                given,
            }),
        ) => {
            let blob_ref = super::decode_ref(&done.blob_ref)?;
            if let (Some(replicas), Some((channel, name))) = (&replicas, pin_as) {
                replicas.pin(&channel, &blob_ref, &name).await?;
            }
            let replicated = replicas
                .as_ref()
                .is_some_and(|r| r.is_replicated(&pinned_in));
            done.pin_name = super::resulting_pin_name(
                &node,
                ctx.peer().node_id(),
                &pinned_in,
                &blob_ref,
                given.as_deref(),
                replicated,
            )
            .await?;
            Ok(done)
        }
        (_, Err(WorkerEnd::Failed(e))) => Err(e),
        (_, Err(WorkerEnd::Stopped)) => Err(NodeError::new(
            ErrorClass::Io,
            "the upload stopped before its end; it checkpointed: resume it",
        )),
    }
}

/// Hands the call's input to the worker until its end, or until the feed has to stop.
async fn feed(
    node: &Node,
    stream: &LiveStream,
    requests: &mut RequestStreamTyped<Encoded>,
    tx: &mpsc::Sender<Piece>,
) -> Fed {
    loop {
        let input = match next_within(node, requests).await {
            Err(why) => return Fed::Stopped(why),
            Ok(None) => Piece::End,
            Ok(Some(Part::Data(bytes))) if bytes.len() > MAX_PIECE => {
                return Fed::Stopped(NodeError::new(
                    ErrorClass::Usage,
                    format!("a put piece of {} bytes; at most {MAX_PIECE}", bytes.len()),
                ));
            }
            Ok(Some(Part::Data(bytes))) => {
                node.metrics.received(bytes.len() as u64);
                Piece::Data(Bytes::from_owner(bytes))
            }
            Ok(Some(Part::Start(_))) => {
                return Fed::Stopped(NodeError::new(
                    ErrorClass::Usage,
                    "a put has one Start message",
                ));
            }
        };
        if let Piece::Data(bytes) = &input {
            tokio::select! {
                biased;
                _ = node.shutdown.cancelled() => return Fed::Stopped(NodeError::new(
                    ErrorClass::Busy,
                    "the node is shutting down; the upload checkpointed: resume it",
                )),
                () = stream.acquire(bytes.len() as u64) => {}
            }
        }
        let end = matches!(input, Piece::End);
        // Waits while the worker is busy: the window then stops the client.
        let handed = tokio::select! {
            biased;
            _ = node.shutdown.cancelled() => return Fed::Stopped(NodeError::new(
                ErrorClass::Busy,
                "the node is shutting down; the upload checkpointed: resume it",
            )),
            handed = tx.send(input) => handed,
        };
        if handed.is_err() {
            return Fed::WorkerGone;
        }
        if end {
            return Fed::End;
        }
    }
}

/// The chunking and tree policy a put asks for, the store's where it asks for none.
fn layout(
    store: &Store,
    chunking: Option<&str>,
    tree: Option<TreeShape>,
) -> NodeResult<(ChunkingStrategy, TreePolicy)> {
    let usage = |what: &str, e: &dyn std::fmt::Display| {
        NodeError::new(ErrorClass::Usage, format!("{what}: {e}"))
    };
    let chunking = match chunking {
        None => store.config().chunking,
        Some(t) => t
            .parse()
            .map_err(|e| usage(&format!("chunking {t:?}"), &e))?,
    };
    let policy = match tree {
        None => store.config().tree,
        Some(shape) => {
            let policy = TreePolicy {
                leaf_fanout: shape.leaf_fanout as usize,
                internal_fanout: shape.internal_fanout as usize,
                manifest_max_refs: shape.manifest_max_refs as usize,
            };
            policy.validate().map_err(|e| usage("tree shape", &e))?;
            policy
        }
    };
    Ok((chunking, policy))
}

/// Takes what an erasure-coded upload of `--rs k,n` with `chunking` holds for its parity
/// from the node's budget: usage for invalid parameters or one needing more than the whole
/// budget, busy while the other uploads hold too much of it.
fn erasure_bytes(
    node: &Node,
    peer: NodeId,
    chunking: Option<&str>,
    k: u8,
    n: u8,
) -> NodeResult<HeldBytes> {
    let (chunking, _) = layout(&node.store, chunking, None)?;
    let params = net_mesh_engine::RsParams::for_writing(k, n).node_err()?;
    let needs = net_mesh_engine::write::erasure_put_bytes(params, chunking.max_chunk());
    let needs = usize::try_from(needs).unwrap_or(usize::MAX);
    // The most one identity may hold: an upload needing more could never run.
    let max = node.erasure_bytes.max_per_peer();
    if needs > max {
        return Err(NodeError::new(
            ErrorClass::Usage,
            format!(
                "an erasure-coded upload of --rs {k},{n} with chunks of up to {} bytes holds \
                 {needs} bytes of parity, more than this node allows one identity ({max}): use \
                 smaller chunks or fewer parity shards",
                chunking.max_chunk()
            ),
        ));
    }
    node.erasure_bytes.take(peer, needs)
}

fn cadence(interval: Option<u64>) -> CheckpointCadence {
    let mut c = CheckpointCadence::default();
    if let Some(i) = interval {
        c.interval_bytes = i.max(1);
    }
    c
}

fn done(
    outcome: net_mesh_engine::PutOutcome,
    staging_id: Option<String>,
    from: Option<u64>,
) -> PutDone {
    PutDone {
        blob_ref: ByteBuf::from(outcome.blob_ref.encode()),
        chunks: outcome.chunks,
        new_chunks: outcome.new_chunks,
        new_bytes: outcome.new_bytes,
        staging_id,
        resumed_from: from,
        pin_name: None,
    }
}

/// What a worker's put finished: its answer, on a replicated channel the channel and name the
/// blob (held, not pinned) is to be pinned under through the group, and the pin name the user
/// gave, if any (a replicated pin is not renamed: another name is refused instead).
struct Finished {
    done: PutDone,
    pin_as: Option<(String, String)>,
    /// From the Start message, or for a resumed upload from its checkpoint: a `Resume`
    /// carries no name, and finishes the upload as its `Begin` asked.
    given: Option<String>,
}

/// The worker of one put (on a blocking thread): opens the upload in `channel` or resumes it
/// (refused unless it began in `channel`), writes the input, and finishes on its end or
/// checkpoints when the input closes first; on two threads when `split`. On a channel `replicas`
/// replicates, the finished blob is held, not pinned; the caller proposes its pin.
fn put_worker(
    store: &Store,
    channel: &str,
    all_replicas: Option<&dyn Replicas>,
    start: PutStart,
    mut input: mpsc::Receiver<Piece>,
    split: bool,
) -> Result<Finished, WorkerEnd> {
    let replicated_in = |channel: &str| all_replicas.filter(|r| r.is_replicated(channel));
    let (mut handle, staging_id, resumed_from) = match start {
        PutStart::Begin {
            staging_id,
            name,
            chunking,
            tree,
            checkpoint_interval,
            class: _,
            name_given,
        } => {
            let (chunking, tree) =
                layout(store, chunking.as_deref(), tree).map_err(WorkerEnd::Failed)?;
            let handle = begin_streaming_store_in(
                store,
                channel,
                StagingConfig {
                    staging_id,
                    pin_name: name,
                    pin_name_given: name_given,
                    chunking,
                    tree,
                    cadence: cadence(checkpoint_interval),
                },
            )?;
            let id = handle.staging_id().to_string();
            (handle, id, 0)
        }
        PutStart::Resume {
            staging_id,
            offset,
            checkpoint_interval,
            class: _,
        } => {
            // Only a call naming the upload's own channel resumes or finishes it; checked
            // before the upload is opened, so a refusal changes nothing. The id is claimed by
            // this call, so no other put begins or finishes it in between.
            check_upload_channel(store, &staging_id, channel).map_err(WorkerEnd::Failed)?;
            match resume_streaming_store(store, &staging_id, cadence(checkpoint_interval))? {
                Resumed::Live { writer, offset: at } => {
                    if at != offset {
                        return Err(WorkerEnd::Failed(NodeError::new(
                            ErrorClass::Refused,
                            format!(
                                "upload {staging_id} resumes at offset {at}, the data starts at {offset}"
                            ),
                        )));
                    }
                    (*writer, staging_id, offset)
                }
                Resumed::Finished {
                    outcome,
                    channel: finished_in,
                    name,
                    name_given,
                } => {
                    // Finished before, in the channel (the call's, checked above) and under the
                    // name its record keeps (and, as the finish did, a name given that the
                    // pin does not have is refused on a replicated channel: answered as the
                    // put was). On a replicated channel the finish only held
                    // the blob, and its pin may never have been proposed (the node died in
                    // between): proposed now unless pinned here already. Elsewhere the finish
                    // pinned it.
                    let given = name_given.then(|| name.clone());
                    let pin_as = match replicated_in(&finished_in) {
                        Some(_) => unapplied(store, finished_in, name, &outcome.blob_ref)?,
                        None => None,
                    };
                    return Ok(Finished {
                        done: done(outcome, Some(staging_id), None),
                        pin_as,
                        given,
                    });
                }
            }
        }
        PutStart::ErasureCoded {
            name,
            chunking,
            tree,
            k,
            n,
            class: _,
            name_given,
        } => {
            let (chunking, tree) =
                layout(store, chunking.as_deref(), tree).map_err(WorkerEnd::Failed)?;
            let replicas = replicated_in(channel);
            let pin = PinAt {
                channel,
                name: &name,
                given: name_given,
                replicas,
            };
            let done = put_erasure_coded(store, pin, chunking, tree, (k, n), input)?;
            return Ok(Finished {
                done,
                given: name_given.then(|| name.clone()),
                pin_as: replicas.map(|_| (channel.to_string(), name)),
            });
        }
    };
    // Cut on one thread and stored on this one when `split`; a closed queue (the feed
    // stopped) is `None`.
    let next = || input.blocking_recv();
    let end = if split {
        handle.write_from(next)?
    } else {
        handle.write_from_on_this_thread(next)?
    };
    if end == InputEnd::Stopped {
        return Err(checkpointed(handle));
    }
    let replicas = replicated_in(handle.channel());
    let pin_as = replicas.map(|_| (handle.channel().to_string(), handle.pin_name().to_string()));
    let given = handle
        .pin_name_given()
        .then(|| handle.pin_name().to_string());
    let outcome = match replicas {
        Some(replicas) => {
            let at = handle.channel().to_string();
            let held = handle.finish_held(|blob_ref| replicas.hold(&at, blob_ref))?;
            // Held and recorded, its pin not proposed yet: a resume of the staging id
            // proposes it from the finished record.
            net_mesh_segments::failpoint::hit("node.put.before_replicated_pin");
            held
        }
        None => handle.finish()?,
    };
    Ok(Finished {
        done: done(outcome, Some(staging_id), Some(resumed_from)),
        pin_as,
        given,
    })
}

/// `(channel, name)` when `blob_ref` is not pinned in `channel` on this node yet.
fn unapplied(
    store: &Store,
    channel: String,
    name: String,
    blob_ref: &net_mesh_engine::BlobRef,
) -> Result<Option<(String, String)>, WorkerEnd> {
    let id = net_mesh_engine::index::blob_id(blob_ref);
    let pinned = store
        .reader()
        .node_err()
        .and_then(|r| r.pin_in(&channel, &id).node_err())
        .map_err(WorkerEnd::Failed)?;
    Ok(pinned.is_none().then_some((channel, name)))
}

/// Commits what `handle` holds as a checkpoint before the upload stops (so a resume re-sends
/// as little as possible).
fn checkpointed(mut handle: StagingHandle<'_>) -> WorkerEnd {
    match handle.checkpoint() {
        Ok(()) => WorkerEnd::Stopped,
        Err(e) => {
            tracing::warn!(error = %e, "checkpoint of a stopped upload failed");
            WorkerEnd::Failed(NodeError::from_classified(&e))
        }
    }
}

/// An erasure-coded put (not resumable): nothing is pinned unless the input ends.
fn put_erasure_coded(
    store: &Store,
    pin: PinAt<'_>,
    chunking: ChunkingStrategy,
    tree: TreePolicy,
    (k, n): (u8, u8),
    mut input: mpsc::Receiver<Piece>,
) -> Result<PutDone, WorkerEnd> {
    let PinAt { channel, name, .. } = &pin;
    let (channel, name) = (*channel, *name);
    net_mesh_engine::index::check_pin_name(name)
        .map_err(|e| WorkerEnd::Failed(NodeError::new(ErrorClass::Usage, e.to_string())))?;
    if !store
        .has_channel(channel)
        .node_err()
        .map_err(WorkerEnd::Failed)?
    {
        return Err(WorkerEnd::Failed(NodeError::from_classified(
            &net_mesh_engine::StoreError::NoSuchChannel(channel.to_string()),
        )));
    }
    let params = net_mesh_engine::RsParams::for_writing(k, n)
        .node_err()
        .map_err(WorkerEnd::Failed)?;
    let mut upload = Upload::new(store, chunking, tree, params.encoding())?;
    loop {
        match input.blocking_recv() {
            Some(Piece::Data(bytes)) => upload.write(&bytes, &mut CommitWhenFull)?,
            Some(Piece::End) => break,
            None => return Err(WorkerEnd::Stopped),
        }
    }
    let FinishedUpload {
        blob_ref,
        chunks,
        mut batch,
    } = upload.finish(&mut CommitWhenFull)?;
    match pin.hold(&blob_ref) {
        Some(hold) => batch.push_op(hold),
        None => batch.pin_named_in(channel, &blob_ref, &pin.pin_name()),
    }
    batch.commit()?;
    Ok(done(
        net_mesh_engine::PutOutcome {
            blob_id: net_mesh_engine::index::blob_id(&blob_ref),
            blob_ref,
            chunks,
            new_chunks: batch.new_chunks(),
            new_bytes: batch.new_bytes(),
        },
        None,
        None,
    ))
}

/// An id refused as invalid, cut to what an error message should repeat of it.
fn short_id(id: &str) -> String {
    match id.char_indices().nth(80) {
        Some((at, _)) => format!("{}… ({} bytes)", id.get(..at).unwrap_or(""), id.len()),
        None => id.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    fn wire(part: &PutPart) -> Vec<u8> {
        postcard::to_stdvec(part).unwrap()
    }

    /// `decode_part` accepts exactly what decoding a `PutPart` accepts (docs/FORMAT.md §6.2:
    /// bytes after a complete message are ignored), with the same result: pieces of several
    /// sizes, whole, with bytes after them, cut short; Start messages; and arbitrary bytes.
    #[test]
    fn put_messages_decode_as_putpart_decodes() {
        let start = PutStart::Resume {
            staging_id: "u1".into(),
            offset: 9,
            checkpoint_interval: None,
            class: Default::default(),
        };
        let piece = |data: Vec<u8>| wire(&PutPart::Data(ByteBuf::from(data)));
        let others = vec![wire(&PutPart::Start(start))];
        let mut pieces = 0;
        for bytes in crate::proto::tagged_decoder_probes(DATA_TAG, piece, others) {
            pieces += usize::from(matches!(
                postcard::from_bytes::<PutPart>(&bytes),
                Ok(PutPart::Data(_))
            ));
            fuzz_decode_put_part(&bytes);
        }
        assert!(pieces > 12, "{pieces} pieces among the messages");
    }
}
