//! Members are admitted to a group's raft methods, but a member may speak only for itself:
//! an append, vote or snapshot whose vote names another node (the callee, to make it leader
//! without an election; or the leader, to write entries in its name) is refused at dispatch,
//! counted, and changes nothing. And an entry no leader of this build would propose (a pin
//! name that is not valid, a blob ref that does not decode, an entry over `MAX_OP_LEN`) is
//! refused before openraft takes it, even from the leader's own identity: applying it would
//! stop the group on that member at every restart; so is a membership no leader logs (an
//! empty configuration, more than two) in an entry or a snapshot, and a snapshot whose meta no
//! leader sends (openraft assumes its shape). Real sessions over 127.0.0.1.
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
use net_mesh_replication::state_machine::{SnapshotBody, SnapshotPin};
use net_mesh_replication::tables::encode_row;
use net_mesh_replication::types::MAX_OP_LEN;
use net_mesh_replication::{
    METHOD_APPEND, METHOD_SNAPSHOT, METHOD_VOTE, PinOp, TypeConfig, raft_id, stored_applied,
};
use net_mesh_rpc::rpc::client::CallOptions;
use net_mesh_rpc::rpc::{Config, ErrorKind, Router};
use net_mesh_rpc::{Endpoint, Session};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, SnapshotMeta, Vote};
use support::*;

fn opts() -> CallOptions {
    CallOptions::with_timeout(Duration::from_secs(10)).metadata(encode_metadata(CHANNEL, &[]))
}

/// Calls `method` expecting a refusal of `kind` saying `says`; `Resp` is the method's answer
/// (decoded in full if one comes, so an answer shows as what it is).
async fn refused<
    Req: serde::Serialize,
    Resp: serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
