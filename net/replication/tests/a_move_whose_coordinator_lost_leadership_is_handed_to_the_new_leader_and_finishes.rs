//! H-2 / H-5 when the coordinator stops leading mid-move: the leader K starts moving A's
//! replica to B and reaches `LearnerAdded`; then K's group restarts and another member leads.
//! K's own resume is refused (`NotLeader`) and changes nothing. An admin hands the same move
//! (same id, source and target) to the new leader L by binding A and B to it; L's run goes on
//! from what the group already holds (the learner is not added twice) to `CleanedUp`. The
//! group ends with exactly K, the other voter and B; A has no pins; B holds every pin. K's
//! stale row refuses a new move while A still names K, and gives way once A names L.
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

/// The phase of the move row `member` keeps for the channel.
async fn stored_phase(member: &MoveMember) -> MovePhase {
    member.moves.record(CHANNEL).await.unwrap().unwrap().phase
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_whose_coordinator_lost_leadership_is_handed_to_the_new_leader_and_finishes() {
    hand_over_then(Next::DrainK).await;
}

/// The same, then A is bound to a move back to it (from K): A answers K's question about the
/// first move that another move is bound there, which it binds only once its row of the
/// first one is cleaned up, so K's row of the first move gives way too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handed_over_move_whose_source_bound_another_move_gives_way_on_its_first_coordinator() {
    hand_over_then(Next::BackToA).await;
}

/// What is bound on K once the first move finished under L.
enum Next {
    /// A move of K's own replica to the other voter (A refuses K: it names L).
    DrainK,
    /// A move of K's own replica to A, bound on A first (A answers K: another move bound).
    BackToA,
}

async fn hand_over_then(next: Next) {
    let root = tempfile::tempdir().unwrap();
    let (members, mut channels, k) = three_and_a_newcomer(root.path(), MoveConfig::default()).await;
    let (a, o, b) = ((k + 1) % 3, (k + 2) % 3, 3);
    pin_on_leader(&members[k], &channels[k], 4).await;
    let before = pin_set(&members[k].store);

    let first = spec(&members[a], &members[b], &members[k]);
    members[a].moves.bind(&first).await.unwrap();
    members[b].moves.bind(&first).await.unwrap();
    let voters: Vec<_> = members[..3].iter().map(|m| m.addr.clone()).collect();
    let b_channel = members[b].join(&voters).await;
    members[k].moves.begin(&first).await.unwrap();
    let record = members[k]
        .moves
        .resume(CHANNEL, Some(MovePhase::LearnerAdded), |_| {})
        .await
        .unwrap();
    assert_eq!(record.phase, MovePhase::LearnerAdded);
    let learner_entry = channels[k].status().last_log_index.unwrap();

    // K's group restarts; A or the other voter leads meanwhile.
    channels[k].shutdown().await.unwrap();
    let l = wait_until("a new leader among the other two", || {
        [a, o].into_iter().find(|i| {
            let s = channels[*i].status();
            s.is_leader && s.term > 1
        })
    })
    .await;
    channels[k] = members[k].open().await;
    wait_until("K follows the new leader", || {
        channels[k]
            .status()
            .leader
            .filter(|leader| *leader == members[l].addr)
    })
    .await;

    // K can no longer drive the move, and trying changes nothing.
    match members[k].moves.resume(CHANNEL, None, |_| {}).await {
        Err(MoveError::NotLeader { .. }) => {}
        other => panic!("K resumed a move without leading: {other:?}"),
    }
    assert_eq!(stored_phase(&members[k]).await, MovePhase::LearnerAdded);

    // Its unfinished row is still its move (A names K as the coordinator): a different move
    // of K's own replica cannot be bound on K.
    // (To the voter that does not lead: a target cannot coordinate its own move.)
    let other = if l == a { o } else { a };
    let drain_k = spec(&members[k], &members[other], &members[l]);
    match members[k].moves.bind(&drain_k).await {
        Err(MoveError::Busy { .. }) => {}
        other => panic!("K bound a second move over its unfinished one: {other:?}"),
    }

    // An admin hands the move to L: the same move, bound to L on A and B.
    let handed = MoveSpec {
        coordinator: members[l].identity.node_id(),
        ..first.clone()
    };
    members[a].moves.bind(&handed).await.unwrap();
    members[b].moves.bind(&handed).await.unwrap();
    let mut events = Vec::new();
    let record = members[l]
        .moves
        .start(&handed, |e| {
            eprintln!("phase {:?}: {}", e.phase, e.detail);
            events.push((e.phase, e.detail.clone()));
        })
        .await
        .unwrap();
    assert_eq!(record.phase, MovePhase::CleanedUp);
    assert_eq!(record.id, first.id);
    assert!(
        events[0].1.contains("already in the group"),
        "the learner is not added twice: {events:?}"
    );
    // The learner entry K added is the one the cutover followed (no second learner entry).
    assert!(record.cutover.unwrap() > learner_entry);

    let target = [&members[k].addr, &members[o].addr, &members[b].addr];
    for i in [k, o, b] {
        wait_for_voters(&members[i].store, &target).await;
    }
    assert!(pin_set(&members[a].store).is_empty());
    wait_until("B holds every pin", || {
        (pin_set(&members[b].store) == before).then_some(())
    })
    .await;

    // K's row still stops at LearnerAdded, but A now refuses K (it names L), or answers that
    // another move is bound there: the move was handed over, so K's row gives way to a new
    // move of K's own replica.
    assert_eq!(stored_phase(&members[k]).await, MovePhase::LearnerAdded);
    let next = match next {
        Next::DrainK => drain_k,
        Next::BackToA => {
            // (Coordinated by the other voter when A leads: a target cannot coordinate.)
            let back = spec(
                &members[k],
                &members[a],
                &members[if l == a { o } else { l }],
            );
            members[a].moves.bind(&back).await.unwrap();
            back
        }
    };
    let bound = members[k].moves.bind(&next).await.unwrap();
    assert_eq!((bound.id, bound.phase), (next.id, MovePhase::Bound));

    b_channel.shutdown().await.unwrap();
    for c in &channels {
        c.shutdown().await.unwrap();
    }
}
