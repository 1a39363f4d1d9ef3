//! A session from a node that is not a member of the channel's group calling `raft/v1/append`
//! (with a higher term, trying to take over), `raft/v1/vote` or `raft/v1/pinned` is refused at
//! dispatch, counted, and changes nothing; the members go on committing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::time::Duration;

use net_mesh_node::call_token::encode_metadata;
use net_mesh_replication::fetch::{PinnedRequest, PinnedState};
use net_mesh_replication::network::Reply;
use net_mesh_replication::{METHOD_APPEND, METHOD_PINNED, METHOD_VOTE, TypeConfig, stored_applied};
use net_mesh_rpc::rpc::client::CallOptions;
use net_mesh_rpc::rpc::{Config, ErrorKind, Router};
use net_mesh_rpc::{Endpoint, Identity};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, VoteRequest, VoteResponse};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Vote};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_member_calling_raft_append_is_refused_and_changes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let members = three_members(root.path()).await;
    let stored: Vec<_> = members
        .iter()
        .map(|m| m.store.store(b"the one blob").unwrap())
        .collect();
    let blob = stored.into_iter().next_back().unwrap();
    let channels = create_all(&members).await;
    let leader = wait_for_leader(&channels.iter().collect::<Vec<_>>()).await;
    let index = channels[leader]
        .propose_pin(&blob.blob_ref, "a")
        .await
        .unwrap();
    let target = (leader + 1) % 3;
    let store = members[target].store.clone();
    wait_until("the pin applied on the target", || {
        (stored_applied(&store, CHANNEL).unwrap()?.1 >= index).then_some(())
    })
    .await;
    let before_status = channels[target].status();
    let before_pins = pinned(&members[target].store);
    let before_applied = stored_applied(&members[target].store, CHANNEL).unwrap();
    // (Calls members made before every member had opened the channel were refused too.)
    let rejections_before = members[target].replication.peer_auth_rejections();

    // The outsider: a real identity and a real, authenticated session to a member.
    let outsider = Endpoint::new(
        Identity::from_seed([77; 32]),
        Router::new(),
        Config::default(),
    );
    let session = outsider.connect_node(&members[target].addr).await.unwrap();
    let term = before_status.term + 100;
    let fake_leader = net_mesh_replication::raft_id(&outsider.identity().node_id());
    let unpin_everything = AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new_committed(term, fake_leader),
        prev_log_id: Some(LogId::new(
            CommittedLeaderId::new(before_status.term, 0),
            index,
        )),
        entries: vec![Entry::<TypeConfig> {
            log_id: LogId::new(CommittedLeaderId::new(term, fake_leader), index + 1),
            payload: EntryPayload::Normal(net_mesh_replication::PinOp::Unpin {
                blob_id: blob.blob_id,
            }),
        }],
        leader_commit: Some(LogId::new(
            CommittedLeaderId::new(term, fake_leader),
            index + 1,
        )),
    };
    let metadata = encode_metadata(CHANNEL, &[]);
    let opts = || CallOptions::with_timeout(Duration::from_secs(10)).metadata(metadata.clone());
    let err = session
        .call_unary::<_, Reply<AppendEntriesResponse<u64>>>(
            METHOD_APPEND,
            &unpin_everything,
            opts(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::PermissionDenied, "{err}");
    assert!(err.message.contains("not a member"), "{err}");
    let vote = VoteRequest::new(Vote::new(term, fake_leader), None);
    let err = session
        .call_unary::<_, Reply<VoteResponse<u64>>>(METHOD_VOTE, &vote, opts())
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::PermissionDenied, "{err}");
    // Nor may it ask what the member pins (what a member asks before it skips a pin whose
    // objects no member gives).
    let asked = PinnedRequest {
        blob_id: blob.blob_id,
    };
    let err = session
        .call_unary::<_, Reply<PinnedState>>(METHOD_PINNED, &asked, opts())
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::PermissionDenied, "{err}");
    // A channel that is not replicated here is refused too, and counted, but as a group that
    // does not run here (`Unavailable`): that says nothing of who the members are.
    let other = encode_metadata("elsewhere", &[]);
    let err = session
        .call_unary::<_, Reply<AppendEntriesResponse<u64>>>(
            METHOD_APPEND,
            &unpin_everything,
            CallOptions::with_timeout(Duration::from_secs(10)).metadata(other),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unavailable, "{err}");
    assert_eq!(
        members[target].replication.peer_auth_rejections() - rejections_before,
        4
    );

    // Nothing changed: same pins, same applied state, no term bump from the outsider.
    assert_eq!(pinned(&members[target].store), before_pins);
    assert_eq!(
        stored_applied(&members[target].store, CHANNEL).unwrap(),
        before_applied
    );
    assert!(channels[target].status().term < term);

    // The members go on: a new proposal commits and reaches the target.
    let index = channels[leader].propose_unpin(&blob.blob_id).await.unwrap();
    wait_until("the honest unpin applied on the target", || {
        (stored_applied(&store, CHANNEL).unwrap()?.1 >= index).then_some(())
    })
    .await;
    assert!(pinned(&members[target].store).is_empty());
    for c in channels {
        c.shutdown().await.unwrap();
    }
}
