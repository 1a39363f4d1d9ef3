//! The seam between the node and replicated channels: channels whose pins a consensus group
//! decides instead of the node alone. The node knows only this trait; `net-mesh-replication`
//! implements it and the binary composes the two (`Node::set_replicas` before `Node::router`).
//!
//! On a replicated channel a put or pull never pins by itself: its blob is finished under the
//! implementation's hold ([`Replicas::hold`]), then [`Replicas::pin`] proposes the pin and
//! returns once it is committed (the hold is dropped when the pin applies); `remove` proposes
//! the unpin. Reads act on the channel's pins as this node has applied them.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;

use net_mesh_engine::codec::Hash;
use net_mesh_engine::{BlobRef, ExtensionOp};
use net_mesh_rpc::rpc::{Denied, Router};
use net_mesh_rpc::{Endpoint, NodeAddr, PeerIdentity};

use crate::error::NodeResult;
use crate::proto::{MoveBind, MoveDone, MoveRun, ReplicaStatus};

/// A future a [`Replicas`] method returns.
pub type ReplicaFuture<'a, T> = Pin<Box<dyn Future<Output = NodeResult<T>> + Send + 'a>>;

/// The numbers replication reports in the node's metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaCounters {
    /// `raft/v1/*` calls refused because the peer is no member of the channel's group.
    pub peer_auth_rejections: u64,
    /// Prefetch requests refused because the channel ran its most at once.
    pub prefetch_rejections: u64,
    /// Replica-move phase messages refused (not from the bound peer).
    pub move_rejections: u64,
    /// Replica-move cleanups that changed nothing (unverified, another move, replayed).
    pub spurious_cleanups: u64,
    /// Each replicated channel running here, as this member sees it.
    pub channels: Vec<ReplicaStatus>,
}

/// Replicated channels as the node sees them.
pub trait Replicas: Send + Sync + Debug + 'static {
    /// Adds the methods replication serves to the node's router.
    fn routes(&self, router: Router) -> Router;

    /// Admission of a call to one of the methods [`Replicas::routes`] adds; `None` for any
    /// other method (the node's allow list decides those).
    fn authorize(
        &self,
        peer: &PeerIdentity,
        method: &str,
        metadata: &[u8],
    ) -> Option<Result<(), Denied>>;

    /// Starts the replicated channels this node's store holds, dialing with `endpoint`.
    fn start<'a>(&'a self, endpoint: &'a Endpoint) -> ReplicaFuture<'a, ()>;

    /// Stops every replicated channel (their state stays in the store).
    fn stop(&self) -> ReplicaFuture<'_, ()>;

    /// Whether this node runs `channel` as a replicated channel.
    fn is_replicated(&self, channel: &str) -> bool;

    /// Whether this node's pins of `channel` (a replicated channel) may be read: refused when
    /// its copy is no longer the group's (see [`ReplicaStatus::excluded`]).
    fn readable(&self, channel: &str) -> NodeResult<()>;

    /// The op that keeps `blob_ref`'s objects in this store until its pin in `channel` is
    /// applied (or the hold expires).
    fn hold(&self, channel: &str, blob_ref: &BlobRef) -> Box<dyn ExtensionOp>;

    /// Pins `blob_ref` under `name` in `channel` through the group (forwarded to its leader);
    /// returns the entry's log index once it is committed and applied on this node.
    fn pin<'a>(
        &'a self,
        channel: &'a str,
        blob_ref: &'a BlobRef,
        name: &'a str,
    ) -> ReplicaFuture<'a, u64>;

    /// Unpins the blob with id `id` in `channel` through the group (see [`Replicas::pin`]).
    fn unpin<'a>(&'a self, channel: &'a str, id: &'a Hash) -> ReplicaFuture<'a, u64>;

    /// Makes `channel` a replicated channel with `members` (this node among them; every
    /// member is told the same list). `false` when this node already ran it.
    fn replicate<'a>(
        &'a self,
        channel: &'a str,
        members: &'a [NodeAddr],
    ) -> ReplicaFuture<'a, bool>;

    /// The channel's group as this node sees it, and the move of the channel bound here.
    fn status<'a>(&'a self, channel: &'a str) -> ReplicaFuture<'a, ReplicaStatus>;

    /// The numbers for the node's metrics.
    fn counters(&self) -> ReplicaCounters;

    /// Binds this node, the source or the target of a replica move, to it (the target joins
    /// the group).
    fn move_bind<'a>(&'a self, bind: &'a MoveBind) -> ReplicaFuture<'a, ()>;

    /// Runs (or resumes) a replica move on this node, its coordinator.
    fn move_run<'a>(&'a self, run: &'a MoveRun) -> ReplicaFuture<'a, MoveDone>;

    /// Abandons a replica move before its cutover on this node, its coordinator.
    fn move_abandon<'a>(&'a self, run: &'a MoveRun) -> ReplicaFuture<'a, MoveDone>;
}
