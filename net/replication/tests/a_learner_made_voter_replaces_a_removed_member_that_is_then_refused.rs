//! The steps of a replica move on three members: a fourth node joins and is added as a
//! learner (it catches up by the leader's snapshot, the leader having purged its log, and
//! holds the pins); the voters become {second, third, fourth}, dropping one member; proposals
//! still commit and reach the fourth; the removed node's raft calls are refused and counted,
//! while the learner's were admitted (but for a prefetch, which only a voter asks for); the
//! membership persisted is what `open` restores.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use net_mesh_node::call_token::encode_metadata;
use net_mesh_replication::network::Reply;
use net_mesh_replication::prefetch::{PrefetchRequest, Prefetched};
use net_mesh_replication::tables::{NAMESPACE, STATE_TABLE, StateRow, read_channel_row};
use net_mesh_replication::{
    METHOD_PREFETCH, METHOD_VOTE, MembershipError, ReplicatedChannel, raft_id, stored_applied,
};
use net_mesh_rpc::rpc::ErrorKind;
use net_mesh_rpc::rpc::client::CallOptions;
use net_mesh_rpc::{Identity, NodeAddr};
use openraft::raft::{VoteRequest, VoteResponse};
use openraft::{LogId, Vote};
use support::*;

async fn vote_call(
    from: &Member,
    to: &NodeAddr,
    vote: Vote<u64>,
) -> Result<Reply<VoteResponse<u64>>, net_mesh_rpc::rpc::RpcError> {
    let session = from.endpoint.connect_node(to).await.unwrap();
    let req = VoteRequest::new(vote, None::<LogId<u64>>);
    let opts =
        CallOptions::with_timeout(Duration::from_secs(10)).metadata(encode_metadata(CHANNEL, &[]));
    session.call_unary(METHOD_VOTE, &req, opts).await
}

