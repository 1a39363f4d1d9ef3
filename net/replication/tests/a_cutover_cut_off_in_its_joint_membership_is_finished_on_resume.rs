//! H-2: openraft changes the voters in two entries, a joint one (old and new voters) and the
//! final one, proposed once the joint one commits. A cutover cut off between the two (its
//! call dropped, its coordinator stopped) leaves the group in the joint membership, where the
//! target is already a voter (of the new voters) and the source still one (of the old). The
//! move's resume proposes the new voters again, which ends the joint membership; it used to
//! list the target twice and fail at every resume (the move stuck, the group joint for good).
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
use net_mesh_replication::{MoveConfig, MovePhase};
use support::wait_until;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cutover_cut_off_in_its_joint_membership_is_finished_on_resume() {
    let root = tempfile::tempdir().unwrap();
    let config = MoveConfig {
        catch_up: Duration::from_secs(10),
        ..MoveConfig::default()
    };
    let (mut members, channels, leader) = three_and_a_newcomer(root.path(), config).await;
    let (a, other, b) = ((leader + 1) % 3, (leader + 2) % 3, 3);
    pin_on_leader(&members[leader], &channels[leader], 5).await;
    let spec = spec(&members[a], &members[b], &members[leader]);
    members[a].moves.bind(&spec).await.unwrap();
    members[b].moves.bind(&spec).await.unwrap();
    let voters: Vec<_> = members[..3].iter().map(|m| m.addr.clone()).collect();
    let b_channel = members[b].join(&voters).await;
    let coordinator_moves = members[leader].moves.clone();
    coordinator_moves.begin(&spec).await.unwrap();
    let record = coordinator_moves
        .resume(support::CHANNEL, Some(MovePhase::CaughtUp), |_| {})
        .await
        .unwrap();
    assert_eq!(record.phase, MovePhase::CaughtUp);

    // The cutover's joint entry, cut off before its final one: with the other voter and the
    // target unreachable the new voters cannot commit it, so the change never gets past it;
    // its call is dropped, then both are reachable again and the joint entry commits.
    let leader_channel = channels[leader].clone();
    let before = leader_channel.status().last_log_index.unwrap();
    members[other].pause().await;
    members[b].pause().await;
    let new_voters = vec![
        members[leader].addr.clone(),
        members[other].addr.clone(),
        members[b].addr.clone(),
    ];
    let cutover = {
        let ch = leader_channel.clone();
        tokio::spawn(async move { ch.change_membership(&new_voters).await })
    };
    wait_until("the leader appended the joint entry", || {
        (leader_channel.status().last_log_index? > before).then_some(())
    })
    .await;
    cutover.abort();
    assert!(cutover.await.is_err(), "the cutover finished unreachable");
    members[other].resume().await;
    members[b].resume().await;
    wait_until("the joint entry committed", || {
        (leader_channel.status().committed? > before).then_some(())
    })
    .await;
    // Committed is not yet applied: the leader's state machine applies it just after.
    let (a_id, b_id) = (members[a].identity.node_id(), members[b].identity.node_id());
    let leader_store = members[leader].store.clone();
    wait_until(
        "the joint membership of the source and the target applied",
        || {
            let (in_voters, _) = applied_membership(&leader_store);
            (in_voters.contains(a_id.as_bytes()) && in_voters.contains(b_id.as_bytes()))
                .then_some(())
        },
    )
    .await;

    let mut events = Vec::new();
    let record = coordinator_moves
        .resume(support::CHANNEL, None, |e| {
            eprintln!("phase {:?}: {}", e.phase, e.detail);
            events.push(e.phase)
        })
        .await
        .unwrap();
    assert_eq!(record.phase, MovePhase::CleanedUp);
    assert_eq!(events.first(), Some(&MovePhase::CutOver));
    moved_to_b(&members, leader, other, a, b).await;

    b_channel.shutdown().await.unwrap();
    for i in [leader, other] {
        channels[i].shutdown().await.unwrap();
    }
}
