//! A move that never ran (its target was a voter beside its source already: a row bound by an
//! older node, or on a target whose group was not running) is stuck on both nodes, refusing
//! other moves, until it is abandoned. In a group of two whose leader is that target, no node
//! that leads may coordinate the abandon (the target never coordinates its own move) and no
//! third member is there: the source takes the move over without leading, since abandoning a
//! move that never ran changes nothing in the group. The CLI does the same: it rebinds the
//! target to the source, then asks the source to abandon. Both nodes keep their copies and
//! votes and are free: the source's replica then moves to a third node.
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
use net_mesh_replication::{MoveConfig, MoveError, MovePhase, MoveSpec, ReplicatedChannel};
use support::{CHANNEL, pin_set};

async fn phase_on(member: &MoveMember) -> Option<MovePhase> {
    member.moves.record(CHANNEL).await.unwrap().map(|r| r.phase)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_that_never_ran_is_abandoned_by_its_source_while_its_target_leads() {
    let root = tempfile::tempdir().unwrap();
    let config = MoveConfig {
        catch_up: Duration::from_secs(10),
        call_timeout: Duration::from_secs(2),
        ..MoveConfig::default()
    };
    let (members, channels, b) = group_and_outsiders(root.path(), config, 2, 1).await;
    let pair: Vec<_> = members[..2].iter().map(|m| m.addr.clone()).collect();
    let refs: Vec<&ReplicatedChannel> = channels.iter().map(|c| c.as_ref()).collect();
    // The leader is the move's target B; the other member its source A; the third node K
    // bound the move (an older node) and is no member.
    let (a, k) = (1 - b, 2);
    pin_on_leader(&members[b], &channels[b], 5).await;
    support::wait_until("both voters hold the five pins", || {
        (pin_set(&members[a].store).len() == 5).then_some(())
    })
    .await;

    let stuck = spec(&members[a], &members[b], &members[k]);
    members[a].moves.bind(&stuck).await.unwrap();
    // B runs the group as a voter, so it refuses the binding; bound while its group is not
    // running (as a restarting node), it takes it.
    let refused = members[b].moves.bind(&stuck).await;
    assert!(
        matches!(&refused, Err(MoveError::Usage { reason, .. }) if reason.contains("is already a member of")),
        "{refused:?}"
    );
    members[b].moves.detach(CHANNEL).unwrap();
    members[b].moves.bind(&stuck).await.unwrap();
    members[b].moves.attach(channels[b].clone());
    // Stuck: A refuses to be the source of another move.
    let next = spec(&members[a], &members[k], &members[b]);
    let busy = members[a].moves.bind(&next).await;
    assert!(matches!(&busy, Err(MoveError::Busy { .. })), "{busy:?}");

    // What `channel move --abandon` does while the target leads: the source coordinates.
    let by_source = MoveSpec {
        coordinator: members[a].identity.node_id(),
        ..stuck.clone()
    };
    assert!(
        channels[b].status().is_leader,
        "the target must lead for this case"
    );
    members[b].moves.rebind(&by_source).await.unwrap();
    let (record, done) = members[a].moves.abandon(&by_source).await.unwrap();
    eprintln!("abandoned: {done:?}");
    assert_eq!(record.phase, MovePhase::Abandoned);
    assert!(done[0].contains("never ran"), "{done:?}");
    assert!(
        done[1..].iter().all(|line| line.contains("keeps its copy")),
        "{done:?}"
    );
    assert_eq!(done.len(), 3, "{done:?}");
    for i in [a, b] {
        assert_eq!(phase_on(&members[i]).await, Some(MovePhase::Abandoned));
        assert_eq!(pin_set(&members[i].store).len(), 5);
        assert!(members[i].moves.is_attached(CHANNEL));
    }
    wait_for_voters_on(&members, &[a, b], &[a, b]).await;
    // Abandoned for good: a resume of it is refused.
    let resumed = members[a].moves.resume(CHANNEL, None, |_| {}).await;
    assert!(
        matches!(&resumed, Err(MoveError::Usage { .. })),
        "{resumed:?}"
    );

    // Both are free: A's replica moves to K, coordinated by the leader.
    let leader = support::wait_for_leader(&refs).await;
    let next = spec(&members[a], &members[k], &members[leader]);
    members[a].moves.bind(&next).await.unwrap();
    members[k].moves.bind(&next).await.unwrap();
    let joined = members[k].join(&pair).await;
    let record = members[leader]
        .moves
        .start(&next, |e| eprintln!("phase {:?}: {}", e.phase, e.detail))
        .await
        .unwrap();
    assert_eq!(record.phase, MovePhase::CleanedUp);
    wait_for_voters_on(&members, &[b, k], &[b, k]).await;
    assert!(pin_set(&members[a].store).is_empty());
    support::wait_until("K holds every pin", || {
        (pin_set(&members[k].store).len() == 5).then_some(())
    })
    .await;

    joined.shutdown().await.unwrap();
    channels[b].shutdown().await.unwrap();
}
