//! H-2, never stuck: a cutover cut off between openraft's joint entry and its final one (its
//! coordinator K gone) leaves the group joint, and the target B, a voter of the new voters,
//! may win the next election. A target never coordinates its own move, so the move is taken
//! over by another voter O (what `channel move --id` does), which does not lead; O can
//! neither propose the final entry nor wait for anyone to. The group's leader finishes a
//! joint membership it finds committed and left alone (the newest voters, as the cutover
//! asked), and O then takes the move over past its cutover and finishes it.
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
use net_mesh_replication::{MoveConfig, MovePhase, MoveSpec, ReplicationConfig};
use support::{CHANNEL, pin_set, wait_for_leader, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joint_membership_left_by_its_coordinator_is_finished_when_the_target_leads() {
    let root = tempfile::tempdir().unwrap();
    let config = MoveConfig {
        catch_up: Duration::from_secs(10),
        handoff: Duration::from_secs(10),
        ..MoveConfig::default()
    };
    let (mut members, channels, k) = three_and_a_newcomer(root.path(), config).await;
    let (a, o, b) = ((k + 1) % 3, (k + 2) % 3, 3);
    pin_on_leader(&members[k], &channels[k], 5).await;
    let first = spec(&members[a], &members[b], &members[k]);
    members[a].moves.bind(&first).await.unwrap();
    members[b].moves.bind(&first).await.unwrap();
    let voters: Vec<_> = members[..3].iter().map(|m| m.addr.clone()).collect();
    // B stands first once K is gone (the others wait 0.75-1.5 s).
    let eager = ReplicationConfig {
        election_timeout: (Duration::from_millis(200), Duration::from_millis(250)),
        ..ReplicationConfig::default()
    };
    let b_channel = members[b].join_with(&voters, &eager).await;
    members[k].moves.begin(&first).await.unwrap();
    let record = members[k]
        .moves
        .resume(CHANNEL, Some(MovePhase::CaughtUp), |_| {})
        .await
        .unwrap();
    assert_eq!(record.phase, MovePhase::CaughtUp);

    // K appends the cutover's joint entry, which cannot commit while O and B are away.
    let k_channel = channels[k].clone();
    let before = k_channel.status().last_log_index.unwrap();
    members[o].pause().await;
    members[b].pause().await;
    let new_voters = vec![
        members[k].addr.clone(),
        members[o].addr.clone(),
        members[b].addr.clone(),
    ];
    let cutover = {
        let ch = k_channel.clone();
        tokio::spawn(async move { ch.change_membership(&new_voters).await })
    };
    wait_until("K appended the joint entry", || {
        (k_channel.status().last_log_index? > before).then_some(())
    })
    .await;
    // Its call dropped: K never proposes the final entry. The joint entry commits once O
    // and B are back, and K goes away.
    cutover.abort();
    assert!(cutover.await.is_err(), "the cutover finished unreachable");
    members[o].resume().await;
    members[b].resume().await;
    let (a_id, b_id) = (members[a].identity.node_id(), members[b].identity.node_id());
    let b_store = members[b].store.clone();
    wait_until("B holds the joint membership", || {
        let (in_voters, _) = applied_membership(&b_store);
        (in_voters.contains(a_id.as_bytes()) && in_voters.contains(b_id.as_bytes())).then_some(())
    })
    .await;
    k_channel.shutdown().await.unwrap();
    members[k].moves.detach(CHANNEL);
    members[k].pause().await;

    // B leads now; the move goes to O, neither its source nor its target.
    let survivors = [
        channels[a].as_ref(),
        channels[o].as_ref(),
        b_channel.as_ref(),
    ];
    assert_eq!(wait_for_leader(&survivors).await, 2, "B did not win");
    let taken = MoveSpec {
        coordinator: members[o].identity.node_id(),
        ..first.clone()
    };
    members[a].moves.bind(&taken).await.unwrap();
    members[b].moves.bind(&taken).await.unwrap();
    let mut phases = Vec::new();
    let done = members[o]
        .moves
        .start(&taken, |e| {
            eprintln!("phase {:?}: {}", e.phase, e.detail);
            phases.push(e.phase)
        })
        .await
        .unwrap();
    assert_eq!(done.phase, MovePhase::CleanedUp);
    // Taken over past the cutover (bound at `CutOver`), then the rest of the move.
    assert_eq!(phases, [MovePhase::Left, MovePhase::CleanedUp]);
    // Exactly the new voters (K among them, away), B holding every pin, A none.
    wait_for_voters_on(&members, &[o, b], &[k, o, b]).await;
    assert!(pin_set(&members[a].store).is_empty());
    assert_eq!(pin_set(&members[b].store), pin_set(&members[o].store));
    assert_eq!(pin_set(&members[b].store).len(), 5);

    b_channel.shutdown().await.unwrap();
    channels[o].shutdown().await.unwrap();
    channels[a].shutdown().await.unwrap();
}
