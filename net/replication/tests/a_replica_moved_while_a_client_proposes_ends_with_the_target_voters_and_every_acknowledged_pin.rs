//! A replica move from a follower A to a new node B, coordinated by the leader, while a client
//! keeps proposing pins on the leader: every phase is reported in order, the group ends with
//! exactly the old voters less A plus B (no learner), B holds every acknowledged pin (and the
//! leader's exact pin set), and A removed its copy: no pins, no replication rows, its move
//! row at `CleanedUp`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod moves_support;
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use moves_support::*;
use net_mesh_replication::tables::{LOG_TABLE, NAMESPACE, read_log_range};
use net_mesh_replication::{MoveConfig, MovePhase, ReplicatedChannel, stored_applied};
use support::{CHANNEL, pin_set, pinned, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_moved_while_a_client_proposes_ends_with_the_target_voters_and_every_acknowledged_pin()
 {
    let root = tempfile::tempdir().unwrap();
    let (members, channels, leader) =
        three_and_a_newcomer(root.path(), MoveConfig::default()).await;
    let a = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    let b = 3;
    for i in 0..10 {
        let r = members[leader]
            .store
            .store(format!("before {i}").as_bytes())
            .unwrap()
            .blob_ref;
        channels[leader]
            .propose_pin(&r, &format!("before-{i}"))
            .await
            .unwrap();
    }

    // The admin binds A and B; B joins.
    let spec = spec(&members[a], &members[b], &members[leader]);
    members[a].moves.bind(&spec).await.unwrap();
    members[b].moves.bind(&spec).await.unwrap();
    let voters: Vec<_> = members[..3].iter().map(|m| m.addr.clone()).collect();
    let b_channel = members[b].join(&voters).await;

    // A client proposes on the leader until the move ends; it keeps what was acknowledged.
    let done = Arc::new(AtomicBool::new(false));
    let client = {
        let ch = channels[leader].clone();
        let store = members[leader].store.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut refused = 0u32;
            let mut i = 0u32;
            while !done.load(Ordering::SeqCst) {
                let r = store
                    .store(format!("during {i}").as_bytes())
                    .unwrap()
                    .blob_ref;
                match ch.propose_pin(&r, &format!("during-{i}")).await {
                    Ok(index) => acked.push((ReplicatedChannel::blob_id(&r), index)),
                    Err(e) => {
                        refused += 1;
                        eprintln!("proposal {i} not acknowledged: {e}");
                    }
                }
                i += 1;
            }
            (acked, refused)
        })
    };

    let started = Instant::now();
    let mut events = Vec::new();
    let record = members[leader]
        .moves
        .start(&spec, |e| {
            eprintln!("phase {:?}: {}", e.phase, e.detail);
            events.push(e.phase)
        })
        .await
        .unwrap();
    let took = started.elapsed();
    done.store(true, Ordering::SeqCst);
    let (acked, refused) = client.await.unwrap();
    eprintln!(
        "figure: move done in {took:?}; {} pins acknowledged during the move, {refused} not",
        acked.len()
    );
    assert!(!acked.is_empty(), "no pin was proposed during the move");
    assert_eq!(record.phase, MovePhase::CleanedUp);
    assert_eq!(
        events,
        [
            MovePhase::LearnerAdded,
            MovePhase::CaughtUp,
            MovePhase::CutOver,
            MovePhase::Left,
            MovePhase::CleanedUp
        ]
    );

    // Exactly the target voters, on the leader, the other voter and B.
    wait_for_voters_on(&members, &[leader, other, b], &[leader, other, b]).await;

    // Every acknowledged pin is on B, whose pin set is the leader's.
    let last = acked.iter().map(|(_, i)| *i).max().unwrap();
    let b_store = members[b].store.clone();
    wait_until("B applied every acknowledged pin", || {
        (stored_applied(&b_store, CHANNEL).unwrap()?.1 >= last).then_some(())
    })
    .await;
    let on_b = pinned(&members[b].store);
    for (id, _) in &acked {
        assert!(on_b.contains(id), "an acknowledged pin is missing on B");
    }
    assert_eq!(pin_set(&members[b].store), pin_set(&members[leader].store));
    assert_eq!(on_b.len(), 10 + acked.len());

    // A removed its copy: no pins, no applied state, no log, the move row cleaned up.
    assert!(pinned(&members[a].store).is_empty());
    assert_eq!(stored_applied(&members[a].store, CHANNEL).unwrap(), None);
    let log = members[a]
        .store
        .read_extension(NAMESPACE, |r| read_log_range(r, CHANNEL, 0, u64::MAX))
        .unwrap();
    assert!(log.is_empty(), "{} log rows left in {LOG_TABLE}", log.len());
    let a_record = members[a].moves.record(CHANNEL).await.unwrap().unwrap();
    assert_eq!(a_record.phase, MovePhase::CleanedUp);
    assert!(members[a].moves.record(CHANNEL).await.unwrap().is_some());
    assert_eq!(members[a].moves.phase_rejections(), 0);

    b_channel.shutdown().await.unwrap();
    for i in [leader, other] {
        channels[i].shutdown().await.unwrap();
    }
}
