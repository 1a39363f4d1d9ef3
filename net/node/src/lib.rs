//! `net-mesh-node` is the storage node: the service that serves one store to other nodes and
//! to the CLI over authenticated nRPC sessions — every blob and staging operation, resumable
//! remote uploads, verified reads, node-to-node pull — and the typed client that calls it. The
//! protocol is `proto` (pure, versioned, docs/FORMAT.md §6), the service thin glue from it to
//! the engine and staging (`service`), every call checked against the allow list on the
//! session's authenticated peer before it gets a window (`allow`). It must never trust an
//! identity carried in a payload, never block the async runtime on the store (store work runs
//! on blocking workers), never send a Tree ref to a peer that does not announce it reads one,
//! and never hand a client bytes the client has not verified itself.

pub mod allow;
pub mod client;
pub mod error;
pub mod metrics;
pub mod proto;
mod pull;
pub mod service;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use net_mesh_rpc::rpc::{Config, Router};
use net_mesh_rpc::{Endpoint, Identity};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use allow::{Allow, AllowError};
pub use client::NodeClient;
pub use error::{NodeError, NodeResult};
pub use service::Node;

/// How long a stopping node waits for live uploads to checkpoint.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// The endpoint configuration of a node: the client capabilities plus budgets sized for many
/// clients on one host (the defaults cap sessions per source address low).
pub fn node_config() -> Config {
    Config {
        capabilities: client::client_capabilities(),
        max_sessions_per_addr: 256,
        max_sessions_per_identity: 256,
        ..Config::default()
    }
}

/// A node serving on a listener until `stop` fires; then it stops accepting, lets live
/// uploads checkpoint (up to [`SHUTDOWN_GRACE`]) and returns.
pub async fn serve(
    node: Arc<Node>,
    identity: Identity,
    allow: Allow,
    listener: TcpListener,
    stop: CancellationToken,
) {
    let endpoint = Arc::new(
        Endpoint::new(identity, node.router(allow), node_config())
            .with_dialed_router(Router::new()),
    );
    node.set_dialer(Arc::clone(&endpoint));
    endpoint.serve(listener, stop.clone()).await;
    node.shut_down();
    let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
    while node.live_uploads() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Binds `addr` (port 0 picks one) and returns the listener and its actual address.
pub async fn bind(addr: &str) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}
