//! H-2, never stuck: a move whose target went away after it joined as a learner (the move
//! stops at `LearnerAdded` with `NotCaughtUp`) is abandoned by its coordinator. The target
//! leaves the group, the source keeps its copy and its vote, and a resume of the abandoned
//! move is refused, and so is binding its id again. The target, unreachable then, is told
//! when the abandon runs again once it is back, and removes its copy. A later move between the same two nodes (a new id) binds on
//! both and finishes. `move/v1/abandon` from a node that is not the coordinator is refused,
//! counted, and changes nothing; a move past its cutover cannot be abandoned.
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
use net_mesh_replication::moves::{AbandonReply, AbandonRequest, METHOD_MOVE_ABANDON};
use net_mesh_replication::{MoveConfig, MoveError, MovePhase};
use net_mesh_rpc::rpc::ErrorKind;
use support::{CHANNEL, pin_set};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_whose_target_is_gone_is_abandoned_and_both_nodes_are_free_again() {
    let root = tempfile::tempdir().unwrap();
    let config = MoveConfig {
        catch_up: Duration::from_secs(2),
        call_timeout: Duration::from_secs(2),
        ..MoveConfig::default()
    };
    let (mut members, channels, leader) = three_and_a_newcomer(root.path(), config).await;
    let (a, other, b) = ((leader + 1) % 3, (leader + 2) % 3, 3);
    pin_on_leader(&members[leader], &channels[leader], 5).await;
    let first = spec(&members[a], &members[b], &members[leader]);
    members[a].moves.bind(&first).await.unwrap();
    members[b].moves.bind(&first).await.unwrap();
    let voters: Vec<_> = members[..3].iter().map(|m| m.addr.clone()).collect();
    let b_channel = members[b].join(&voters).await;
    members[leader].moves.begin(&first).await.unwrap();
    members[leader]
        .moves
        .resume(CHANNEL, Some(MovePhase::LearnerAdded), |_| {})
        .await
        .unwrap();
    support::wait_until("B holds the five pins as a learner", || {
        (pin_set(&members[b].store).len() == 5).then_some(())
    })
    .await;

    // B goes away and the group commits on: the move cannot go on.
    members[b].pause().await;
    pin_on_leader(&members[leader], &channels[leader], 1).await;
    let err = members[leader]
        .moves
        .resume(CHANNEL, None, |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, MoveError::NotCaughtUp { .. }), "{err:?}");

    // Only the coordinator may tell the source that the move is abandoned.
    let rejections = members[a].moves.phase_rejections();
    let refused = members[other]
        .call::<_, AbandonReply>(
            &members[a].addr,
            METHOD_MOVE_ABANDON,
            &AbandonRequest { id: first.id },
        )
        .await
        .unwrap_err();
    assert_eq!(refused.kind, ErrorKind::PermissionDenied, "{refused:?}");
    assert_eq!(members[a].moves.phase_rejections(), rejections + 1);
    let on_a = members[a].moves.record(CHANNEL).await.unwrap().unwrap();
    assert_eq!(on_a.phase, MovePhase::Bound);

    // The coordinator abandons it: B leaves the group, A keeps its copy and its vote.
    let (record, done) = members[leader].moves.abandon(&first).await.unwrap();
    eprintln!("abandoned: {done:?}");
    assert_eq!(record.phase, MovePhase::Abandoned);
    assert_eq!(done.len(), 3, "{done:?}");
    assert!(done[0].contains("removed from the group"), "{done:?}");
    assert!(done[1].contains("keeps its copy"), "{done:?}");
    assert!(done[2].contains("the target was not told"), "{done:?}");
    let three: Vec<&_> = voters.iter().collect();
    for i in [leader, a, other] {
        wait_for_voters(&members[i].store, &three).await;
    }
    let status = channels[leader].status();
    assert_eq!(status.members.len(), 3, "{:?}", status.members);
    assert!(status.members.iter().all(|m| m.voter));
    assert_eq!(pin_set(&members[a].store).len(), 5);
    assert_eq!(
        members[a]
            .moves
            .record(CHANNEL)
            .await
            .unwrap()
            .unwrap()
            .phase,
        MovePhase::Abandoned
    );
    let resumed = members[leader].moves.resume(CHANNEL, None, |_| {}).await;
    assert!(
        matches!(&resumed, Err(MoveError::Usage { reason, .. }) if reason.contains("abandoned")),
        "{resumed:?}"
    );
    // The abandoned id is over: binding or beginning it again is refused (run again, it
    // would reach a cutover whose cleanup the source refuses).
    for again in [
        members[a].moves.bind(&first).await,
        members[leader].moves.begin(&first).await,
    ] {
        assert!(
            matches!(&again, Err(MoveError::Usage { reason, .. }) if reason.contains("abandoned")),
            "{again:?}"
        );
    }
    // The group still commits without B (a pin of a blob pinned already: still 5 pins).
    pin_on_leader(&members[leader], &channels[leader], 1).await;

    // B is back: the abandon, run again, tells it, and it removes its copy.
    members[b].resume().await;
    let (_, done) = members[leader].moves.abandon(&first).await.unwrap();
    eprintln!("abandoned again: {done:?}");
    assert_eq!(done.len(), 2, "{done:?}");
    assert!(done[0].contains("had already abandoned"), "{done:?}");
    assert!(done[1].contains("removed its copy (5 pins)"), "{done:?}");
    assert!(pin_set(&members[b].store).is_empty());
    assert!(!members[b].moves.is_attached(CHANNEL));
    // B knows how its copy went (its node's refusals say so): its move there was abandoned.
    assert_eq!(
        members[b].moves.removed_copy(CHANNEL),
        Some(MovePhase::Abandoned)
    );
    drop(b_channel);

    // A new move between the same two nodes binds on both and finishes.
    let second = spec(&members[a], &members[b], &members[leader]);
    assert_ne!(second.id, first.id);
    members[a].moves.bind(&second).await.unwrap();
    members[b].moves.bind(&second).await.unwrap();
    let b_channel = members[b].join(&voters).await;
    let record = members[leader]
        .moves
        .start(&second, |e| eprintln!("phase {:?}: {}", e.phase, e.detail))
        .await
        .unwrap();
    assert_eq!(record.phase, MovePhase::CleanedUp);
    moved_to_b(&members, leader, other, a, b).await;
    assert_eq!(pin_set(&members[b].store).len(), 5);
    // Now B runs the channel again, and A's replica moved away.
    assert_eq!(members[b].moves.removed_copy(CHANNEL), None);
    assert_eq!(
        members[a].moves.removed_copy(CHANNEL),
        Some(MovePhase::CleanedUp)
    );

    // Past its cutover, a move cannot be abandoned.
    let late = members[leader].moves.abandon(&second).await;
    assert!(
        matches!(&late, Err(MoveError::Usage { reason, .. }) if reason.contains("past the cutover")),
        "{late:?}"
    );

    b_channel.shutdown().await.unwrap();
    for i in [leader, other] {
        channels[i].shutdown().await.unwrap();
    }
    members.truncate(0);
}
