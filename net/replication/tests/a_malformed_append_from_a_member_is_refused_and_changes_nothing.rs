//! A member is authenticated, not trusted to be well-behaved: an append whose entries do not
//! follow its `prev_log_id` (which openraft assumes and only debug-asserts) sent by a member
//! over its own session is refused (`InvalidArgument`) before openraft sees it, so the
//! callee's log, applied state and pins do not change, and the group goes on committing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::time::Duration;

use net_mesh_node::call_token::encode_metadata;
use net_mesh_replication::network::Reply;
use net_mesh_replication::{
    METHOD_APPEND, PinOp, ReplicatedChannel, TypeConfig, raft_id, stored_applied,
};
use net_mesh_rpc::rpc::client::CallOptions;
use net_mesh_rpc::rpc::{ErrorKind, Router};
use net_mesh_rpc::{Endpoint, Identity};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Vote};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_append_from_a_member_is_refused_and_changes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let members = three_members(root.path()).await;
    let channels = create_all(&members).await;
    let leader = wait_for_leader(&channels.iter().collect::<Vec<_>>()).await;
    let blobs = store_blobs(&members.iter().collect::<Vec<_>>(), "m", 2);
    channels[leader]
        .propose_pin(&blobs[0], "first")
        .await
        .unwrap();
    let target = (leader + 1) % 3;
    wait_until("the follower applied the pin", || {
        (pinned(&members[target].store).len() == 1).then_some(())
    })
    .await;
    let before = (
        stored_applied(&members[target].store, CHANNEL).unwrap(),
        pin_set(&members[target].store),
        channels[target].status().last_log_index,
    );

    // The leader's identity (a member) on a session of its own, far ahead in term.
    let sender = Identity::from_seed([leader as u8 + 1; 32]);
    let id = raft_id(&sender.node_id());
    let term = 1_000;
    let log_id = |index: u64| LogId::new(CommittedLeaderId::new(term, id), index);
    let malformed = AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new_committed(term, id),
        prev_log_id: None,
        entries: vec![Entry {
            // Index 5 cannot follow an empty prefix.
            log_id: log_id(5),
            payload: EntryPayload::Normal(PinOp::Unpin {
                blob_id: ReplicatedChannel::blob_id(&blobs[0]),
            }),
        }],
        leader_commit: Some(log_id(5)),
    };
    let endpoint = Endpoint::new(sender, Router::new(), net_mesh_node::node_config());
    let session = endpoint.connect_node(&members[target].addr).await.unwrap();
    let answer = session
        .call_unary::<_, Reply<AppendEntriesResponse<u64>>>(
            METHOD_APPEND,
            &malformed,
            CallOptions::with_timeout(Duration::from_secs(10))
                .metadata(encode_metadata(CHANNEL, &[])),
        )
        .await;
    session.close();
    let err = answer.unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidArgument, "{err}");

    let after = (
        stored_applied(&members[target].store, CHANNEL).unwrap(),
        pin_set(&members[target].store),
        channels[target].status().last_log_index,
    );
    assert_eq!(before, after, "a refused append changed the follower");
    // The group still works, the follower included.
    channels[leader]
        .propose_pin(&blobs[1], "second")
        .await
        .unwrap();
    wait_until("the follower applied the second pin", || {
        (pinned(&members[target].store).len() == 2).then_some(())
    })
    .await;
    for c in channels {
        c.shutdown().await.unwrap();
    }
}
