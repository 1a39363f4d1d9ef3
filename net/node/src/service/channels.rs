//! The channel methods: create, list, and the replicated channels' replicate, status and
//! moves (handed to [`crate::replicas::Replicas`]).

use std::sync::Arc;

use net_mesh_engine::ErrorClass;
use net_mesh_rpc::rpc::RpcContext;

use super::Node;
use crate::error::{Classified, NodeError, NodeResult};
use crate::proto::{ChannelRow, MoveBind, MoveDone, MoveRun, ReplicaStatus, ReplicateRequest};
use crate::replicas::Replicas;

pub(super) async fn channel_create_impl(
    node: Arc<Node>,
    ctx: RpcContext,
    name: String,
) -> NodeResult<bool> {
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

pub(super) async fn channel_move_bind_impl(
    node: Arc<Node>,
    _: RpcContext,
    req: MoveBind,
) -> NodeResult<()> {
    replicas_of(&node)?.move_bind(&req).await
}

pub(super) async fn channel_move_impl(
    node: Arc<Node>,
    _: RpcContext,
    req: MoveRun,
) -> NodeResult<MoveDone> {
    replicas_of(&node)?.move_run(&req).await
}

pub(super) async fn channel_move_abandon_impl(
    node: Arc<Node>,
    _: RpcContext,
    req: MoveRun,
) -> NodeResult<MoveDone> {
    replicas_of(&node)?.move_abandon(&req).await
}

pub(super) async fn channel_replicate_impl(
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

pub(super) async fn channel_status_impl(
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

pub(super) async fn channel_list_impl(
    node: Arc<Node>,
    ctx: RpcContext,
    _: (),
) -> NodeResult<Vec<ChannelRow>> {
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