>(
    session: &Session,
    method: &str,
    req: &Req,
    kind: ErrorKind,
    says: &str,
) {
    let err = session
        .call_unary::<_, Reply<Resp>>(method, req, opts())
        .await
        .unwrap_err();
    assert_eq!(err.kind, kind, "{method}: {err}");
    assert!(err.message.contains(says), "{method}: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_speaking_for_another_node_or_sending_a_bad_entry_is_refused() {
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
    let other = (leader + 2) % 3;
    let store = members[target].store.clone();
    wait_until("the pin applied on the target", || {
        (stored_applied(&store, CHANNEL).unwrap()?.1 >= index).then_some(())
    })
    .await;
    // The status is read from openraft's metrics, which follow the store a moment later:
    // compare only once they show the pin too.
    wait_until("the target's status shows the pin", || {
        let status = channels[target].status();
        (status.last_log_index >= Some(index) && status.applied >= Some(index)).then_some(())
    })
    .await;
    let before = channels[target].status();
    let before_pins = pin_set(&members[target].store);
    let rejections_before = members[target].replication.peer_auth_rejections();
    let term = before.term;
    let leader_id = raft_id(&members[leader].identity.node_id());
    let target_id = raft_id(&members[target].identity.node_id());
    let last = LogId::new(CommittedLeaderId::new(term, leader_id), index);
    let next = |op: PinOp| Entry::<TypeConfig> {
        log_id: LogId::new(CommittedLeaderId::new(term, leader_id), index + 1),
        payload: EntryPayload::Normal(op),
    };

    // A follower's identity (a member, admitted), on a real session of its own.
    let follower = Endpoint::new(
        members[other].identity.clone(),
        Router::new(),
        Config::default(),
    );
    let session = follower.connect_node(&members[target].addr).await.unwrap();
    let far = term + 100;
    // The callee made leader at a far term, no election (a committed vote naming it).
    let crown_the_callee = AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new_committed(far, target_id),
        prev_log_id: Some(last),
        entries: vec![],
        leader_commit: Some(last),
    };
    // Entries written in the leader's name.
    let as_the_leader = AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new_committed(far, leader_id),
        prev_log_id: Some(last),
        entries: vec![Entry::<TypeConfig> {
            log_id: LogId::new(CommittedLeaderId::new(far, leader_id), index + 1),
            payload: EntryPayload::Normal(PinOp::Unpin {
                blob_id: blob.blob_id,
            }),
        }],
        leader_commit: Some(LogId::new(
            CommittedLeaderId::new(far, leader_id),
            index + 1,
        )),
    };
    let says = "speaks only for itself";
    refused::<_, AppendEntriesResponse<u64>>(
        &session,
        METHOD_APPEND,
        &crown_the_callee,
        ErrorKind::PermissionDenied,
        says,
    )
    .await;
    refused::<_, AppendEntriesResponse<u64>>(
        &session,
        METHOD_APPEND,
        &as_the_leader,
        ErrorKind::PermissionDenied,
        says,
    )
    .await;
    let vote_for_the_leader = VoteRequest::new(Vote::new(far, leader_id), Some(last));
    refused::<_, VoteResponse<u64>>(
        &session,
        METHOD_VOTE,
        &vote_for_the_leader,
        ErrorKind::PermissionDenied,
        says,
    )
    .await;
    let snapshot_as_the_leader = InstallSnapshotRequest::<TypeConfig> {
        vote: Vote::new_committed(far, leader_id),
        meta: SnapshotMeta {
            last_log_id: Some(LogId::new(
                CommittedLeaderId::new(far, leader_id),
                index + 10,
            )),
            last_membership: Default::default(),
            snapshot_id: "empty".into(),
        },
        offset: 0,
        data: encode_row(&SnapshotBody {
            pins: Vec::<SnapshotPin>::new(),
        })
        .unwrap(),
        done: true,
    };
    refused::<_, InstallSnapshotResponse<u64>>(
        &session,
        METHOD_SNAPSHOT,
        &snapshot_as_the_leader,
        ErrorKind::PermissionDenied,
        says,
    )
    .await;
    assert_eq!(
        members[target].replication.peer_auth_rejections() - rejections_before,
        4
    );

    // The leader's own identity (as a compromised leader would be), its current vote, each
    // entry following the target's log exactly: what no leader of this build proposes is
    // refused, whatever the vote.
    let as_leader = Endpoint::new(
        members[leader].identity.clone(),
        Router::new(),
        Config::default(),
    );
    let session = as_leader.connect_node(&members[target].addr).await.unwrap();
    let bad_ops = [
        (
            PinOp::Pin {
                blob_ref: blob.blob_ref.encode(),
                name: "x".repeat(net_mesh_engine::index::MAX_PIN_NAME + 1),
            },
            "pin name is",
        ),
        (
            PinOp::Pin {
                blob_ref: vec![0xFF; 40],
                name: "b".into(),
            },
            "does not decode",
        ),
        (
            PinOp::Pin {
                blob_ref: vec![0; MAX_OP_LEN + 1],
                name: "c".into(),
            },
            "over the",
        ),
    ];
    for (op, says) in bad_ops {
        let append = AppendEntriesRequest::<TypeConfig> {
            vote: Vote::new_committed(term, leader_id),
            prev_log_id: Some(last),
            entries: vec![next(op)],
            leader_commit: Some(LogId::new(
                CommittedLeaderId::new(term, leader_id),
                index + 1,
            )),
        };
        refused::<_, AppendEntriesResponse<u64>>(
            &session,
            METHOD_APPEND,
            &append,
            ErrorKind::InvalidArgument,
            says,
        )
        .await;
    }

    // A membership no leader logs: openraft would make it the target's effective one and stop
    // the group there (an empty configuration leaves no quorum; it unwraps each voter's node).
    let bad_memberships = [
        openraft::Membership::new(vec![std::collections::BTreeSet::new()], None),
        openraft::Membership::new(vec![], None),
        openraft::Membership::new(
            vec![
                std::collections::BTreeSet::from([leader_id]),
                std::collections::BTreeSet::from([target_id]),
                std::collections::BTreeSet::from([leader_id, target_id]),
            ],
            None,
        ),
    ];
    for membership in bad_memberships.clone() {
        let append = AppendEntriesRequest::<TypeConfig> {
            vote: Vote::new_committed(term, leader_id),
            prev_log_id: Some(last),
            entries: vec![Entry::<TypeConfig> {
                log_id: LogId::new(CommittedLeaderId::new(term, leader_id), index + 1),
                payload: EntryPayload::Membership(membership),
            }],
            leader_commit: Some(last),
        };
        refused::<_, AppendEntriesResponse<u64>>(
            &session,
            METHOD_APPEND,
            &append,
            ErrorKind::InvalidArgument,
            "configuration",
        )
        .await;
    }

    // A snapshot from the leader's identity whose meta no leader sends: a last log id of a
    // term after the vote's, a membership logged after its last log id, or a membership no
    // leader logs.
    let later_membership = openraft::StoredMembership::new(
        Some(LogId::new(
            CommittedLeaderId::new(term, leader_id),
            index + 20,
        )),
        openraft::Membership::new(vec![std::collections::BTreeSet::from([leader_id])], None),
    );
    let bad_metas = [
        (
            Some(LogId::new(
                CommittedLeaderId::new(term + 5, leader_id),
                index + 10,
            )),
            Default::default(),
        ),
        (
            Some(LogId::new(
                CommittedLeaderId::new(term, leader_id),
                index + 10,
            )),
            later_membership,
        ),
        (
            Some(LogId::new(
                CommittedLeaderId::new(term, leader_id),
                index + 10,
            )),
            openraft::StoredMembership::new(
                Some(LogId::new(CommittedLeaderId::new(term, leader_id), index)),
                bad_memberships[0].clone(),
            ),
        ),
    ];
    for (last_log_id, last_membership) in bad_metas {
        let snapshot = InstallSnapshotRequest::<TypeConfig> {
            vote: Vote::new_committed(term, leader_id),
            meta: SnapshotMeta {
                last_log_id,
                last_membership,
                snapshot_id: "bad-meta".into(),
            },
            offset: 0,
            data: encode_row(&SnapshotBody {
                pins: Vec::<SnapshotPin>::new(),
            })
            .unwrap(),
            done: true,
        };
        refused::<_, InstallSnapshotResponse<u64>>(
            &session,
            METHOD_SNAPSHOT,
            &snapshot,
            ErrorKind::InvalidArgument,
            "snapshot from",
        )
        .await;
    }

    // Nothing changed on the target: term, log, applied index, pins.
    let after = channels[target].status();
    assert_eq!(after.term, term);
    assert_eq!(after.last_log_index, before.last_log_index);
    assert_eq!(after.applied, before.applied);
    assert_eq!(pin_set(&members[target].store), before_pins);

    // The group goes on: an honest unpin commits and reaches the target.
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
