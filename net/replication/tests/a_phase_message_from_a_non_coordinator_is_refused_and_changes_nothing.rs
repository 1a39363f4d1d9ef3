//! H-5: the source and the target of a move are bound to its coordinator (the leader). A
//! cleanup sent to the source by the other voter, or by the target, and a state query sent to
//! the target by the other voter, are refused (`PermissionDenied`), counted, and change
//! nothing: the source keeps its pins, applied state and binding. The bound coordinator then
//! runs the whole move.
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
    CleanupReply, CleanupRequest, HandoffState, METHOD_MOVE_CLEANUP, METHOD_MOVE_STATE, MoveConfig,
    MovePhase, StateRequest, stored_applied,
};
use net_mesh_rpc::rpc::ErrorKind;
use support::{CHANNEL, pin_set};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phase_message_from_a_non_coordinator_is_refused_and_changes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let (members, channels, leader) =
        three_and_a_newcomer(root.path(), MoveConfig::default()).await;
    let (a, other, b) = ((leader + 1) % 3, (leader + 2) % 3, 3);
    pin_on_leader(&members[leader], &channels[leader], 5).await;
    let spec = spec(&members[a], &members[b], &members[leader]);
    members[a].moves.bind(&spec).await.unwrap();
    members[b].moves.bind(&spec).await.unwrap();
    let voters: Vec<_> = members[..3].iter().map(|m| m.addr.clone()).collect();
    let b_channel = members[b].join(&voters).await;

    support::wait_until("A applied the five pins", || {
        (pin_set(&members[a].store).len() == 5).then_some(())
    })
    .await;
    let pins_before = pin_set(&members[a].store);
    assert_eq!(pins_before.len(), 5);
    let applied_before = stored_applied(&members[a].store, CHANNEL).unwrap();
    let cleanup = CleanupRequest {
        id: spec.id,
        cutover: 1,
    };
    for sender in [other, b] {
        let before = members[a].moves.phase_rejections();
        let err = members[sender]
            .call::<_, CleanupReply>(&members[a].addr, METHOD_MOVE_CLEANUP, &cleanup)
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::PermissionDenied, "{err}");
        assert_eq!(members[a].moves.phase_rejections(), before + 1);
    }
    let before = members[b].moves.phase_rejections();
    let err = members[other]
        .call::<_, HandoffState>(
            &members[b].addr,
            METHOD_MOVE_STATE,
            &StateRequest { id: spec.id },
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::PermissionDenied, "{err}");
    assert_eq!(members[b].moves.phase_rejections(), before + 1);

    // Nothing changed on A: pins, applied state, binding, still a running member.
    assert_eq!(pin_set(&members[a].store), pins_before);
    assert_eq!(
        stored_applied(&members[a].store, CHANNEL).unwrap(),
        applied_before
    );
    let record = members[a].moves.record(CHANNEL).await.unwrap().unwrap();
    assert_eq!(record.phase, MovePhase::Bound);
    assert_eq!(record.coordinator, members[leader].identity.node_id());
    assert_eq!(members[a].moves.spurious_cleanups(), 0);
    assert!(channels[a].status().leader.is_some());

    // The bound coordinator's move goes through.
    let done = members[leader].moves.start(&spec, |_| {}).await.unwrap();
    assert_eq!(done.phase, MovePhase::CleanedUp);
    assert!(pin_set(&members[a].store).is_empty());

    b_channel.shutdown().await.unwrap();
    for i in [leader, other] {
        channels[i].shutdown().await.unwrap();
    }
}
