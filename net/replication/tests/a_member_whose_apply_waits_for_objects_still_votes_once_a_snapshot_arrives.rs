//! openraft 0.9 runs its output commands in order, and its answer to a snapshot install waits
//! for the state machine to finish it: every command queued behind (the answer to a vote, to
//! an append) waits too. The state machine runs one command at a time, and an apply or an
//! install may wait long for objects no reachable member gives. A member given a snapshot
//! then answered nothing, counting as down for every quorum. So a member gets a received
//! snapshot ready first (every committed entry before it applied, its objects fetched), and
//! only then gives it to openraft; until then its last chunk is answered `Stopped` (send it
//! again).
//!
//! Played here over real sessions on 127.0.0.1: the other two members stop, and the test
//! speaks with their identities. As the leader at a later term it starts a snapshot, then
//! sends three pins of blobs nobody serves (the member commits them and its apply waits for
//! their objects), then the snapshot's last chunk. The member must still answer votes; once
//! the pins' blobs can be fetched it must still answer appends while it fetches the
//! snapshot's; once that one can be fetched too, the snapshot sent again is installed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::time::{Duration, Instant};

use net_mesh_node::call_token::encode_metadata;
use net_mesh_replication::log_store::LogStore;
use net_mesh_replication::network::Reply;
use net_mesh_replication::state_machine::{SnapshotBody, SnapshotPin, has_interrupted_install};
use net_mesh_replication::tables::{
    NAMESPACE, STATE_TABLE, StateRow, encode_row, read_channel_row,
};
use net_mesh_replication::{
    METHOD_APPEND, METHOD_SNAPSHOT, METHOD_VOTE, PinOp, TypeConfig, raft_id, stored_applied,
};
use net_mesh_rpc::rpc::client::CallOptions;
use net_mesh_rpc::rpc::{Config, Router};
use net_mesh_rpc::{Endpoint, Session};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::storage::RaftLogStorage;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, SnapshotMeta, Vote};
use support::*;

fn opts(timeout: Duration) -> CallOptions {
    CallOptions::with_timeout(timeout).metadata(encode_metadata(CHANNEL, &[]))
}

