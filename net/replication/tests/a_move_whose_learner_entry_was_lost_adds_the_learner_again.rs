//! H-2: the `Bound` step takes a target already in the group's latest membership as added,
//! and that membership may be an uncommitted entry that a new leader then drops. The move's
//! row says `LearnerAdded` while the group no longer has the target: the next step adds it as
//! a learner again before waiting for it to catch up, instead of waiting for a member that is
//! not there (which failed `NotCaughtUp` at every resume: the move was stuck). The cutover
//! step checks it again (the entry may be lost after `CaughtUp` was stored): the second test.
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
use net_mesh_replication::tables::{Change, MOVES_TABLE, NAMESPACE, RaftWrite, read_move};
use net_mesh_replication::{MoveConfig, MovePhase};
use support::CHANNEL;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_whose_learner_entry_was_lost_adds_the_learner_again() {
    let events = resume_without_the_learner(MovePhase::LearnerAdded).await;
    let (phase, detail) = &events[0];
    assert_eq!(*phase, MovePhase::CaughtUp);
    assert!(detail.contains("added again as a learner"), "{detail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_caught_up_whose_learner_entry_was_lost_adds_it_again_before_the_cutover() {
    let events = resume_without_the_learner(MovePhase::CaughtUp).await;
    let (phase, detail) = &events[0];
    assert_eq!(*phase, MovePhase::CutOver);
    assert!(detail.contains("added again as a learner"), "{detail}");
}

/// Runs a move whose coordinator's row is forced to `phase` while the target is in no
/// membership of the group, resumes it to the end and checks the target membership and
/// pins; gives the phases the resume reported.
async fn resume_without_the_learner(forced: MovePhase) -> Vec<(MovePhase, String)> {
    let root = tempfile::tempdir().unwrap();
    let config = MoveConfig {
        catch_up: Duration::from_secs(5),
        ..MoveConfig::default()
    };
    let (members, channels, leader) = three_and_a_newcomer(root.path(), config).await;
    let (a, other, b) = ((leader + 1) % 3, (leader + 2) % 3, 3);
    pin_on_leader(&members[leader], &channels[leader], 5).await;
    let spec = spec(&members[a], &members[b], &members[leader]);
    members[a].moves.bind(&spec).await.unwrap();
    members[b].moves.bind(&spec).await.unwrap();
    let voters: Vec<_> = members[..3].iter().map(|m| m.addr.clone()).collect();
    let b_channel = members[b].join(&voters).await;

    // The coordinator's row at `forced`, the target in no membership of the group: as
    // after a learner entry a new leader dropped.
    let coordinator = &members[leader];
    coordinator.moves.begin(&spec).await.unwrap();
    let store = coordinator.store.clone();
    let mut row = store
        .read_extension(NAMESPACE, |r| read_move(r, CHANNEL))
        .unwrap()
        .unwrap();
    row.phase = forced;
    store
        .commit_ops(vec![Box::new(RaftWrite {
            channel: CHANNEL.to_string(),
            change: Change::Move(row),
        })])
        .unwrap();
    let (in_voters, in_learners) = applied_membership(&store);
    let b_id = *members[b].identity.node_id().as_bytes();
    assert!(
        !in_voters.contains(&b_id) && !in_learners.contains(&b_id),
        "the target is in the group already ({MOVES_TABLE} row forced)"
    );

    let mut events = Vec::new();
    let record = coordinator
        .moves
        .resume(CHANNEL, None, |e| {
            eprintln!("phase {:?}: {}", e.phase, e.detail);
            events.push((e.phase, e.detail.clone()))
        })
        .await
        .unwrap();
    assert_eq!(record.phase, MovePhase::CleanedUp);

    moved_to_b(&members, leader, other, a, b).await;

    b_channel.shutdown().await.unwrap();
    for i in [leader, other] {
        channels[i].shutdown().await.unwrap();
    }
    events
}
