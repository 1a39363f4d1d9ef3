//! H-2: a move whose target is unreachable after it joined stops at `LearnerAdded` with
//! `NotCaughtUp`: the voters are unchanged (the source still votes, the target is only a
//! learner) and the source keeps its copy. Once the target is back, `resume` goes on from
//! `LearnerAdded` and finishes.
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
use net_mesh_replication::{MoveConfig, MoveError, MovePhase};
use support::{CHANNEL, pin_set};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cutover_never_happens_before_the_target_caught_up() {
    let root = tempfile::tempdir().unwrap();
    let config = MoveConfig {
        catch_up: Duration::from_secs(2),
        ..MoveConfig::default()
    };
    let (mut members, channels, leader) = three_and_a_newcomer(root.path(), config.clone()).await;
    let (a, other, b) = ((leader + 1) % 3, (leader + 2) % 3, 3);
    pin_on_leader(&members[leader], &channels[leader], 5).await;
    let spec = spec(&members[a], &members[b], &members[leader]);
    members[a].moves.bind(&spec).await.unwrap();
    members[b].moves.bind(&spec).await.unwrap();
    let voters: Vec<_> = members[..3].iter().map(|m| m.addr.clone()).collect();

    // B is bound but not reachable (stopped before it joined).
    let stopped = members.pop().unwrap();
    let (identity, dir, port) = stopped.stop().await;
    let mut events = Vec::new();
    let err = members[leader]
        .moves
        .start(&spec, |e| events.push(e.phase))
        .await
        .unwrap_err();
    eprintln!("move stopped: {err}");
    assert!(
        matches!(err, MoveError::NotCaughtUp { matched: None, .. }),
        "{err:?}"
    );
    assert_eq!(events, [MovePhase::LearnerAdded]);
    assert_eq!(
        members[leader]
            .moves
            .record(CHANNEL)
            .await
            .unwrap()
            .unwrap()
            .phase,
        MovePhase::LearnerAdded
    );
    let (voters_now, learners_now) = applied_membership(&members[leader].store);
    let want: std::collections::BTreeSet<[u8; 32]> =
        voters.iter().map(|v| *v.node_id.as_bytes()).collect();
    assert_eq!(voters_now, want, "the voters changed before B caught up");
    assert_eq!(learners_now.len(), 1);
    support::wait_until("A holds its five pins", || {
        (pin_set(&members[a].store).len() == 5).then_some(())
    })
    .await;

    // B is back and joins; the move resumes from LearnerAdded.
    members.push(MoveMember::start(identity, dir, port, config).await);
    let b_channel = members[b].join(&voters).await;
    let mut events = Vec::new();
    let done = members[leader]
        .moves
        .resume(CHANNEL, None, |e| events.push(e.phase))
        .await
        .unwrap();
    assert_eq!(done.phase, MovePhase::CleanedUp);
    assert_eq!(
        events,
        [
            MovePhase::CaughtUp,
            MovePhase::CutOver,
            MovePhase::Left,
            MovePhase::CleanedUp
        ]
    );
    wait_for_voters_on(&members, &[leader, other, b], &[leader, other, b]).await;
    assert!(pin_set(&members[a].store).is_empty());
    support::wait_until("B holds the five pins", || {
        (pin_set(&members[b].store).len() == 5).then_some(())
    })
    .await;

    b_channel.shutdown().await.unwrap();
    for i in [leader, other] {
        channels[i].shutdown().await.unwrap();
    }
}