async fn session_as(identity: &net_mesh_rpc::Identity, to: &Member) -> Session {
    let endpoint = Endpoint::new(identity.clone(), Router::new(), Config::default());
    endpoint.connect_node(&to.addr).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_apply_waits_for_objects_still_votes_once_a_snapshot_arrives() {
    let root = tempfile::tempdir().unwrap();
    let members = three_members(root.path()).await;
    let channels = create_all(&members).await;
    let leader = wait_for_leader(&channels.iter().collect::<Vec<_>>()).await;
    let blob = members[leader]
        .store
        .store(b"a pin all three apply")
        .unwrap();
    let index = channels[leader]
        .propose_pin(&blob.blob_ref, "first")
        .await
        .unwrap();
    let target = (leader + 1) % 3;
    let store = members[target].store.clone();
    wait_until("the first pin applied on the target", || {
        (stored_applied(&store, CHANNEL).unwrap()?.1 >= index).then_some(())
    })
    .await;

    // Blobs no member holds: a pin of one waits for its objects for as long as the channel
    // runs.
    let elsewhere = tempfile::tempdir().unwrap();
    let nowhere = open_store(elsewhere.path());
    let lost_bytes: Vec<_> = (0..5u64).map(|i| distinct_bytes(4096, 7_000 + i)).collect();
    let lost: Vec<_> = lost_bytes
        .iter()
        .map(|b| nowhere.store(b).unwrap().blob_ref)
        .collect();

    // The other two stop; the test speaks with their identities from here on.
    let mut members: Vec<Option<Member>> = members.into_iter().map(Some).collect();
    let mut channels: Vec<Option<_>> = channels.into_iter().map(Some).collect();
    let mut others = Vec::new();
    for i in [(target + 1) % 3, (target + 2) % 3] {
        channels[i].take().unwrap().shutdown().await.unwrap();
        let (identity, _, port) = members[i].take().unwrap().stop().await;
        others.push((identity, port));
    }
    let target_member = members[target].take().unwrap();
    let channel = channels[target].take().unwrap();
    let a_id = raft_id(&others[0].0.node_id());
    let b_id = raft_id(&others[1].0.node_id());
    let session_a = session_as(&others[0].0, &target_member).await;
    let session_b = session_as(&others[1].0, &target_member).await;

    // Where the target's log ends, and its membership.
    let last = LogStore::new(store.clone(), CHANNEL)
        .get_log_state()
        .await
        .unwrap()
        .last_log_id
        .unwrap();
    let membership = store
        .read_extension(NAMESPACE, |r| {
            read_channel_row::<StateRow>(r, STATE_TABLE, CHANNEL)
        })
        .unwrap()
        .unwrap()
        .membership;
    let term = channel.status().term + 100;
    let as_leader = Vote::new_committed(term, a_id);
    let log_id = |i: u64| LogId::new(CommittedLeaderId::new(term, a_id), i);

    // A snapshot of one pin, at `at`, named `id`, in one chunk or from `offset` on.
    let snapshot = |vote: Vote<u64>, at: LogId<u64>, pin: usize| {
        let body = encode_row(&SnapshotBody {
            pins: vec![SnapshotPin {
                name: format!("snap{pin}"),
                blob_ref: lost[pin].encode(),
            }],
        })
        .unwrap();
        let membership = membership.clone();
        move |offset: usize, end: Option<usize>| InstallSnapshotRequest::<TypeConfig> {
            vote,
            meta: SnapshotMeta {
                last_log_id: Some(at),
                last_membership: membership.clone(),
                snapshot_id: format!("{}-{}", at.leader_id.term, at.index),
            },
            offset: offset as u64,
            data: body[offset..end.unwrap_or(body.len())].to_vec(),
            done: end.is_none(),
        }
    };
    let send = |session: &Session, req: InstallSnapshotRequest<TypeConfig>| {
        let session = session.clone();
        async move {
            session
                .call_unary::<_, Reply<InstallSnapshotResponse<u64>>>(
                    METHOD_SNAPSHOT,
                    &req,
                    opts(Duration::from_secs(10)),
                )
                .await
                .unwrap_or_else(|e| panic!("a snapshot chunk was not answered in 10 s: {e}"))
        }
    };
    // Sends a snapshot's last chunk until it is installed.
    let installed = |session: Session, req: InstallSnapshotRequest<TypeConfig>| async move {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match send(&session, req.clone()).await {
                Reply::Ok(r) => break r,
                Reply::Stopped(_) => {}
                other => panic!("{other:?}"),
            }
            assert!(
                Instant::now() < deadline,
                "the snapshot was never installed"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };

    // 1. As the leader A at a later term: a snapshot at last + 10 begins (its first chunk),
    // then three pins of blobs nobody serves are committed: the apply waits for them.
    let snapshot_at = log_id(last.index + 10);
    let first = snapshot(as_leader, snapshot_at, 3);
    let half = first(0, None).data.len() / 2;
    let answer = send(&session_a, first(0, Some(half))).await;
    assert!(matches!(answer, Reply::Ok(_)), "{answer:?}");
    let entries: Vec<Entry<TypeConfig>> = (1..=3)
        .map(|i| Entry {
            log_id: log_id(last.index + i),
            payload: EntryPayload::Normal(PinOp::Pin {
                blob_ref: lost[i as usize - 1].encode(),
                name: format!("lost{i}"),
            }),
        })
        .collect();
    let append = AppendEntriesRequest::<TypeConfig> {
        vote: as_leader,
        prev_log_id: Some(last),
        entries,
        leader_commit: Some(log_id(last.index + 3)),
    };
    let appended: Reply<AppendEntriesResponse<u64>> = session_a
        .call_unary(METHOD_APPEND, &append, opts(Duration::from_secs(10)))
        .await
        .unwrap();
    assert!(
        matches!(appended, Reply::Ok(AppendEntriesResponse::Success)),
        "{appended:?}"
    );
    wait_until(
        "the target's apply tried every member for the pin's objects",
        || (channel.status().fetched.rounds_failed > 0).then_some(()),
    )
    .await;
    assert_eq!(
        stored_applied(&store, CHANNEL).unwrap().map(|(_, i)| i),
        Some(last.index),
        "the target applied a pin whose objects nobody has"
    );

    // 2. A's node comes back holding the snapshot's blob only (not the channel): the
    // snapshot could be fetched, but the pins before it still wait. Its last chunk is answered
    // `Stopped` (send it again): it is not handed to openraft, nothing of it is stored, the
    // log is not purged.
    let a_dir = tempfile::tempdir().unwrap();
    open_store(a_dir.path()).store(&lost_bytes[3]).unwrap();
    let a_node = ServedNode::start(&others[0].0, a_dir.path(), others[0].1).await;
    let answer = send(&session_a, first(half, None)).await;
    assert!(
        matches!(&answer, Reply::Stopped(why) if why.contains("send its last chunk again")),
        "{answer:?}"
    );
    assert!(!has_interrupted_install(&store, CHANNEL).unwrap());
    assert_eq!(channel.status().purged, None);

    // 3. Votes are still answered: B asks at ever later terms until the target grants one
    // (it refuses while it still counts A as its leader).
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut asked = 0;
    let granted = loop {
        asked += 1;
        let vote = VoteRequest {
            vote: Vote::new(term + 10 + asked, b_id),
            last_log_id: Some(snapshot_at),
        };
        let answer = session_b
            .call_unary::<_, Reply<VoteResponse<u64>>>(
                METHOD_VOTE,
                &vote,
                opts(Duration::from_secs(3)),
            )
            .await
            .unwrap_or_else(|e| {
                panic!("the target answered no vote within 3 s (vote {asked}): {e}")
            });
        match answer {
            Reply::Ok(r) if r.vote_granted => break r,
            Reply::Ok(_) => {}
            other => panic!("vote {asked}: {other:?}"),
        }
        assert!(Instant::now() < deadline, "no vote granted in 20 s");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(granted.vote.leader_id().voted_for(), Some(b_id));
    // B leads from here on, at a term far past any the target reaches by its own elections
    // meanwhile (A's vote is stale now).
    let as_b = Vote::new_committed(granted.vote.leader_id().get_term() + 1000, b_id);

    // 4. The pins' blobs come: they apply, and the last chunk sent again (by B) is installed.
    for bytes in &lost_bytes[..3] {
        a_node.store.store(bytes).unwrap();
    }
    let done = installed(
        session_b.clone(),
        snapshot(as_b, snapshot_at, 3)(half, None),
    )
    .await;
    assert_eq!(done.vote, as_b);
    assert_eq!(
        stored_applied(&store, CHANNEL).unwrap().map(|(_, i)| i),
        Some(snapshot_at.index)
    );
    let pin_of = |i: usize| {
        vec![(
            net_mesh_replication::ReplicatedChannel::blob_id(&lost[i]),
            format!("snap{i}"),
        )]
    };
    assert_eq!(pin_set(&store), pin_of(3));
    assert!(!has_interrupted_install(&store, CHANNEL).unwrap());
    wait_until("the log the snapshot covers purged", || {
        (channel.status().purged == Some(snapshot_at.index)).then_some(())
    })
    .await;

    // 5. A newer snapshot (B's) of a blob nobody serves: every entry before it is applied,
    // and while it waits for its object the target still answers appends.
    let b_log_id =
        |i: u64| LogId::new(CommittedLeaderId::new(as_b.leader_id().get_term(), b_id), i);
    let second = snapshot(as_b, b_log_id(snapshot_at.index + 5), 4);
    let answer = send(&session_b, second(0, None)).await;
    assert!(matches!(answer, Reply::Stopped(_)), "{answer:?}");
    let rounds = channel.status().fetched.rounds_failed;
    wait_until(
        "the preparation tried every member for the snapshot's blob",
        || (channel.status().fetched.rounds_failed > rounds).then_some(()),
    )
    .await;
    let heartbeat = AppendEntriesRequest::<TypeConfig> {
        vote: as_b,
        prev_log_id: Some(snapshot_at),
        entries: vec![],
        leader_commit: Some(snapshot_at),
    };
    let answer: Reply<AppendEntriesResponse<u64>> = session_b
        .call_unary(METHOD_APPEND, &heartbeat, opts(Duration::from_secs(3)))
        .await
        .unwrap_or_else(|e| panic!("the target answered no append within 3 s: {e}"));
    assert!(
        matches!(answer, Reply::Ok(AppendEntriesResponse::Success)),
        "{answer:?}"
    );
    a_node.store.store(&lost_bytes[4]).unwrap();
    let done = installed(session_b.clone(), second(0, None)).await;
    assert_eq!(done.vote, as_b);
    assert_eq!(pin_set(&store), pin_of(4));

    channel.shutdown().await.unwrap();
    target_member.stop().await;
    a_node.stop().await;
}
