//! H-2 / H-5 after the cutover: the leader K moves A's replica to B and reaches `CutOver`;
//! then an admin hands the same move to the other voter O, which does not lead. Before the
//! cutover only a leader may coordinate; after it, what is left (the target's handoff, the
//! source's cleanup) needs no leader, so O takes the move over at `CutOver` (its source is
//! no longer a voter, which would refuse a new move) and finishes it. The group ends with
//! exactly K, O and B; A has no pins; B holds every pin.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod moves_support;
mod support;

use moves_support::*;
use net_mesh_replication::{MoveConfig, MovePhase, MoveSpec};
use support::{CHANNEL, pin_set, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_cut_over_by_one_coordinator_is_finished_by_another_that_does_not_lead() {
    let root = tempfile::tempdir().unwrap();
    let (members, channels, k) = three_and_a_newcomer(root.path(), MoveConfig::default()).await;
    let (a, o, b) = ((k + 1) % 3, (k + 2) % 3, 3);
    pin_on_leader(&members[k], &channels[k], 4).await;
    let before = pin_set(&members[k].store);

    let first = spec(&members[a], &members[b], &members[k]);
    members[a].moves.bind(&first).await.unwrap();
    members[b].moves.bind(&first).await.unwrap();
    let voters: Vec<_> = members[..3].iter().map(|m| m.addr.clone()).collect();
    let b_channel = members[b].join(&voters).await;
    members[k].moves.begin(&first).await.unwrap();
    let record = members[k]
        .moves
        .resume(CHANNEL, Some(MovePhase::CutOver), |_| {})
        .await
        .unwrap();
    assert_eq!(record.phase, MovePhase::CutOver);
    let target = [&members[k].addr, &members[o].addr, &members[b].addr];
    wait_for_voters(&members[o].store, &target).await;
    assert!(
        !channels[o].status().is_leader,
        "K still leads: it stayed a voter"
    );
    assert!(
        !pin_set(&members[a].store).is_empty(),
        "A keeps its copy until the cleanup"
    );

    // An admin hands the move to O: the same move, bound to O on A and B.
    let handed = MoveSpec {
        coordinator: members[o].identity.node_id(),
        ..first.clone()
    };
    members[a].moves.bind(&handed).await.unwrap();
    members[b].moves.bind(&handed).await.unwrap();
    let bound = members[o].moves.begin(&handed).await.unwrap();
    assert_eq!((bound.id, bound.phase), (first.id, MovePhase::CutOver));
    assert_eq!(bound.cutover, record.cutover, "the cutover K made");
    let mut events = Vec::new();
    let done = members[o]
        .moves
        .resume(CHANNEL, None, |e| events.push(e.phase))
        .await
        .unwrap();
    assert_eq!(done.phase, MovePhase::CleanedUp);
    assert_eq!(events, [MovePhase::Left, MovePhase::CleanedUp]);

    for i in [k, o, b] {
        wait_for_voters(&members[i].store, &target).await;
    }
    assert!(pin_set(&members[a].store).is_empty());
    wait_until("B holds every pin", || {
        (pin_set(&members[b].store) == before).then_some(())
    })
    .await;

    b_channel.shutdown().await.unwrap();
    for c in &channels {
        c.shutdown().await.unwrap();
    }
}
