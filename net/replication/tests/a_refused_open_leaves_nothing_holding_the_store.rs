//! A channel that fails to open (here: not replicated on this node) leaves nothing behind
//! that holds the node: once the member stops, its store opens again at once. (The sessions a
//! node's channels share hold its endpoint, whose router holds the replication state: kept
//! after a refused open, they would keep the store open for the life of the process.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use net_mesh_replication::{ReplicatedChannel, ReplicationError};
use net_mesh_rpc::Identity;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_open_leaves_nothing_holding_the_store() {
    let root = tempfile::tempdir().unwrap();
    let member = Member::start(Identity::from_seed([1; 32]), root.path().join("m"), 0).await;
    let refused = ReplicatedChannel::open(
        &member.replication,
        member.store.clone(),
        "never-replicated",
        member.endpoint.clone(),
        &config(),
    )
    .await;
    assert!(
        matches!(refused, Err(ReplicationError::NotReplicated(_))),
        "{refused:?}"
    );
    let (_, dir, _) = member.stop().await;
    store_opens_again(&dir).await;
}
