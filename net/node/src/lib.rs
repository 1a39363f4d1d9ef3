//! `net-mesh-node` is the storage node: the service that serves one store to other nodes and
//! to the CLI over authenticated nRPC sessions — every blob and staging operation, resumable
//! remote uploads, verified reads, node-to-node pull — and the typed client that calls it. The
//! protocol is `proto` (pure, versioned, docs/FORMAT.md §6), the service thin glue from it to
//! the engine and staging (`service`), every call checked against the allow list on the
//! session's authenticated peer — or against the permission token the call carries
//! (`call_token`) — before it gets a window (`allow`). It must never trust an
//! identity carried in a payload, never block the async runtime on the store (store work runs
//! on blocking workers), never send a Tree ref to a peer that does not announce it reads one,
//! and never hand a client bytes the client has not verified itself.

pub mod allow;
pub mod bandwidth;
pub mod call_token;
pub mod client;
pub mod config;
pub mod error;
pub mod metrics;
pub mod proto;
pub mod pull;
pub mod replicas;
pub mod revoke;
pub mod service;

use std::net::SocketAddr;
use std::sync::Arc;

use net_mesh_rpc::rpc::{Config, Router};
use net_mesh_rpc::{Endpoint, Identity};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use allow::{Allow, AllowError, AllowFile, Grant, Refusal};
pub use call_token::TokenRefusal;
pub use client::{NodeClient, PutInput};
pub use config::NodeConfig;
pub use error::{NodeError, NodeResult};
pub use replicas::Replicas;
pub use service::Node;

/// The endpoint configuration of a node with the default limits ([`NodeConfig::rpc`]).
pub fn node_config() -> Config {
    NodeConfig::default().rpc
}

/// A node serving on a listener until `stop` fires; then it stops accepting, makes live
/// uploads checkpoint (waiting up to [`NodeConfig::shutdown_grace`] for them) and returns.
pub async fn serve(
    node: Arc<Node>,
    identity: Identity,
    allow: Allow,
    listener: TcpListener,
    stop: CancellationToken,
) {
    let endpoint = Arc::new(
        Endpoint::new(identity, node.router(allow), node.config().rpc.clone())
            .with_dialed_router(Router::new()),
    );
    node.set_dialer(&endpoint);
    if let Some(replicas) = node.replicas()
        && let Err(e) = replicas.start(&endpoint).await
    {
        tracing::error!(error = %e, "starting the replicated channels");
    }
    let serving = endpoint.serve(listener, stop.clone());
    tokio::pin!(serving);
    tokio::select! {
        _ = &mut serving => {}
        // Uploads hear of the shutdown while their sessions still stand.
        _ = stop.cancelled() => {
            node.shut_down();
            serving.await;
        }
    }
    node.shut_down();
    if !node.uploads_settled(node.config().shutdown_grace).await {
        tracing::warn!(
            live = node.live_uploads(),
            "uploads still running at the end of the shutdown grace"
        );
    }
    if let Some(replicas) = node.replicas()
        && let Err(e) = replicas.stop().await
    {
        tracing::warn!(error = %e, "stopping the replicated channels");
    }
}

/// Binds `addr` (port 0 picks one) and returns the listener and its actual address.
pub async fn bind(addr: &str) -> std::io::Result<(TcpListener, SocketAddr)> {
    let local = TcpListener::bind(addr).await?;
    let address = local.local_addr()?;
    Ok((local, address))
}
