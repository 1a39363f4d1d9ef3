//! Objects out: verified reads streamed as the objects the read asks for (`read`), objects by
//! id for pulls (`objects`), and which objects the node has (`has`).
//!
//! A stream's worker (a blocking thread) reads and verifies objects and hands their parts to
//! the call through a channel of [`READ_QUEUE`] messages; the call sends each when the peer's
//! window has room. So a stream holds at most that queue plus the object being read, a peer
//! that stops reading stops the worker (it waits on the full queue), and one that makes no
//! room for [`NodeConfig::send_timeout`](crate::NodeConfig) ends its call; the worker then
//! sees the queue closed and returns.
//!
//! Each piece waits for its stream's bandwidth ([`crate::bandwidth`]) before it is sent: a
//! `read` in the class it asks for, an `objects` stream (a pull's source side) as foreground
//! (the pulling node holds its own pull to the pull's class).
//!
//! Gating: a Tree ref's objects go only to a peer that announced [`TAG_BLOB_TREE`]; `read` of
//! a Tree ref and `objects` naming any tree node are refused before anything is sent.

use std::sync::Arc;

use bytes::Bytes;
use net_mesh_engine::codec::Hash;
use net_mesh_engine::{BlobError, ErrorClass, ObjectKind, Store};
use net_mesh_rpc::rpc::{ResponseSink, RpcContext};
use tokio::sync::mpsc;

use super::{Node, decode_ref, gate_tree, reads_trees, send_within, tree_refused, worker_failed};
use crate::bandwidth::LiveStream;
use crate::config::{MAX_OBJECTS_PER_CALL, READ_QUEUE};
use crate::error::{Classified, NodeError, NodeResult};
use crate::proto::{BandwidthClass, MAX_PIECE, ObjectPart, PieceBytes, ReadRequest};

/// Sends the parts a worker queues until it ends, each piece once the stream's bandwidth lets
/// it go.
async fn forward(
    node: &Node,
    stream: &LiveStream,
    mut parts: mpsc::Receiver<ObjectPart>,
    sink: &mut ResponseSink<ObjectPart>,
) -> NodeResult<()> {
    while let Some(part) = parts.recv().await {
        if let ObjectPart::Piece(bytes) = &part {
            stream.acquire(bytes.len() as u64).await;
            node.metrics.sent(bytes.len() as u64);
        }
        send_within(node, sink, &part).await?;
    }
    Ok(())
}

/// Runs `work` on a stream worker whose parts go to `sink`; returns the worker's result once
/// both have ended (a failed send closes the queue, which stops the worker).
async fn run_stream(
    node: &Arc<Node>,
    ctx: &RpcContext,
    stream: LiveStream,
    sink: &mut ResponseSink<ObjectPart>,
    work: impl FnOnce(&Store, &mut dyn FnMut(ObjectPart) -> bool) -> NodeResult<()> + Send + 'static,
) -> NodeResult<()> {
    let slot = node.streams.take(ctx.peer().node_id())?;
    let (tx, rx) = mpsc::channel(READ_QUEUE);
    let store = Arc::clone(&node.store);
    let worker = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let mut send = |part: ObjectPart| tx.blocking_send(part).is_ok();
        work(&store, &mut send)
    });
    let (sent, worked) = tokio::join!(forward(node, &stream, rx, sink), worker);
    let worked = worked.map_err(worker_failed)?;
    // A failed send closed the queue, which is why a worker stopped then: the send's error is
    // the cause. A worker that failed on its own closed the queue and the sends ended cleanly.
    sent.and(worked)
}

/// The parts of one object: `Object` and its bytes in pieces (views of them, not copies), or
/// `Missing` (with `pinned_in`, see [`ObjectPart::Missing`]). Returns false once the call
/// stopped taking parts.
fn object_parts(
    hash: &Hash,
    kind: u8,
    answer: Result<Bytes, String>,
    pinned_in: Option<String>,
    send: &mut dyn FnMut(ObjectPart) -> bool,
) -> bool {
    match answer {
        Ok(bytes) => {
            let Ok(len) = u32::try_from(bytes.len()) else {
                return false;
            };
            let head = send(ObjectPart::Object {
                hash: *hash,
                kind,
                len,
            });
            // The pieces are views of the object's bytes (no copy; of the segment's mapping
            // when it is sealed).
            head && (0..bytes.len()).step_by(MAX_PIECE).all(|at| {
                let end = at.saturating_add(MAX_PIECE).min(bytes.len());
                send(ObjectPart::Piece(PieceBytes::from(bytes.slice(at..end))))
            })
        }
        Err(reason) => send(ObjectPart::Missing {
            hash: *hash,
            kind,
            reason,
            pinned_in,
        }),
    }
}

