//! A learner removed from the group while it was away learns that it is out, and one that was
//! merely away does not take itself for out. A move's target B joins as a learner and
//! catches up; a plain learner C is added too; both go away (their endpoints stop serving:
//! the leader reaches neither) and the group commits on. The move is abandoned while B is
//! away, so the leader removes B from the group and B is not told. B never campaigns and
//! still names the leader that removed it, so only asking tells it: once it has heard
//! nothing from its leader for a while it asks the voters (it can still reach them), they
//! refuse it as a non-member, and it reports `excluded` (its copy is stale; a node refuses
//! its reads), also once back. C, away as long and asking the same, is taken by every voter:
//! it never reports `excluded`, and once back it catches up with what was committed
//! meanwhile.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod moves_support;
mod support;

use std::time::{Duration, Instant};

use moves_support::*;
use net_mesh_replication::{MoveConfig, MovePhase, ReplicatedChannel, ReplicationConfig};
use support::{CHANNEL, pin_set};

/// Waits until `excluded` holds for `b`, checking on each poll that `c` is not excluded and
/// was refused by nobody.
async fn b_excluded_while_c_is_not(b: &ReplicatedChannel, c: &ReplicatedChannel) -> String {
    support::wait_until("B reports that it is excluded", || {
        assert_eq!(c.excluded(), None, "C took itself for excluded");
        assert!(c.status().refused_by.is_empty(), "{:?}", c.status());
        b.excluded()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_removed_while_away_learns_it_is_excluded() {
    let root = tempfile::tempdir().unwrap();
    let config = MoveConfig {
        catch_up: Duration::from_secs(2),
        call_timeout: Duration::from_secs(2),
        ..MoveConfig::default()
    };
    let (mut members, channels, leader) = group_and_outsiders(root.path(), config, 3, 2).await;
    let (a, b, c) = ((leader + 1) % 3, 3, 4);
    pin_on_leader(&members[leader], &channels[leader], 5).await;
    let voters: Vec<_> = members[..3].iter().map(|m| m.addr.clone()).collect();

    // B joins as the target of a move of A's replica, C as a plain learner.
    let first = spec(&members[a], &members[b], &members[leader]);
    members[a].moves.bind(&first).await.unwrap();
    members[b].moves.bind(&first).await.unwrap();
    let b_channel = members[b].join(&voters).await;
    members[leader].moves.begin(&first).await.unwrap();
    members[leader]
        .moves
        .resume(CHANNEL, Some(MovePhase::LearnerAdded), |_| {})
        .await
        .unwrap();
    let c_channel = members[c].join(&voters).await;
    channels[leader]
        .add_learner(&members[c].addr)
        .await
        .unwrap();
    for i in [b, c] {
        support::wait_until("each learner holds the five pins", || {
            (pin_set(&members[i].store).len() == 5).then_some(())
        })
        .await;
    }
    assert_eq!(b_channel.excluded(), None);
    assert_eq!(c_channel.excluded(), None);

    // Both go away; the group commits on, and the move, abandoned, removes B.
    members[b].pause().await;
    members[c].pause().await;
    let extra = members[leader]
        .store
        .store(b"committed while the learners were away")
        .unwrap()
        .blob_ref;
    channels[leader].propose_pin(&extra, "extra").await.unwrap();
    let (record, done) = members[leader].moves.abandon(&first).await.unwrap();
    eprintln!("abandoned: {done:?}");
    assert_eq!(record.phase, MovePhase::Abandoned);
    assert!(done[0].contains("removed from the group"), "{done:?}");
    assert!(
        done.iter().any(|d| d.contains("the target was not told")),
        "{done:?}"
    );
    let (_, learners) = applied_membership(&members[leader].store);
    assert_eq!(
        learners,
        [*members[c].addr.node_id.as_bytes()].into_iter().collect(),
        "C stays a learner, B is gone"
    );
    // B still holds itself a learner of the group and names its leader.
    let b_status = b_channel.status();
    assert!(
        b_status
            .members
            .iter()
            .any(|m| m.addr == members[b].addr && !m.voter),
        "{b_status:?}"
    );
    assert_eq!(b_status.leader.as_ref(), Some(&members[leader].addr));

    // Still away, B learns it is out (the voters refuse it), and stays out over two more of
    // its rounds of questions (each after twice the longest election timeout); C, which asks
    // the same meanwhile, is taken by every voter and never takes itself for excluded.
    let why = b_excluded_while_c_is_not(&b_channel, &c_channel).await;
    eprintln!("B: {why}");
    assert!(why.contains("non-member"), "{why}");
    let refused_by = b_channel.status().refused_by;
    assert!(refused_by.len() >= 2, "{refused_by:?}");
    let rounds = 2 * 2 * ReplicationConfig::default().election_timeout.1;
    let until = Instant::now() + rounds;
    while Instant::now() < until {
        assert!(b_channel.excluded().is_some(), "B taken again");
        assert_eq!(c_channel.excluded(), None, "C took itself for excluded");
        assert!(c_channel.status().refused_by.is_empty());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Back: B stays out with its stale copy; C catches up with the pin committed while it
    // was away.
    members[b].resume().await;
    members[c].resume().await;
    support::wait_until("C holds the pin committed while it was away", || {
        assert!(b_channel.excluded().is_some(), "B taken again");
        assert_eq!(c_channel.excluded(), None, "C took itself for excluded");
        (pin_set(&members[c].store).len() == 6).then_some(())
    })
    .await;
    assert!(b_channel.excluded().is_some());
    assert_eq!(pin_set(&members[b].store).len(), 5, "B's stale copy stays");

    b_channel.shutdown().await.unwrap();
    c_channel.shutdown().await.unwrap();
    for ch in &channels {
        ch.shutdown().await.unwrap();
    }
    members.truncate(0);
}