fn ids(addrs: &[NodeAddr]) -> BTreeSet<String> {
    addrs.iter().map(|a| a.node_id.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_made_voter_replaces_a_removed_member_that_is_then_refused() {
    let root = tempfile::tempdir().unwrap();
    let mut members = three_members(root.path()).await;
    members.push(Member::start(Identity::from_seed([4; 32]), root.path().join("m3"), 0).await);
    let refs = store_blobs(&members.iter().collect::<Vec<_>>(), "move", 30);
    let config = snapshotting(10, 2);
    let mut channels = create_all_with(&members[..3], &config).await;
    let leader = wait_for_leader(&channels.iter().collect::<Vec<_>>()).await;
    for (i, r) in refs[..20].iter().enumerate() {
        channels[leader]
            .propose_pin(r, &format!("before-{i}"))
            .await
            .unwrap();
    }
    wait_until("the leader purged part of its log", || {
        channels[leader].status().purged
    })
    .await;

    // The fourth joins, admitting the three until it learns the membership.
    let newcomer = &members[3];
    channels.push(
        ReplicatedChannel::join(
            &newcomer.replication,
            newcomer.store.clone(),
            CHANNEL,
            &addrs(&members[..3]),
            newcomer.endpoint.clone(),
            &config,
        )
        .await
        .unwrap(),
    );
    let follower = (leader + 1) % 3;
    match channels[follower].add_learner(&newcomer.addr).await {
        Err(MembershipError::NotLeader {
            leader: Some(addr), ..
        }) => assert_eq!(addr, members[leader].addr),
        other => panic!("add_learner on a follower: {other:?}"),
    }
    let started = Instant::now();
    let target = channels[leader].add_learner(&newcomer.addr).await.unwrap();
    eprintln!(
        "figure: learner caught up to {target} in {:?}",
        started.elapsed()
    );
    let store = newcomer.store.clone();
    wait_until("the learner applied what it caught up to", || {
        (stored_applied(&store, CHANNEL).unwrap()?.1 >= target).then_some(())
    })
    .await;
    assert_eq!(pin_set(&newcomer.store), pin_set(&members[leader].store));
    assert_eq!(pin_set(&newcomer.store).len(), 20);
    assert!(
        channels[3].status().snapshots_installed >= 1,
        "the learner caught up from a purged log without a snapshot"
    );
    let status = channels[leader].status();
    assert_eq!(status.members.len(), 4);

    // A learner is admitted: its vote call is answered (and not granted), not refused.
    let term = status.term;
    match vote_call(
        newcomer,
        &members[leader].addr,
        Vote::new(term, raft_id(&newcomer.addr.node_id)),
    )
    .await
    {
        Ok(Reply::Ok(resp)) => assert!(!resp.vote_granted),
        other => panic!("the learner's vote call: {other:?}"),
    }

    // But only a voter asks members to prefetch (a leader is one; a learner never proposes):
    // the learner's prefetch call is refused and counted, though the callee holds the blob.
    let before = members[leader].replication.peer_auth_rejections();
    let session = newcomer
        .endpoint
        .connect_node(&members[leader].addr)
        .await
        .unwrap();
    let opts =
        CallOptions::with_timeout(Duration::from_secs(10)).metadata(encode_metadata(CHANNEL, &[]));
    let req = PrefetchRequest {
        blob_ref: refs[25].encode(),
    };
    let err = session
        .call_unary::<_, Reply<Prefetched>>(METHOD_PREFETCH, &req, opts)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::PermissionDenied, "{err}");
    assert!(err.message.contains("not a voter"), "{err}");
    assert_eq!(
        members[leader].replication.peer_auth_rejections(),
        before + 1
    );

    // Cutover: drop a follower; the voters become the other two and the newcomer.
    let dropped = (leader + 2) % 3;
    let voters: Vec<NodeAddr> = (0..4)
        .filter(|&i| i != dropped)
        .map(|i| members[i].addr.clone())
        .collect();
    let not_in_group = Member::start(Identity::from_seed([9; 32]), root.path().join("x"), 0).await;
    let refused = channels[leader]
        .change_membership(&[voters[0].clone(), not_in_group.addr.clone()])
        .await;
    assert!(
        matches!(refused, Err(MembershipError::Usage { .. })),
        "{refused:?}"
    );
    channels[leader].change_membership(&voters).await.unwrap();
    let remaining: Vec<usize> = (0..4).filter(|&i| i != dropped).collect();
    for &i in &remaining {
        wait_until("the new membership on every remaining member", || {
            let s = channels[i].status();
            let got: Vec<NodeAddr> = s.members.iter().map(|m| m.addr.clone()).collect();
            (ids(&got) == ids(&voters)).then_some(())
        })
        .await;
    }

    // Proposals still commit, and reach the newcomer.
    let mut last = 0;
    for (i, r) in refs[20..].iter().enumerate() {
        last = channels[leader]
            .propose_pin(r, &format!("after-{i}"))
            .await
            .unwrap();
    }
    last = last.max(
        channels[leader]
            .propose_unpin(&ReplicatedChannel::blob_id(&refs[0]))
            .await
            .unwrap(),
    );
    wait_until("the newcomer applied the new pins", || {
        (stored_applied(&store, CHANNEL).unwrap()?.1 >= last).then_some(())
    })
    .await;
    assert_eq!(pin_set(&newcomer.store), pin_set(&members[leader].store));
    assert_eq!(pin_set(&newcomer.store).len(), 29);

    // The removed node's raft calls are refused and counted; they change nothing.
    for &i in &[leader, 3] {
        let before = members[i].replication.peer_auth_rejections();
        let term_before = channels[i].status().term;
        let err = vote_call(
            &members[dropped],
            &members[i].addr,
            Vote::new(term_before + 50, raft_id(&members[dropped].addr.node_id)),
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind, ErrorKind::PermissionDenied, "{err}");
        assert!(members[i].replication.peer_auth_rejections() > before);
        assert!(channels[i].status().term < term_before + 50);
    }

    // The membership is persisted with the applied state, and `open` restores it.
    let newcomer_channel = channels.pop().unwrap();
    newcomer_channel.shutdown().await.unwrap();
    let row: StateRow = newcomer
        .store
        .read_extension(NAMESPACE, |r| {
            read_channel_row::<StateRow>(r, STATE_TABLE, CHANNEL)
        })
        .unwrap()
        .unwrap();
    let stored_voters: BTreeSet<u64> = row.membership.membership().voter_ids().collect();
    let want_voters: BTreeSet<u64> = voters.iter().map(|a| raft_id(&a.node_id)).collect();
    assert_eq!(stored_voters, want_voters);
    let reopened = ReplicatedChannel::open(
        &newcomer.replication,
        newcomer.store.clone(),
        CHANNEL,
        newcomer.endpoint.clone(),
        &config,
    )
    .await
    .unwrap();
    // (openraft publishes the restored state shortly after `open` returns.)
    wait_until("the reopened group shows the persisted membership", || {
        let got: Vec<NodeAddr> = reopened
            .status()
            .members
            .iter()
            .map(|m| m.addr.clone())
            .collect();
        (!got.is_empty()).then_some(got)
    })
    .await;
    let got: Vec<NodeAddr> = reopened
        .status()
        .members
        .iter()
        .map(|m| m.addr.clone())
        .collect();
    assert_eq!(ids(&got), ids(&voters));

    reopened.shutdown().await.unwrap();
    for c in channels {
        c.shutdown().await.unwrap();
    }
}
