//! A member stopped while it installed the leader's snapshot (stored, its log purged, the
//! install not committed) stays away while one of the snapshot's blobs is unpinned and every
//! other member's GC collects it. Opened again, it finishes the install before its group
//! starts: no member can give that blob any more, and one that applied past the snapshot
//! does not pin it, so the install leaves it out and takes every other pin (fetched). The
//! group then starts and the member ends with the others' pins.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::time::Duration;

use net_mesh_engine::GcOptions;
use net_mesh_replication::state_machine::has_interrupted_install;
use net_mesh_replication::{ReplicatedChannel, stored_applied};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_install_whose_pin_was_unpinned_and_collected_everywhere_is_finished_without_it()
 {
    let root = tempfile::tempdir().unwrap();
    let members = three_members(root.path()).await;
    let config = snapshotting(10, 2);
    let mut channels: Vec<Option<ReplicatedChannel>> = create_all_with(&members, &config)
        .await
        .into_iter()
        .map(Some)
        .collect();
    let leader = wait_for_leader(&channels.iter().flatten().collect::<Vec<_>>()).await;
    let target = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    let mut members: Vec<Option<Member>> = members.into_iter().map(Some).collect();
    let before = stored_applied(&members[target].as_ref().unwrap().store, CHANNEL)
        .unwrap()
        .map_or(0, |a| a.1);
    channels[target].take().unwrap().shutdown().await.unwrap();
    let (identity, dir, port) = members[target].take().unwrap().stop().await;

    // Blobs only the leader stores (its local pins dropped), pinned past a purge.
    let leader_store = members[leader].as_ref().unwrap().store.clone();
    let blobs: Vec<Vec<u8>> = (0..12).map(|i| distinct_bytes(20_000, 100 + i)).collect();
    let refs: Vec<_> = blobs
        .iter()
        .map(|b| {
            let r = leader_store.store(b).unwrap().blob_ref;
            leader_store.unpin(&ReplicatedChannel::blob_id(&r)).unwrap();
            r
        })
        .collect();
    let leader_channel = channels[leader].as_ref().unwrap();
    for (i, r) in refs.iter().enumerate() {
        leader_channel
            .propose_pin(r, &format!("away-{i}"))
            .await
            .unwrap();
    }
    wait_until("the leader purged its log past the target", || {
        leader_channel.status().purged.filter(|&p| p > before + 1)
    })
    .await;

    // The target stores the leader's snapshot and stops before the install commits.
    interrupt_install(&leader_store, &dir).await;

    // Meanwhile one of the snapshot's blobs is unpinned and collected on both other members.
    let gone = &refs[0];
    leader_channel
        .propose_unpin(&ReplicatedChannel::blob_id(gone))
        .await
        .unwrap();
    let later = leader_store.store(&distinct_bytes(20_000, 99)).unwrap();
    leader_store.unpin(&later.blob_id).unwrap();
    let last = leader_channel
        .propose_pin(&later.blob_ref, "later")
        .await
        .unwrap();
    let other_store = members[other].as_ref().unwrap().store.clone();
    wait_until("the other member applied the last pin", || {
        (stored_applied(&other_store, CHANNEL).unwrap()?.1 >= last).then_some(())
    })
    .await;
    let no_grace = GcOptions {
        grace: Duration::ZERO,
        ..GcOptions::default()
    };
    for store in [&leader_store, &other_store] {
        store.gc(&no_grace).unwrap();
        assert!(store.fetch(gone, &mut Vec::new()).is_err(), "collected");
    }

    let back = Member::start(identity, dir, port).await;
    let channel = tokio::time::timeout(
        WAIT,
        ReplicatedChannel::open(
            &back.replication,
            back.store.clone(),
            CHANNEL,
            back.endpoint.clone(),
            &config,
        ),
    )
    .await
    .expect("the open finished the interrupted install")
    .unwrap();
    assert!(!has_interrupted_install(&back.store, CHANNEL).unwrap());
    let fetched = channel.status().fetched;
    assert_eq!(fetched.pins_skipped, 1, "{fetched:?}");
    let store = back.store.clone();
    wait_until("the target applied every entry", || {
        (stored_applied(&store, CHANNEL).unwrap()?.1 >= last).then_some(())
    })
    .await;
    assert_eq!(pin_set(&back.store), pin_set(&leader_store));
    assert!(!pinned(&back.store).contains(&ReplicatedChannel::blob_id(gone)));
    for (r, bytes) in refs.iter().zip(&blobs).skip(1) {
        let mut read = Vec::new();
        back.store.fetch(r, &mut read).unwrap();
        assert!(&read == bytes, "read back verified");
    }

    channel.shutdown().await.unwrap();
    for c in channels.into_iter().flatten() {
        c.shutdown().await.unwrap();
    }
}
