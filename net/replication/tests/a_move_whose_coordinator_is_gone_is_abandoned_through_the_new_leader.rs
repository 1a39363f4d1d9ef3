//! H-2, never stuck, when the coordinator is gone: K moves A's replica to B up to
//! `LearnerAdded`, then K goes away (its group stopped, nobody reaches it) and another member
//! L leads. L's abandon of the move is refused while the source does not name L as the move's
//! coordinator (when L is not the source itself), and writes nothing on L. A rebind of a move
//! the node does not hold binds nothing. Once an admin rebinds A and B to L, L takes the move
//! over and abandons it: B leaves the group and removes its copy, A keeps its copy and its
//! vote, and every node's row ends `Abandoned`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod moves_support;
mod support;

use moves_support::*;
use net_mesh_replication::{MoveConfig, MoveError, MovePhase, MoveSpec};
use support::{CHANNEL, pin_set, wait_until};

async fn phase_on(member: &MoveMember) -> Option<MovePhase> {
    member.moves.record(CHANNEL).await.unwrap().map(|r| r.phase)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_whose_coordinator_is_gone_is_abandoned_through_the_new_leader() {
    abandoned_through_the_new_leader(1).await;
}

/// The same with the source the other follower: which follower the group elects is not
/// chosen here, so the two cases between them usually cover both the new leader being the
/// source (it rebinds itself) and not (it asks the source).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_whose_coordinator_is_gone_is_abandoned_through_the_new_leader_other_source() {
    abandoned_through_the_new_leader(2).await;
}

/// The move of the replica of the follower `source_offset` places after the leader.
async fn abandoned_through_the_new_leader(source_offset: usize) {
    let root = tempfile::tempdir().unwrap();
    let (mut members, channels, k) = three_and_a_newcomer(root.path(), MoveConfig::default()).await;
    let (a, o, b) = ((k + source_offset) % 3, (k + 3 - source_offset) % 3, 3);
    pin_on_leader(&members[k], &channels[k], 3).await;
    let first = spec(&members[a], &members[b], &members[k]);
    members[a].moves.bind(&first).await.unwrap();
    members[b].moves.bind(&first).await.unwrap();
    let voters: Vec<_> = members[..3].iter().map(|m| m.addr.clone()).collect();
    let b_channel = members[b].join(&voters).await;
    members[k].moves.begin(&first).await.unwrap();
    members[k]
        .moves
        .resume(CHANNEL, Some(MovePhase::LearnerAdded), |_| {})
        .await
        .unwrap();
    wait_until("B holds the three pins as a learner", || {
        (pin_set(&members[b].store).len() == 3).then_some(())
    })
    .await;

    // K is gone; A or the other voter leads.
    channels[k].shutdown().await.unwrap();
    members[k].moves.detach(CHANNEL);
    members[k].pause().await;
    let l = wait_until("a new leader among the other two", || {
        [a, o].into_iter().find(|i| {
            let s = channels[*i].status();
            s.is_leader && s.term > 1
        })
    })
    .await;
    let handed = MoveSpec {
        coordinator: members[l].identity.node_id(),
        ..first.clone()
    };

    eprintln!(
        "the new leader is {}",
        if l == a {
            "the source"
        } else {
            "the other voter"
        }
    );
    if l != a {
        // The source still names K: L's take-over is refused, and nothing is bound on L.
        let err = members[l].moves.abandon(&handed).await.unwrap_err();
        match &err {
            MoveError::Usage { reason, .. } => {
                assert!(reason.contains("holds no move"), "{reason}")
            }
            other => panic!("L took a move over that the source does not give it: {other:?}"),
        }
        assert_eq!(phase_on(&members[l]).await, None);
        assert_eq!(phase_on(&members[a]).await, Some(MovePhase::Bound));
    }
    // A rebind of a move the node does not hold binds nothing.
    let unknown = MoveSpec {
        id: first.id + 1,
        ..handed.clone()
    };
    let err = members[a].moves.rebind(&unknown).await.unwrap_err();
    assert!(matches!(err, MoveError::Usage { .. }), "{err:?}");
    assert_eq!(
        members[a].moves.record(CHANNEL).await.unwrap().unwrap().id,
        first.id
    );

    // Rebound to L, the move is taken over and abandoned there.
    members[a].moves.rebind(&handed).await.unwrap();
    members[b].moves.rebind(&handed).await.unwrap();
    let (record, done) = members[l].moves.abandon(&handed).await.unwrap();
    eprintln!("abandoned: {done:?}");
    assert_eq!((record.id, record.phase), (first.id, MovePhase::Abandoned));
    assert!(
        done.iter()
            .any(|line| line.contains("removed from the group")),
        "{done:?}"
    );
    for i in [l, a, b] {
        assert_eq!(
            phase_on(&members[i]).await,
            Some(MovePhase::Abandoned),
            "{i}"
        );
    }
    assert!(pin_set(&members[b].store).is_empty());
    assert_eq!(pin_set(&members[a].store).len(), 3);
    // The group is its three voters again, B not even a learner.
    wait_for_voters_on(&members, &[a, o], &[k, a, o]).await;

    b_channel.shutdown().await.ok();
    for i in [a, o] {
        channels[i].shutdown().await.unwrap();
    }
}
