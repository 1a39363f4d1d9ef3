//! H-2: a move whose coordinator stopped after `LearnerAdded` (its driver and in-memory state
//! gone; a new `Moves` reads only the store) resumes from the stored phase: it does not add
//! the learner again, reports `CaughtUp` → `CleanedUp`, and ends with the target voters.
//! Its status shows the target as the one member that does not vote until the cutover.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod moves_support;
mod support;

use moves_support::*;
use net_mesh_replication::{MoveConfig, MovePhase, Moves};
use net_mesh_rpc::NodeId;
use support::CHANNEL;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_interrupted_after_a_phase_resumes_from_it_and_finishes() {
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

    let first = &members[leader].moves;
    first.begin(&spec).await.unwrap();
    let mut events = Vec::new();
    let record = first
        .resume(CHANNEL, Some(MovePhase::LearnerAdded), |e| {
            events.push(e.phase)
        })
        .await
        .unwrap();
    assert_eq!(record.phase, MovePhase::LearnerAdded);
    assert_eq!(events, [MovePhase::LearnerAdded]);
    let learner_entry = channels[leader].status().last_log_index;
    // The status tells the learner from the voters.
    let roles: Vec<(NodeId, bool)> = channels[leader]
        .status()
        .members
        .iter()
        .map(|m| (m.addr.node_id, m.voter))
        .collect();
    assert_eq!(roles.len(), 4, "{roles:?}");
    for (id, voter) in &roles {
        assert_eq!(*voter, *id != members[b].addr.node_id, "{roles:?}");
    }

    // A new driver, with only the store to go by.
    let restarted = Moves::new(
        members[leader].store.clone(),
        members[leader].identity.node_id(),
    );
    restarted.attach(channels[leader].clone());
    assert_eq!(
        restarted.record(CHANNEL).await.unwrap().unwrap().phase,
        MovePhase::LearnerAdded
    );
    let mut events = Vec::new();
    let record = restarted
        .resume(CHANNEL, None, |e| {
            eprintln!("phase {:?}: {}", e.phase, e.detail);
            events.push(e.phase)
        })
        .await
        .unwrap();
    assert_eq!(record.phase, MovePhase::CleanedUp);
    assert_eq!(
        events,
        [
            MovePhase::CaughtUp,
            MovePhase::CutOver,
            MovePhase::Left,
            MovePhase::CleanedUp
        ]
    );
    // No second learner entry: the cutover (joint, then final) follows the first one.
    assert!(record.cutover.unwrap() <= learner_entry.unwrap() + 2);

    moved_to_b(&members, leader, other, a, b).await;
    let status = channels[leader].status();
    assert_eq!(status.members.len(), 3, "{:?}", status.members);
    assert!(
        status.members.iter().all(|m| m.voter),
        "{:?}",
        status.members
    );
    // A resume of a finished move does nothing.
    let again = restarted
        .resume(CHANNEL, None, |_| panic!("no phase"))
        .await;
    assert_eq!(again.unwrap().phase, MovePhase::CleanedUp);

    b_channel.shutdown().await.unwrap();
    for i in [leader, other] {
        channels[i].shutdown().await.unwrap();
    }
}
