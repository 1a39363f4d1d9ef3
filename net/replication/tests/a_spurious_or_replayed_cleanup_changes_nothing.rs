//! C-1: a cleanup the source cannot verify as a handoff removes nothing. The leader's cleanup
//! to a voter with no move bound is refused; the bound coordinator's cleanup to the bound
//! source before the cutover (the target's applied membership still has the source) and one
//! naming another move are refused and counted, changing nothing; after the move, a replayed
//! cleanup answers that the copy is already gone and changes nothing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod moves_support;
mod support;

use moves_support::*;
use net_mesh_replication::{
    CleanupReply, CleanupRequest, METHOD_MOVE_CLEANUP, MoveConfig, MovePhase, stored_applied,
};
use net_mesh_rpc::rpc::ErrorKind;
use support::{CHANNEL, pin_set};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spurious_or_replayed_cleanup_changes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let (members, channels, leader) =
        three_and_a_newcomer(root.path(), MoveConfig::default()).await;
    let (a, other, b) = ((leader + 1) % 3, (leader + 2) % 3, 3);
    pin_on_leader(&members[leader], &channels[leader], 5).await;
    let k = &members[leader];
    for m in &members[..3] {
        support::wait_until("every voter applied the five pins", || {
            (pin_set(&m.store).len() == 5).then_some(())
        })
        .await;
    }

    // A voter that never moved the channel: no move bound, refused.
    let pins_other = pin_set(&members[other].store);
    let err = k
        .call::<_, CleanupReply>(
            &members[other].addr,
            METHOD_MOVE_CLEANUP,
            &CleanupRequest { id: 1, cutover: 1 },
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::PermissionDenied, "{err}");
    assert_eq!(members[other].moves.phase_rejections(), 1);
    assert_eq!(pin_set(&members[other].store), pins_other);
    assert_eq!(pins_other.len(), 5);

    // Bound, but before the cutover: the target's state still has A. Nothing removed.
    let spec = spec(&members[a], &members[b], k);
    members[a].moves.bind(&spec).await.unwrap();
    members[b].moves.bind(&spec).await.unwrap();
    let voters: Vec<_> = members[..3].iter().map(|m| m.addr.clone()).collect();
    let b_channel = members[b].join(&voters).await;
    k.moves.begin(&spec).await.unwrap();
    k.moves
        .resume(CHANNEL, Some(MovePhase::CaughtUp), |_| {})
        .await
        .unwrap();
    // A learns the commit of the learner's membership entry with a later heartbeat; wait for
    // it so that the state compared below no longer moves on its own.
    let applied_a = support::wait_until("A applied the leader's whole log", || {
        let leader_status = channels[leader].status();
        let applied = stored_applied(&members[a].store, CHANNEL).unwrap();
        (leader_status.committed == leader_status.last_log_index
            && applied.map(|(_, index)| index) == leader_status.committed)
            .then_some(applied)
    })
    .await;
    let pins_a = pin_set(&members[a].store);
    for (id, cutover) in [(spec.id, 1), (spec.id, u64::MAX), (spec.id + 1, 1)] {
        let before = members[a].moves.spurious_cleanups();
        let err = k
            .call::<_, CleanupReply>(
                &members[a].addr,
                METHOD_MOVE_CLEANUP,
                &CleanupRequest { id, cutover },
            )
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::FailedPrecondition, "{err}");
        eprintln!("refused cleanup: {err}");
        assert_eq!(members[a].moves.spurious_cleanups(), before + 1);
        assert_eq!(pin_set(&members[a].store), pins_a);
        assert_eq!(
            stored_applied(&members[a].store, CHANNEL).unwrap(),
            applied_a
        );
        assert_eq!(
            members[a]
                .moves
                .record(CHANNEL)
                .await
                .unwrap()
                .unwrap()
                .phase,
            MovePhase::Bound
        );
    }
    assert!(
        channels[a].status().leader.is_some(),
        "A's group was stopped"
    );

    // The move; then a replay of its cleanup.
    let done = k.moves.resume(CHANNEL, None, |_| {}).await.unwrap();
    assert_eq!(done.phase, MovePhase::CleanedUp);
    assert!(pin_set(&members[a].store).is_empty());
    let before = members[a].moves.spurious_cleanups();
    let replay = k
        .call::<_, CleanupReply>(
            &members[a].addr,
            METHOD_MOVE_CLEANUP,
            &CleanupRequest {
                id: spec.id,
                cutover: done.cutover.unwrap(),
            },
        )
        .await
        .unwrap();
    assert_eq!(replay, CleanupReply::AlreadyCleaned);
    assert_eq!(members[a].moves.spurious_cleanups(), before + 1);
    assert!(pin_set(&members[a].store).is_empty());
    assert_eq!(
        members[a]
            .moves
            .record(CHANNEL)
            .await
            .unwrap()
            .unwrap()
            .phase,
        MovePhase::CleanedUp
    );

    b_channel.shutdown().await.unwrap();
    for i in [leader, other] {
        channels[i].shutdown().await.unwrap();
    }
}
