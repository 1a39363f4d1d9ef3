//! A member stopped and reopened from its own store (same dir) keeps what it had applied
//! (never an empty state) and catches up to the committed index.
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
async fn a_restarted_member_catches_up_from_its_own_store() {
    let root = tempfile::tempdir().unwrap();
    let members = three_members(root.path()).await;
    let mut refs = Vec::new();
    for i in 0..30u32 {
        let bytes = format!("restart blob {i}").into_bytes();
        let mut r = None;
        for m in &members {
            r = Some(m.store.store(&bytes).unwrap().blob_ref);
        }
        refs.push(r.unwrap());
    }
    let mut channels: Vec<Option<ReplicatedChannel>> =
        create_all(&members).await.into_iter().map(Some).collect();
    let leader = wait_for_leader(&channels.iter().flatten().collect::<Vec<_>>()).await;
    let mut first = 0;
    for r in &refs[..10] {
        first = channels[leader]
            .as_ref()
            .unwrap()
            .propose_pin(r, "first")
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

    // Stop the target: its group, its endpoint, its store handle.
    channels[target].take().unwrap().shutdown().await.unwrap();
    let (identity, dir, port) = members[target].take().unwrap().stop().await;

    // The other two commit more while it is away.
    let mut last = 0;
    for r in &refs[10..] {
        last = channels[leader]
            .as_ref()
            .unwrap()
            .propose_pin(r, "second")
            .await
            .unwrap();
    }

    // Reopened from the same dir: what it had is there before it hears from anyone.
    let back = Member::start(identity, dir, port).await;
    let applied = stored_applied(&back.store, CHANNEL).unwrap().unwrap();
    assert!(applied.1 >= first, "kept its applied state: {applied:?}");
    assert!(pinned(&back.store).len() >= 10, "kept its pins");
    let channel = ReplicatedChannel::open(
        &back.replication,
        back.store.clone(),
        CHANNEL,
        back.endpoint.clone(),
        &config(),
    )
    .await
    .unwrap();
    let store = back.store.clone();
    wait_until("the restarted member caught up", || {
        (stored_applied(&store, CHANNEL).unwrap()?.1 >= last).then_some(())
    })
    .await;
    let mut want: Vec<[u8; 32]> = refs.iter().map(ReplicatedChannel::blob_id).collect();
    want.sort();
    let mut got = pinned(&back.store);
    got.sort();
    assert_eq!(got, want);
    channel.shutdown().await.unwrap();
    for c in channels.into_iter().flatten() {
        c.shutdown().await.unwrap();
    }
}
