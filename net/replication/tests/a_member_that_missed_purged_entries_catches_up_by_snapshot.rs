//! A member is down while the leader commits pins and unpins, snapshots and purges its log
//! past where the member stopped. Restarted from its own store, the member keeps its live
//! state until it is replaced (never an empty one), catches up by installing the leader's
//! snapshot (the leader no longer has the entries it needs), and ends with exactly the
//! leader's pin set: pins added and removed while it was away.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::io::Cursor;
use std::time::Instant;

use net_mesh_replication::state_machine::StateMachine;
use net_mesh_replication::{ReplicatedChannel, stored_applied};
use openraft::storage::RaftStateMachine;
use support::*;

/// Pins committed while the member is away (`SNAPSHOT_PINS` raises it for figures).
fn pins_while_away() -> u32 {
    std::env::var("SNAPSHOT_PINS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_missed_purged_entries_catches_up_by_snapshot() {
    let root = tempfile::tempdir().unwrap();
    let members = three_members(root.path()).await;
    let away = pins_while_away();
    let refs = store_blobs(&members.iter().collect::<Vec<_>>(), "snapshot", 10 + away);
    let config = snapshotting(10, 2);
    let mut channels: Vec<Option<ReplicatedChannel>> = create_all_with(&members, &config)
        .await
        .into_iter()
        .map(Some)
        .collect();
    let leader = wait_for_leader(&channels.iter().flatten().collect::<Vec<_>>()).await;
    let mut first = 0;
    for (i, r) in refs[..10].iter().enumerate() {
        first = channels[leader]
            .as_ref()
            .unwrap()
            .propose_pin(r, &format!("before-{i}"))
            .await
            .unwrap();
    }
    let target = (leader + 1) % 3;
    let mut members: Vec<Option<Member>> = members.into_iter().map(Some).collect();
    let store = members[target].as_ref().unwrap().store.clone();
    wait_until("the first pins applied on the target", || {
        (stored_applied(&store, CHANNEL).unwrap()?.1 >= first).then_some(())
    })
    .await;
    drop(store);

    channels[target].take().unwrap().shutdown().await.unwrap();
    let (identity, dir, port) = members[target].take().unwrap().stop().await;

    // While it is away: new pins, and unpins of pins it holds and of pins it never saw.
    let leader_channel = channels[leader].as_ref().unwrap();
    let mut last = 0;
    for (i, r) in refs[10..].iter().enumerate() {
        last = leader_channel
            .propose_pin(r, &format!("while-away-{i}"))
            .await
            .unwrap();
    }
    for r in refs[..5].iter().chain(&refs[10..15]) {
        last = leader_channel
            .propose_unpin(&ReplicatedChannel::blob_id(r))
            .await
            .unwrap();
    }
    // The leader snapshotted and purged past the entries the target needs next.
    let purged = wait_until("the leader purged its log past the target", || {
        leader_channel.status().purged.filter(|&p| p > first + 1)
    })
    .await;
    let snapshot_bytes = {
        let mut sm = StateMachine::new(members[leader].as_ref().unwrap().store.clone(), CHANNEL);
        let snapshot = sm.get_current_snapshot().await.unwrap().unwrap();
        Cursor::into_inner(*snapshot.snapshot).len()
    };

    // Reopened from its own dir: its live state is there before it hears from anyone (C-2).
    let back = Member::start(identity, dir, port).await;
    let kept_applied = stored_applied(&back.store, CHANNEL).unwrap().unwrap();
    assert!(kept_applied.1 >= first, "kept its applied state");
    let kept = pin_set(&back.store);
    assert_eq!(kept.len(), 10, "kept its pins");
    let started = Instant::now();
    let channel = ReplicatedChannel::open(
        &back.replication,
        back.store.clone(),
        CHANNEL,
        back.endpoint.clone(),
        &config,
    )
    .await
    .unwrap();
    // Every look while it catches up: applied never moves back, the pin set is never empty
    // (both the old and the new set have pins, and the install is one transaction).
    let mut seen_applied = kept_applied.1;
    let store = back.store.clone();
    wait_until("the restarted member caught up", || {
        let applied = stored_applied(&store, CHANNEL).unwrap().unwrap().1;
        assert!(applied >= seen_applied, "applied moved back: {applied}");
        seen_applied = applied;
        assert!(!pinned(&store).is_empty(), "pin set went empty");
        (applied >= last).then_some(())
    })
    .await;
    let caught_up = started.elapsed();
    let status = channel.status();
    assert!(
        status.snapshots_installed >= 1,
        "caught up without installing a snapshot: {status:?}"
    );
    // openraft reports the installed snapshot in its metrics once its state machine task
    // answers, which may come just after the install's transaction made it visible here.
    wait_until(
        "the member's snapshot metric covers the installed snapshot",
        || channel.status().snapshot.filter(|&s| s > first),
    )
    .await;

    let leader_pins = pin_set(&members[leader].as_ref().unwrap().store);
    assert_eq!(
        leader_pins.len(),
        away as usize,
        "10 + {away} pinned, 10 unpinned"
    );
    assert_eq!(pin_set(&back.store), leader_pins);
    eprintln!(
        "figure: {} pins in the snapshot ({snapshot_bytes} bytes), leader purged through {purged}; \
         the restarted member caught up to {last} in {caught_up:?} ({} snapshot install(s))",
        leader_pins.len(),
        status.snapshots_installed
    );

    channel.shutdown().await.unwrap();
    for c in channels.into_iter().flatten() {
        c.shutdown().await.unwrap();
    }
}
