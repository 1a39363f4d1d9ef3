//! A member away while a blob was pinned, unpinned and then collected by every other member's
//! GC applies the pin it missed without the objects (no member has them any more, and a
//! member that applied past the pin without holding it proves a later unpin) and goes on:
//! it reaches the committed index and ends with the same pins as the others.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::time::Duration;

use net_mesh_engine::GcOptions;
use net_mesh_replication::{ReplicatedChannel, stored_applied};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pin_unpinned_and_collected_everywhere_while_a_member_was_away_never_stops_it() {
    let root = tempfile::tempdir().unwrap();
    let members = three_members(root.path()).await;
    let mut channels: Vec<Option<ReplicatedChannel>> =
        create_all(&members).await.into_iter().map(Some).collect();
    let leader = wait_for_leader(&channels.iter().flatten().collect::<Vec<_>>()).await;
    let away = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    let mut members: Vec<Option<Member>> = members.into_iter().map(Some).collect();

    channels[away].take().unwrap().shutdown().await.unwrap();
    let (identity, dir, port) = members[away].take().unwrap().stop().await;

    // Stored on the leader only (its own local pin dropped): the other member gets it by
    // the prefetch, and the member away never sees it.
    let leader_store = members[leader].as_ref().unwrap().store.clone();
    let gone_bytes = distinct_bytes(200_000, 7);
    let gone = leader_store.store(&gone_bytes).unwrap().blob_ref;
    let gone_id = ReplicatedChannel::blob_id(&gone);
    leader_store.unpin(&gone_id).unwrap();
    let lead = channels[leader].as_ref().unwrap();
    lead.propose_pin(&gone, "gone").await.unwrap();
    lead.propose_unpin(&gone_id).await.unwrap();
    // A blob pinned after, which every member must end with.
    let kept_bytes = distinct_bytes(50_000, 8);
    let kept = leader_store.store(&kept_bytes).unwrap().blob_ref;
    leader_store
        .unpin(&ReplicatedChannel::blob_id(&kept))
        .unwrap();
    let last = lead.propose_pin(&kept, "kept").await.unwrap();

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
        assert!(
            store.fetch(&gone, &mut Vec::new()).is_err(),
            "the unpinned blob was collected"
        );
    }

    let back = Member::start(identity, dir, port).await;
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
    wait_until("the member away applied every entry", || {
        (stored_applied(&store, CHANNEL).unwrap()?.1 >= last).then_some(())
    })
    .await;
    let fetched = channel.status().fetched;
    assert_eq!(fetched.pins_skipped, 1, "{fetched:?}");
    assert!(fetched.rounds_failed >= 1, "{fetched:?}");
    assert_eq!(pin_set(&back.store), pin_set(&other_store));
    assert_eq!(pinned(&back.store), vec![ReplicatedChannel::blob_id(&kept)]);
    let mut read = Vec::new();
    back.store.fetch(&kept, &mut read).unwrap();
    assert!(read == kept_bytes, "the later pin's blob reads back");
    assert!(back.store.fetch(&gone, &mut Vec::new()).is_err());

    channel.shutdown().await.unwrap();
    for c in channels.into_iter().flatten() {
        c.shutdown().await.unwrap();
    }
}
