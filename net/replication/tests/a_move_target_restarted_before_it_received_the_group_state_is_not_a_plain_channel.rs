//! A move's target joins the group when it is bound (its store gets the channel), then stops
//! before the leader sent it anything: no replication state, only its move row. Started
//! again, it used to take the channel as a plain local one: a client's write there pinned
//! locally, outside the group, and the move's resume (`--id`), which binds the target again,
//! was then refused for those local pins, forever. Now the channel counts as replicated (its
//! writes are refused, naming the move to resume), and the resume's binding joins it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use net_mesh_node::replicas::Replicas;
use net_mesh_replication::{MoveSpec, Moves, NodeReplicas};
use net_mesh_rpc::{Identity, NodeAddr};
use support::{CHANNEL, config, open_store};

#[test]
fn a_move_target_restarted_before_it_received_the_group_state_is_not_a_plain_channel() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("target");
    let node = |seed: u8, port: u16| NodeAddr {
        node_id: Identity::from_seed([seed; 32]).node_id(),
        host_port: format!("127.0.0.1:{port}"),
    };
    let (source, target, coordinator) = (node(1, 7001), node(2, 7002), node(3, 7003));
    let spec = MoveSpec::new(CHANNEL, source, target.clone(), coordinator.node_id);
    {
        // Bound and joined (the join made the channel), then stopped.
        let store = open_store(&dir);
        store.create_channel(CHANNEL).unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime
            .block_on(Moves::new(store.clone(), target.node_id).bind(&spec))
            .unwrap();
    }

    let store = open_store(&dir);
    let replicas = NodeReplicas::new(store, target.node_id, config()).unwrap();
    assert!(
        replicas.is_replicated(CHANNEL),
        "a bound target's channel was taken as a plain local one"
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let refused = runtime
        .block_on(Replicas::status(&*replicas, CHANNEL))
        .unwrap_err();
    assert!(
        refused
            .to_string()
            .contains(&format!("resume the move (channel move --id {})", spec.id)),
        "{refused}"
    );
}
