//! A blob whose bytes only the leader holds is pinned on a three-member channel. Before the
//! leader proposes the pin it asks the followers to prefetch the blob: `propose_pin` returns
//! only once at least two members (the leader and a follower) hold the bytes, durable. Then the
//! leader stops for good (it serves nothing after): the survivors elect a new leader, the
//! acknowledged pin is applied on both, and the blob reads back verified from each — the
//! bytes came from the prefetch, not from the leader after the fact.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use net_mesh_engine::Store;
use net_mesh_replication::{ReplicatedChannel, stored_applied};
use support::*;

/// Whether `store` holds every byte of the blob (read back verified).
fn holds(store: &Store, r: &net_mesh_engine::BlobRef, bytes: &[u8]) -> bool {
    let mut read = Vec::new();
    store.fetch(r, &mut read).is_ok() && read == bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_pin_whose_bytes_only_the_leader_had_survives_the_leader() {
    let root = tempfile::tempdir().unwrap();
    let members = three_members_with(root.path(), small_tree_config()).await;
    let mut channels: Vec<Option<ReplicatedChannel>> =
        create_all(&members).await.into_iter().map(Some).collect();
    let leader = wait_for_leader(&channels.iter().flatten().collect::<Vec<_>>()).await;
    let followers: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let old_term = channels[leader].as_ref().unwrap().status().term;

    // 1 MiB that repeats nowhere: a tree of several levels, only on the leader.
    let bytes = distinct_bytes(1 << 20, 2);
    let r = members[leader].store.store(&bytes).unwrap().blob_ref;
    for &f in &followers {
        assert!(
            !holds(&members[f].store, &r, &bytes),
            "follower {f} lacks it"
        );
    }

    let index = channels[leader]
        .as_ref()
        .unwrap()
        .propose_pin(&r, "only-on-leader")
        .await
        .unwrap();
    // Looked at once, as soon as the write is acknowledged.
    let holders: Vec<usize> = followers
        .iter()
        .copied()
        .filter(|&f| holds(&members[f].store, &r, &bytes))
        .collect();
    assert!(
        !holders.is_empty(),
        "acknowledged while only the leader held the bytes"
    );
    let prefetched: u64 = followers
        .iter()
        .map(|&f| channels[f].as_ref().unwrap().status().prefetched.objects)
        .sum();
    eprintln!(
        "figure: at the acknowledgement followers {holders:?} held the blob; {prefetched} object(s) prefetched"
    );
    assert!(prefetched > 0, "the followers' objects came by prefetch");

    // The leader stops for good: its disk is as good as gone.
    let mut members: Vec<Option<Member>> = members.into_iter().map(Some).collect();
    channels[leader].take().unwrap().shutdown().await.unwrap();
    members[leader].take().unwrap().stop().await;

    let live: Vec<&ReplicatedChannel> = followers
        .iter()
        .map(|&f| channels[f].as_ref().unwrap())
        .collect();
    wait_until("a new leader among the survivors", || {
        let statuses: Vec<_> = live.iter().map(|c| c.status()).collect();
        let leader = statuses
            .iter()
            .position(|s| s.is_leader && s.term > old_term)?;
        let addr = statuses[leader].leader.clone()?;
        statuses
            .iter()
            .all(|s| s.leader.as_ref() == Some(&addr))
            .then_some(())
    })
    .await;
    for &f in &followers {
        let store = members[f].as_ref().unwrap().store.clone();
        wait_until("the acknowledged pin applied on the survivor", || {
            (stored_applied(&store, CHANNEL).unwrap()?.1 >= index).then_some(())
        })
        .await;
        assert_eq!(pinned(&store), vec![ReplicatedChannel::blob_id(&r)]);
        assert!(
            holds(&store, &r, &bytes),
            "survivor {f} reads the blob back verified"
        );
    }
    for c in channels.into_iter().flatten() {
        c.shutdown().await.unwrap();
    }
}
