//! A member is down while the leader pins blobs whose bytes it never had (stored only on the
//! leader, prefetched by the other follower), snapshots and purges its log past them.
//! Restarted, the member catches up by installing the leader's snapshot: before the install
//! commits, it fetches the objects of every pin it lacks (the snapshot's sender first,
//! verified, children first), so every blob reads back verified from its own store.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use net_mesh_replication::{ReplicatedChannel, stored_applied};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_catching_up_by_snapshot_fetches_the_objects_it_never_had() {
    let root = tempfile::tempdir().unwrap();
    let members = three_members_with(root.path(), small_tree_config()).await;
    let config = snapshotting(10, 2);
    let mut channels: Vec<Option<ReplicatedChannel>> = create_all_with(&members, &config)
        .await
        .into_iter()
        .map(Some)
        .collect();
    let leader = wait_for_leader(&channels.iter().flatten().collect::<Vec<_>>()).await;
    let target = (leader + 1) % 3;
    let mut members: Vec<Option<Member>> = members.into_iter().map(Some).collect();
    let before = stored_applied(&members[target].as_ref().unwrap().store, CHANNEL)
        .unwrap()
        .map_or(0, |a| a.1);
    channels[target].take().unwrap().shutdown().await.unwrap();
    let (identity, dir, port) = members[target].take().unwrap().stop().await;

    // Blobs only the leader stores: 24 small ones and one tree several levels deep.
    let leader_store = members[leader].as_ref().unwrap().store.clone();
    let mut blobs: Vec<Vec<u8>> = (0..24)
        .map(|i| format!("never on the target {i}").into_bytes())
        .collect();
    blobs.push(distinct_bytes(600 << 10, 1));
    let refs: Vec<_> = blobs
        .iter()
        .map(|b| leader_store.store(b).unwrap().blob_ref)
        .collect();
    let leader_channel = channels[leader].as_ref().unwrap();
    let mut last = 0;
    for (i, r) in refs.iter().enumerate() {
        last = leader_channel
            .propose_pin(r, &format!("away-{i}"))
            .await
            .unwrap();
    }
    let purged = wait_until("the leader purged its log past the target", || {
        leader_channel.status().purged.filter(|&p| p > before + 1)
    })
    .await;

    let back = Member::start_with_store(identity, dir, port, small_tree_config()).await;
    for r in &refs {
        let mut read = Vec::new();
        assert!(
            back.store.fetch(r, &mut read).is_err(),
            "the target lacks it"
        );
    }
    let channel = ReplicatedChannel::open(
        &back.replication,
        back.store.clone(),
        CHANNEL,
        back.endpoint.clone(),
        &config,
    )
    .await
    .unwrap();
    let store = back.store.clone();
    wait_until("the restarted member caught up", || {
        (stored_applied(&store, CHANNEL).unwrap()?.1 >= last).then_some(())
    })
    .await;
    let status = channel.status();
    assert!(
        status.snapshots_installed >= 1,
        "caught up without a snapshot: {status:?}"
    );
    let mut got = pinned(&store);
    got.sort();
    let mut want: Vec<[u8; 32]> = refs.iter().map(ReplicatedChannel::blob_id).collect();
    want.sort();
    assert_eq!(got, want);
    for (r, bytes) in refs.iter().zip(&blobs) {
        let mut read = Vec::new();
        store.fetch(r, &mut read).unwrap();
        assert_eq!(&read, bytes, "read back verified");
    }
    eprintln!(
        "figure: leader purged through {purged}; the target installed {} snapshot(s) and fetched {:?}",
        status.snapshots_installed, status.fetched
    );
    assert!(status.fetched.objects >= refs.len() as u64, "{status:?}");

    channel.shutdown().await.unwrap();
    for c in channels.into_iter().flatten() {
        c.shutdown().await.unwrap();
    }
}
