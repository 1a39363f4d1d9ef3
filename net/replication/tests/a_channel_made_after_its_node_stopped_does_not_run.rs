//! A channel whose create finishes after the node stopped its channels (a `channel create`
//! answered while the node shuts down) is stopped too and refused, not left running: nothing
//! would ever stop it, and its group would hold the store for the life of the process.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use net_mesh_engine::ErrorClass;
use net_mesh_node::replicas::Replicas;
use net_mesh_replication::NodeReplicas;
use net_mesh_rpc::Identity;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_made_after_its_node_stopped_does_not_run() {
    let root = tempfile::tempdir().unwrap();
    let member = Member::start(Identity::from_seed([1; 32]), root.path().join("m"), 0).await;
    let replicas = NodeReplicas::new(member.store.clone(), member.addr.node_id, config()).unwrap();
    replicas.start(&member.endpoint).await.unwrap();
    replicas.stop().await.unwrap();
    let made = replicas
        .replicate(CHANNEL, std::slice::from_ref(&member.addr))
        .await;
    match made {
        Err(e) => assert_eq!(e.class, ErrorClass::Busy, "{e}"),
        Ok(created) => panic!("a channel was made after the stop (created: {created})"),
    }
    assert!(replicas.channel(CHANNEL).is_none());
    drop(replicas);
    let (_, dir, _) = member.stop().await;
    store_opens_again(&dir).await;
}
