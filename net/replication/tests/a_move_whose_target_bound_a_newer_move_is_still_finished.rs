//! H-2: once the target B has applied a move's cutover, a newer move of the channel may bind on
//! B (B's row gives way to it), possibly before the first move's coordinator asked B for the
//! handoff and before the source A cleaned up. B keeps the replaced move's row as its
//! previous move, and answers that move's coordinator and source its handoff state
//! (`move/v1/state`) from it: the first move still reaches `Left`, and, handed to another
//! coordinator (B rebinds its previous move) as when the first is gone, `CleanedUp`, and A's
//! copy goes. (Before, B refused both: the move stopped at `CutOver` and A kept its copy; and
//! B answered the hand-over `Busy`.) Anyone else asking B the state of the previous move is
//! refused and counted. B answers from the applied state it kept when the first move's row
//! gave way: here the newer move takes B's own replica to a fifth node and B cleans its copy up
//! before the first move's new coordinator asks (B answered its applied state of then: none,
//! and the first move never finished).
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
use net_mesh_replication::moves::{METHOD_MOVE_STATE, StateRequest};
use net_mesh_replication::tables::{NAMESPACE, read_move, read_previous_move};
use net_mesh_replication::{MoveConfig, MovePhase, MoveSpec};
use net_mesh_rpc::Identity;
use net_mesh_rpc::rpc::ErrorKind;
use support::{CHANNEL, pin_set};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_whose_target_bound_a_newer_move_is_still_finished() {
    let root = tempfile::tempdir().unwrap();
    let config = MoveConfig {
        handoff: Duration::from_secs(5),
        ..MoveConfig::default()
    };
    let (members, channels, leader) = three_and_a_newcomer(root.path(), config.clone()).await;
    let c = MoveMember::start(
        Identity::from_seed([5; 32]),
        root.path().join("m4"),
        0,
        config,
    )
    .await;
    let (a, other, b) = ((leader + 1) % 3, (leader + 2) % 3, 3);
    pin_on_leader(&members[leader], &channels[leader], 5).await;
    let first = spec(&members[a], &members[b], &members[leader]);
    members[a].moves.bind(&first).await.unwrap();
    members[b].moves.bind(&first).await.unwrap();
    let voters: Vec<_> = members[..3].iter().map(|m| m.addr.clone()).collect();
    let b_channel = members[b].join(&voters).await;
    let coordinator = &members[leader].moves;
    coordinator.begin(&first).await.unwrap();
    let record = coordinator
        .resume(CHANNEL, Some(MovePhase::CutOver), |_| {})
        .await
        .unwrap();
    assert_eq!(record.phase, MovePhase::CutOver);
    let target = [
        &members[leader].addr,
        &members[other].addr,
        &members[b].addr,
    ];
    wait_for_voters(&members[b].store, &target).await;

    // A newer move binds on B: B's own replica to C, the leader coordinating.
    let newer = spec(&members[b], &c, &members[leader]);
    members[b].moves.bind(&newer).await.unwrap();
    let b_store = &members[b].store;
    let bound = b_store
        .read_extension(NAMESPACE, |r| read_move(r, CHANNEL))
        .unwrap()
        .unwrap();
    assert_eq!(bound.id, newer.id);
    let previous = b_store
        .read_extension(NAMESPACE, |r| read_previous_move(r, CHANNEL))
        .unwrap()
        .unwrap();
    assert_eq!((previous.id, previous.phase), (first.id, MovePhase::Bound));

    // A member that is neither the first move's coordinator nor its source is refused.
    let refused_before = members[b].moves.phase_rejections();
    let asked = members[other]
        .call::<StateRequest, net_mesh_replication::moves::HandoffState>(
            &members[b].addr,
            METHOD_MOVE_STATE,
            &StateRequest { id: first.id },
        )
        .await;
    match asked {
        Err(e) => assert_eq!(e.kind, ErrorKind::PermissionDenied, "{e}"),
        Ok(state) => panic!("a non-coordinator got the state: {state:?}"),
    }
    assert_eq!(members[b].moves.phase_rejections(), refused_before + 1);

    // The first move's coordinator gets B's handoff state: the move reaches `Left`.
    let record = coordinator
        .resume(CHANNEL, Some(MovePhase::Left), |_| {})
        .await
        .unwrap();
    assert_eq!(record.phase, MovePhase::Left);

    // Then an admin hands the move to the other member (bound on the source and, through its
    // previous move, on the target).
    let handed = MoveSpec {
        coordinator: members[other].identity.node_id(),
        ..first.clone()
    };
    members[a].moves.bind(&handed).await.unwrap();
    let on_b = members[b].moves.bind(&handed).await.unwrap();
    assert_eq!(on_b.id, first.id);
    let bound = b_store
        .read_extension(NAMESPACE, |r| read_move(r, CHANNEL))
        .unwrap()
        .unwrap();
    assert_eq!(bound.id, newer.id, "the newer move stays bound on B");

    // The other member takes the move over while B is still a voter (bound at `CutOver`).
    let taken = members[other].moves.begin(&handed).await.unwrap();
    assert_eq!(taken.phase, MovePhase::CutOver);

    // Meanwhile the newer move runs to its end (the leader, no longer the first move's
    // coordinator, is free to coordinate it): B leaves the group and cleans its copy up.
    c.moves.bind(&newer).await.unwrap();
    let now: Vec<_> = [leader, other, b]
        .iter()
        .map(|i| members[*i].addr.clone())
        .collect();
    let c_channel = c.join(&now).await;
    let record = coordinator.start(&newer, |_| {}).await.unwrap();
    assert_eq!(record.phase, MovePhase::CleanedUp);
    assert!(pin_set(b_store).is_empty(), "B kept its copy");

    // The other member finishes the first move from the handoff B kept.
    let mut events = Vec::new();
    let record = members[other]
        .moves
        .resume(CHANNEL, None, |e| {
            eprintln!("phase {:?}: {}", e.phase, e.detail);
            events.push(e.phase)
        })
        .await
        .unwrap();
    assert_eq!(record.phase, MovePhase::CleanedUp);
    assert_eq!(events, [MovePhase::Left, MovePhase::CleanedUp]);
    assert!(pin_set(&members[a].store).is_empty());
    assert_eq!(
        members[a]
            .store
            .read_extension(NAMESPACE, |r| read_move(r, CHANNEL))
            .unwrap()
            .unwrap()
            .phase,
        MovePhase::CleanedUp
    );
    support::wait_until("C holds the leader's pins", || {
        (pin_set(&c.store) == pin_set(&members[leader].store)).then_some(())
    })
    .await;
    wait_for_voters(
        &members[leader].store,
        &[&members[leader].addr, &members[other].addr, &c.addr],
    )
    .await;

    let _ = b_channel.shutdown().await;
    c_channel.shutdown().await.unwrap();
    for i in [leader, other] {
        channels[i].shutdown().await.unwrap();
    }
}
