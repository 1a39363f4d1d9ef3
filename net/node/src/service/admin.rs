//! Node to node and admin methods: pull, GC and token revocation.

use std::sync::Arc;
use std::time::Duration;

use net_mesh_engine::{ErrorClass, GcOptions, StoreError};
use net_mesh_rpc::rpc::RpcContext;

use super::{Node, PinAt, channel_of, decode_ref, worker_failed};
use crate::error::{Classified, NodeError, NodeResult};
use crate::proto::{GcDone, GcRequest, PullDone, PullRequest, RevokeRequest};
use crate::revoke;

pub(super) async fn pull_impl(
    node: Arc<Node>,
    ctx: RpcContext,
    req: PullRequest,
) -> NodeResult<PullDone> {
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
    // A replicated pin is not renamed: a name the user gave other than the pin's is refused
    // before the source is dialed or anything fetched (and checked again once pinned below,
    // for a pin that came meanwhile).
    if req.name_given && node.replicated(&channel).is_some() {
        super::resulting_pin_name(
            &node,
            ctx.peer().node_id(),
            &channel,
            &blob_ref,
            Some(req.name.as_str()),
            true,
        )
        .await?;
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
                given: req.name_given,
                replicas: held_by.as_deref(),
            },
            &stream,
        )
    })
    .await
    .map_err(worker_failed);
    stop.cancel();
    closing.close();
    let mut done = done??;
    node.metrics.received(done.bytes_fetched);
    if let Some(replicas) = &replicas {
        replicas.pin(&channel, &pinned, &req.name).await?;
    }
    done.pin_name = super::resulting_pin_name(
        &node,
        ctx.peer().node_id(),
        &channel,
        &pinned,
        req.name_given.then_some(req.name.as_str()),
        replicas.is_some(),
    )
    .await?;
    Ok(done)
}

pub(super) async fn gc_impl(
    node: Arc<Node>,
    ctx: RpcContext,
    req: GcRequest,
) -> NodeResult<GcDone> {
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

pub(super) async fn token_revoke_impl(
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
