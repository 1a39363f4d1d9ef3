//! H-2, the other voters' side: a cutover makes the target a voter that may lead, and a voter
//! that does not hold the entry that added the target would refuse the target's calls (its own
//! membership does not name it) and never catch up under it. So with one staying voter down,
//! the move stops after `CaughtUp` with `VoterBehind`: the target caught up, the voters are
//! unchanged. Once that voter is back (and has the entry), `resume` cuts over and finishes,
//! and the voter that was down ends with exactly the target voters.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod moves_support;
mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use moves_support::*;
use net_mesh_replication::{MoveConfig, MoveError, MovePhase};
use support::{CHANNEL, pin_set};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cutover_waits_until_every_staying_voter_holds_the_target() {
    let root = tempfile::tempdir().unwrap();
    let config = MoveConfig {
        catch_up: Duration::from_secs(2),
        ..MoveConfig::default()
    };
    let (members, channels, leader) = three_and_a_newcomer(root.path(), config.clone()).await;
    let mut members: Vec<Option<MoveMember>> = members.into_iter().map(Some).collect();
    let mut channels: Vec<Option<_>> = channels.into_iter().map(Some).collect();
    let (a, other, b) = ((leader + 1) % 3, (leader + 2) % 3, 3);
    pin_on_leader(
        members[leader].as_ref().unwrap(),
        channels[leader].as_ref().unwrap(),
        3,
    )
    .await;
    let voters: Vec<_> = members[..3]
        .iter()
        .map(|m| m.as_ref().unwrap().addr.clone())
        .collect();
    let spec = spec(
        members[a].as_ref().unwrap(),
        members[b].as_ref().unwrap(),
        members[leader].as_ref().unwrap(),
    );
    members[a]
        .as_ref()
        .unwrap()
        .moves
        .bind(&spec)
        .await
        .unwrap();
    members[b]
        .as_ref()
        .unwrap()
        .moves
        .bind(&spec)
        .await
        .unwrap();
    let b_channel = members[b].as_ref().unwrap().join(&voters).await;

    // The voter that stays is down while the move runs.
    // (every handle on its store dropped, so it can reopen it)
    let down = channels[other].take().unwrap();
    down.shutdown().await.unwrap();
    members[other].as_ref().unwrap().moves.detach(CHANNEL);
    drop(down);
    let (identity, dir, port) = members[other].take().unwrap().stop().await;
    let mut events = Vec::new();
    let err = members[leader]
        .as_ref()
        .unwrap()
        .moves
        .start(&spec, |e| events.push(e.phase))
        .await
        .unwrap_err();
    eprintln!("move stopped: {err}");
    assert!(
        matches!(&err, MoveError::VoterBehind { voter, .. } if *voter == voters[other]),
        "{err:?}"
    );
    assert_eq!(events, [MovePhase::LearnerAdded, MovePhase::CaughtUp]);
    let (voters_now, _) = applied_membership(&members[leader].as_ref().unwrap().store);
    let want: BTreeSet<[u8; 32]> = voters.iter().map(|v| *v.node_id.as_bytes()).collect();
    assert_eq!(
        voters_now, want,
        "cut over while a staying voter lacked the target"
    );

    // The voter is back; the move resumes and finishes.
    members[other] = Some(MoveMember::start(identity, dir, port, config).await);
    let other_channel = members[other].as_ref().unwrap().join(&voters).await;
    let mut events = Vec::new();
    let done = members[leader]
        .as_ref()
        .unwrap()
        .moves
        .resume(CHANNEL, None, |e| events.push(e.phase))
        .await
        .unwrap();
    assert_eq!(done.phase, MovePhase::CleanedUp);
    assert_eq!(
        events,
        [MovePhase::CutOver, MovePhase::Left, MovePhase::CleanedUp]
    );
    let target = [
        &members[leader].as_ref().unwrap().addr,
        &members[other].as_ref().unwrap().addr,
        &members[b].as_ref().unwrap().addr,
    ];
    for i in [leader, other, b] {
        wait_for_voters(&members[i].as_ref().unwrap().store, &target).await;
    }
    assert!(pin_set(&members[a].as_ref().unwrap().store).is_empty());
    for i in [other, b] {
        support::wait_until("the member holds the three pins", || {
            (pin_set(&members[i].as_ref().unwrap().store).len() == 3).then_some(())
        })
        .await;
    }
    b_channel.shutdown().await.unwrap();
    other_channel.shutdown().await.unwrap();
    channels[leader].as_ref().unwrap().shutdown().await.unwrap();
}
