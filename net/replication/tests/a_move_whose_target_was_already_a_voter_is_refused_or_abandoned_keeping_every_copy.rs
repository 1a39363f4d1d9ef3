//! A move whose target is already a voter of the group can never run (the coordinator refuses
//! to begin it). A target that is running the group refuses to be bound to such a move; one
//! bound to it anyway (bound while its group was not running here, as a restarting node is)
//! is stuck with it, refusing other moves, until the move is abandoned. The abandon releases
//! the source and the target, both keeping their copies and their votes, and the group is
//! left as it was: a move between the same nodes then binds and finishes. Both ways of
//! abandoning it are covered: a coordinator that is neither node (it takes the move over from
//! the source), and the source itself, which leads and never bound the move (it refused to
//! begin it as its coordinator).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod moves_support;
mod support;

use std::time::Duration;

use moves_support::*;
use net_mesh_replication::{MoveConfig, MoveError, MovePhase, MoveSpec};
use support::{CHANNEL, pin_set};

/// Binds `spec` on its target `members[to]` as a node whose group is not running yet does.
async fn bind_while_not_running(
    members: &[MoveMember],
    channels: &[std::sync::Arc<net_mesh_replication::ReplicatedChannel>],
    to: usize,
    spec: &MoveSpec,
) {
    let refused = members[to].moves.bind(spec).await;
    assert!(
        matches!(&refused, Err(MoveError::Usage { reason, .. }) if reason.contains("is already a member of")),
        "{refused:?}"
    );
    let bound = members[to].moves.record(CHANNEL).await.unwrap();
    assert!(bound.as_ref().is_none_or(|r| r.id != spec.id), "{bound:?}");
    members[to].moves.detach(CHANNEL).unwrap();
    members[to].moves.bind(spec).await.unwrap();
    members[to].moves.attach(channels[to].clone());
}

async fn phase_on(member: &MoveMember) -> Option<MovePhase> {
    member.moves.record(CHANNEL).await.unwrap().map(|r| r.phase)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_whose_target_was_already_a_voter_is_refused_or_abandoned_keeping_every_copy() {
    let root = tempfile::tempdir().unwrap();
    let config = MoveConfig {
        catch_up: Duration::from_secs(10),
        call_timeout: Duration::from_secs(2),
        ..MoveConfig::default()
    };
    let (members, channels, leader) = three_and_a_newcomer(root.path(), config).await;
    let (a, other, newcomer) = ((leader + 1) % 3, (leader + 2) % 3, 3);
    pin_on_leader(&members[leader], &channels[leader], 5).await;
    for i in [leader, a, other] {
        support::wait_until("every voter holds the five pins", || {
            (pin_set(&members[i].store).len() == 5).then_some(())
        })
        .await;
    }

    // A's replica "moved" to the voter `other`, coordinated by the leader.
    let stuck = spec(&members[a], &members[other], &members[leader]);
    bind_while_not_running(&members, &channels, other, &stuck).await;
    members[a].moves.bind(&stuck).await.unwrap();
    let begun = members[leader].moves.begin(&stuck).await;
    assert!(
        matches!(&begun, Err(MoveError::Usage { reason, .. }) if reason.contains("already a voter")),
        "{begun:?}"
    );
    // Stuck: A refuses to be the source of another move.
    let next = spec(&members[a], &members[newcomer], &members[leader]);
    let busy = members[a].moves.bind(&next).await;
    assert!(matches!(&busy, Err(MoveError::Busy { .. })), "{busy:?}");

    let (record, done) = members[leader].moves.abandon(&stuck).await.unwrap();
    eprintln!("abandoned: {done:?}");
    assert_eq!(record.phase, MovePhase::Abandoned);
    assert!(done[0].contains("never ran"), "{done:?}");
    assert!(
        done[1..].iter().all(|line| line.contains("keeps its copy")),
        "{done:?}"
    );
    for i in [a, other] {
        assert_eq!(phase_on(&members[i]).await, Some(MovePhase::Abandoned));
        assert_eq!(pin_set(&members[i].store).len(), 5);
        assert!(members[i].moves.is_attached(CHANNEL));
    }
    wait_for_voters_on(&members, &[leader, a, other], &[leader, a, other]).await;

    // Both are free: A's replica moves to the newcomer.
    members[a].moves.bind(&next).await.unwrap();
    members[newcomer].moves.bind(&next).await.unwrap();
    let voters: Vec<_> = members[..3].iter().map(|m| m.addr.clone()).collect();
    let joined = members[newcomer].join(&voters).await;
    let record = members[leader]
        .moves
        .start(&next, |e| eprintln!("phase {:?}: {}", e.phase, e.detail))
        .await
        .unwrap();
    assert_eq!(record.phase, MovePhase::CleanedUp);
    moved_to_b(&members, leader, other, a, newcomer).await;

    // The leader's own replica "moved" to `other`: the leader, its source, refuses to begin
    // it, so only the target holds it; the leader abandons it all the same.
    let stuck = spec(&members[leader], &members[other], &members[leader]);
    bind_while_not_running(&members, &channels, other, &stuck).await;
    let begun = members[leader].moves.begin(&stuck).await;
    assert!(matches!(&begun, Err(MoveError::Usage { .. })), "{begun:?}");
    let (_, done) = members[leader].moves.abandon(&stuck).await.unwrap();
    eprintln!("abandoned: {done:?}");
    assert!(done[0].contains("never ran"), "{done:?}");
    assert_eq!(phase_on(&members[other]).await, Some(MovePhase::Abandoned));
    assert_eq!(pin_set(&members[other].store).len(), 5);
    wait_for_voters_on(
        &members,
        &[leader, other, newcomer],
        &[leader, other, newcomer],
    )
    .await;

    joined.shutdown().await.unwrap();
    for i in [leader, other] {
        channels[i].shutdown().await.unwrap();
    }
}