pub(super) async fn read_impl(
    node: Arc<Node>,
    ctx: RpcContext,
    req: ReadRequest,
    mut sink: ResponseSink<ObjectPart>,
) -> NodeResult<()> {
    let blob_ref = decode_ref(&req.blob_ref)?;
    gate_tree(&ctx, &blob_ref)?;
    let stream = node.bandwidth.open("read", req.class);
    run_stream(&node, &ctx, stream, &mut sink, move |store, send| {
        // Looked up at the first object the node cannot give: whether a channel pins the blob.
        // A lookup that fails ends the stream with its error (its own class): the node cannot
        // tell absence from damage then, so it says neither. An object GC deleted while the
        // read ran (its blob unpinned meanwhile) ends the stream with that error too (not
        // found): sent as a missing object, the reader would take it for damage.
        let mut pinned_in: Option<Option<String>> = None;
        let mut ended_by = None;
        let read = store.read_objects(&blob_ref, req.start..req.end, &mut |hash, kind, answer| {
            let pinned = match answer {
                Ok(_) => None,
                Err(BlobError::RemovedWhileRead { what, .. }) => {
                    ended_by = Some(BlobError::RemovedWhileRead { hash: *hash, what });
                    return false;
                }
                Err(_) => match &pinned_in {
                    Some(channel) => channel.clone(),
                    None => match store.channel_pinning(&blob_ref) {
                        Ok(channel) => pinned_in.insert(channel).clone(),
                        Err(e) => {
                            ended_by = Some(e);
                            return false;
                        }
                    },
                },
            };
            let answer = answer.map_err(|e| e.to_string());
            object_parts(hash, kind as u8, answer, pinned, send)
        });
        match ended_by {
            Some(e) => Err(NodeError::from_classified(&e)),
            None => read.node_err().map(|_| ()),
        }
    })
    .await
}

fn check_count(hashes: &[Hash]) -> NodeResult<()> {
    if hashes.len() > MAX_OBJECTS_PER_CALL {
        return Err(NodeError::new(
            ErrorClass::Usage,
            format!(
                "{} objects named in one call, at most {MAX_OBJECTS_PER_CALL}",
                hashes.len()
            ),
        ));
    }
    Ok(())
}

pub(super) async fn objects_impl(
    node: Arc<Node>,
    ctx: RpcContext,
    hashes: Vec<Hash>,
    mut sink: ResponseSink<ObjectPart>,
) -> NodeResult<()> {
    check_count(&hashes)?;
    let trees = reads_trees(&ctx);
    let stream = node.bandwidth.open("objects", BandwidthClass::Foreground);
    run_stream(&node, &ctx, stream, &mut sink, move |store, send| {
        // The kinds first: a refusal comes before any object is sent.
        let index = store.reader().node_err()?;
        let mut kinds = Vec::with_capacity(hashes.len());
        for hash in &hashes {
            let kind = index.object(hash).node_err()?.map(|e| e.kind);
            if !trees && kind.is_some_and(|k| k != ObjectKind::Chunk) {
                return Err(tree_refused("tree nodes are asked for"));
            }
            kinds.push(kind);
        }
        drop(index);
        for (hash, kind) in hashes.iter().zip(kinds) {
            let sent = match kind {
                None => object_parts(hash, 0, Err("not stored here".into()), None, send),
                Some(kind) => match store.read_object(hash) {
                    Ok(object) => {
                        object_parts(hash, object.kind as u8, Ok(object.bytes), None, send)
                    }
                    Err(e) => object_parts(hash, kind as u8, Err(e.to_string()), None, send),
                },
            };
            if !sent {
                break;
            }
        }
        Ok(())
    })
    .await
}

pub(super) async fn has_impl(
    node: Arc<Node>,
    ctx: RpcContext,
    hashes: Vec<Hash>,
) -> NodeResult<Vec<bool>> {
    check_count(&hashes)?;
    node.blocking(ctx.peer().node_id(), move |store| {
        let index = store.reader().node_err()?;
        hashes
            .iter()
            .map(|h| index.contains(h).node_err())
            .collect()
    })
    .await
}
