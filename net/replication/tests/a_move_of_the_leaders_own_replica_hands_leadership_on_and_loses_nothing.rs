//! Draining the leader: the leader K coordinates the move of its own replica to B (source =
//! coordinator = leader). The move reports every phase in order; the cutover removes K from
//! the voters, so K steps down and one of the remaining voters leads; K cleans up its own
//! copy only after B reported the handoff. The group ends with exactly the other two voters
//! and B, every pin acknowledged before the move on B, and the new leader takes pins again.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod moves_support;
mod support;

use moves_support::*;
use net_mesh_replication::{MoveConfig, MovePhase, ReplicatedChannel};
use support::{pin_set, wait_for_leader, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_of_the_leaders_own_replica_hands_leadership_on_and_loses_nothing() {
    let root = tempfile::tempdir().unwrap();
    let (members, channels, k) = three_and_a_newcomer(root.path(), MoveConfig::default()).await;
    let (x, y, b) = ((k + 1) % 3, (k + 2) % 3, 3);
    pin_on_leader(&members[k], &channels[k], 6).await;
    let before = pin_set(&members[k].store);
    assert_eq!(before.len(), 6);

    let spec = spec(&members[k], &members[b], &members[k]);
    members[b].moves.bind(&spec).await.unwrap();
    let voters: Vec<_> = members[..3].iter().map(|m| m.addr.clone()).collect();
    let b_channel = members[b].join(&voters).await;

    let mut events = Vec::new();
    let record = members[k]
        .moves
        .start(&spec, |e| {
            eprintln!("phase {:?}: {}", e.phase, e.detail);
            events.push(e.phase);
        })
        .await
        .unwrap();
    assert_eq!(record.phase, MovePhase::CleanedUp);
    assert_eq!(
        events,
        [
            MovePhase::LearnerAdded,
            MovePhase::CaughtUp,
            MovePhase::CutOver,
            MovePhase::Left,
            MovePhase::CleanedUp
        ]
    );

    let target = [&members[x].addr, &members[y].addr, &members[b].addr];
    for i in [x, y, b] {
        wait_for_voters(&members[i].store, &target).await;
    }
    // K handed its copy off: no pins, no longer a leader.
    assert!(pin_set(&members[k].store).is_empty());
    assert!(!channels[k].status().is_leader);
    // One of the staying voters leads; B holds every pin acknowledged before the move.
    let staying: Vec<&ReplicatedChannel> = vec![
        channels[x].as_ref(),
        channels[y].as_ref(),
        b_channel.as_ref(),
    ];
    let new = wait_for_leader(&staying).await;
    wait_until("B holds every pin acknowledged before the move", || {
        (pin_set(&members[b].store) == before).then_some(())
    })
    .await;
    // The new leader takes writes, applied on B too.
    let (leader_member, leader_channel) = match new {
        0 => (&members[x], &channels[x]),
        1 => (&members[y], &channels[y]),
        _ => (&members[b], &b_channel),
    };
    let r = leader_member
        .store
        .store(b"after the move")
        .unwrap()
        .blob_ref;
    leader_channel.propose_pin(&r, "after").await.unwrap();
    wait_until("B applied the pin written after the move", || {
        (pin_set(&members[b].store).len() == before.len() + 1).then_some(())
    })
    .await;

    b_channel.shutdown().await.unwrap();
    for c in &channels {
        c.shutdown().await.unwrap();
    }
}
