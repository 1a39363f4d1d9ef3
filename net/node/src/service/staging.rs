//! The staging methods: list, state and abort of live uploads, each kept to its channel.
//!
//! An upload belongs to the channel it began in (its checkpoint's, then its finished record's).
//! A call acting on an upload by its staging id must name that channel, so a token or allow
//! entry for one channel never resumes, finishes, aborts or reads the state of another
//! channel's upload; `staging_list` shows only the call's channel. An id of another channel
//! is refused with that channel named (not answered as missing): ids are 128-bit random, so
//! a caller who holds one was given it, and the refusal tells them how to act on it.

use std::sync::Arc;

use net_mesh_engine::{ErrorClass, Store};
use net_mesh_rpc::rpc::RpcContext;
use serde_bytes::ByteBuf;

use super::{Node, channel_of, check_channel_exists, gate_tree};
use crate::error::{Classified, NodeError, NodeResult};
use crate::proto::{PutDone, StagingRow, StagingState};

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

pub(super) async fn staging_list_impl(
    node: Arc<Node>,
    ctx: RpcContext,
    _: (),
) -> NodeResult<Vec<StagingRow>> {
    let channel = channel_of(&ctx)?;
    node.blocking(ctx.peer().node_id(), move |store| {
        check_channel_exists(store, &channel)?;
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
pub(super) async fn staging_state_impl(
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
            pin_name: None,
            resumed_from: None,
        }))
    })
    .await
}

/// Aborts live upload `id` of the call's channel; `false` when there is none.
pub(super) async fn staging_abort_impl(
    node: Arc<Node>,
    ctx: RpcContext,
    id: String,
) -> NodeResult<bool> {
    let channel = channel_of(&ctx)?;
    node.blocking(ctx.peer().node_id(), move |store| {
        check_upload_channel(store, &id, &channel)?;
        net_mesh_staging::abort_staging_id(store, &id).node_err()
    })
    .await
}
