//! The leader goes away (its group shut down, its endpoint stopped); the two survivors elect
//! a new leader with a higher term, every pin the old leader acknowledged is on both, and new
//! proposals commit.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::time::Instant;

use net_mesh_replication::{ReplicatedChannel, stored_applied};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survivors_elect_a_new_leader_and_keep_every_acknowledged_pin() {
    let root = tempfile::tempdir().unwrap();
    let members = three_members(root.path()).await;
    let mut refs = Vec::new();
    for i in 0..6u32 {
        let bytes = format!("survivor blob {i}").into_bytes();
        let mut r = None;
        for m in &members {
            r = Some(m.store.store(&bytes).unwrap().blob_ref);
        }
        refs.push(r.unwrap());
    }
    let mut channels: Vec<Option<ReplicatedChannel>> =
        create_all(&members).await.into_iter().map(Some).collect();
    let all: Vec<&ReplicatedChannel> = channels.iter().flatten().collect();
    let old = wait_for_leader(&all).await;
    let old_term = all[old].status().term;

    let mut acknowledged = Vec::new();
    for r in &refs[..4] {
        all[old].propose_pin(r, "before").await.unwrap();
        acknowledged.push(ReplicatedChannel::blob_id(r));
    }

    // The leader goes away.
    let mut members: Vec<Option<Member>> = members.into_iter().map(Some).collect();
    channels[old].take().unwrap().shutdown().await.unwrap();
    let gone = members[old].take().unwrap();
    let started = Instant::now();
    gone.stop().await;

    let survivors: Vec<usize> = (0..3).filter(|i| *i != old).collect();
    let live: Vec<&ReplicatedChannel> = survivors
        .iter()
        .map(|i| channels[*i].as_ref().unwrap())
        .collect();
    let new = wait_until("a new leader among the survivors", || {
        let statuses: Vec<_> = live.iter().map(|c| c.status()).collect();
        let leader = statuses
            .iter()
            .position(|s| s.is_leader && s.term > old_term)?;
        let addr = statuses[leader].leader.clone()?;
        statuses
            .iter()
            .all(|s| s.leader.as_ref() == Some(&addr))
            .then_some(leader)
    })
    .await;
    eprintln!(
        "figure: new leader elected {:?} after the old one stopped",
        started.elapsed()
    );
    let status = live[new].status();
    assert!(status.term > old_term);
    assert_ne!(
        status.leader.as_ref().map(|a| a.node_id),
        Some(gone_id(&survivors, old, &members))
    );

    // New proposals commit on the two survivors (a quorum of three).
    let mut last = 0;
    for r in &refs[4..] {
        last = live[new].propose_pin(r, "after").await.unwrap();
        acknowledged.push(ReplicatedChannel::blob_id(r));
    }
    acknowledged.sort();
    for i in &survivors {
        let store = members[*i].as_ref().unwrap().store.clone();
        wait_until("every acknowledged pin on the survivor", || {
            (stored_applied(&store, CHANNEL).unwrap()?.1 >= last).then_some(())
        })
        .await;
        let mut got = pinned(&store);
        got.sort();
        assert_eq!(got, acknowledged, "survivor {i}");
    }
    for c in channels.into_iter().flatten() {
        c.shutdown().await.unwrap();
    }
}

/// The node id of the member that went away (it is no longer in `members`).
fn gone_id(survivors: &[usize], old: usize, members: &[Option<Member>]) -> net_mesh_rpc::NodeId {
    assert!(!survivors.contains(&old));
    assert!(members[old].is_none());
    net_mesh_rpc::Identity::from_seed([u8::try_from(old).unwrap() + 1; 32]).node_id()
}
