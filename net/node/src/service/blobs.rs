//! The blob methods: status, list, resolve, stat, chunks and remove.

use std::ops::ControlFlow;
use std::sync::Arc;

use net_mesh_engine::codec::Encoding;
use net_mesh_engine::index::blob_id;
use net_mesh_engine::{BlobRef, Store, Unpinned as EngineUnpinned};
use net_mesh_rpc::rpc::{ResponseSink, RpcContext};
use serde::Serialize;
use serde_bytes::ByteBuf;

use super::{
    Gauges, Node, channel_of, check_channel_exists, decode_ref, gate_tree, gauges, read_channel,
    reads_trees, resolve, send_within, worker_failed,
};
use crate::error::{Classified, NodeError, NodeResult};
use crate::proto::{BlobSpec, ChunkRow, PinRow, Resolved, Stat, Status, TAG_BLOB_TREE, Unpinned};

pub(super) async fn status_impl(node: Arc<Node>, ctx: RpcContext, _: ()) -> NodeResult<Status> {
    let Gauges {
        store_bytes,
        blobs,
        staged_uploads: live,
    } = node.blocking(ctx.peer().node_id(), gauges).await?;
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
pub(super) async fn list_impl(
    node: Arc<Node>,
    ctx: RpcContext,
    _: (),
    mut sink: ResponseSink<PinRow>,
) -> NodeResult<()> {
    let channel = read_channel(&node, &ctx)?;
    let trees = reads_trees(&ctx);
    stream_rows(&node, &ctx, &mut sink, move |store, send| {
        check_channel_exists(store, &channel)?;
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

pub(super) async fn resolve_impl(
    node: Arc<Node>,
    ctx: RpcContext,
    spec: BlobSpec,
) -> NodeResult<Resolved> {
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

pub(super) async fn stat_impl(
    node: Arc<Node>,
    ctx: RpcContext,
    spec: BlobSpec,
) -> NodeResult<Stat> {
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
pub(super) async fn chunks_impl(
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

pub(super) async fn remove_impl(
    node: Arc<Node>,
    ctx: RpcContext,
    spec: BlobSpec,
) -> NodeResult<Unpinned> {
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
