//! The leader's `node/v1/objects` serves corrupted bytes (the first byte of every object
//! flipped). A follower that lacks a pinned blob asks the leader first, finds the bytes do not
//! hash to their ids, stores none of them, and fetches the blob from the other follower, which
//! holds it: the pin is applied and the blob reads back verified from its store.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::sync::atomic::Ordering;

use net_mesh_replication::{ReplicatedChannel, stored_applied};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_given_corrupted_objects_fetches_them_from_another_member() {
    let root = tempfile::tempdir().unwrap();
    let members = three_lying_members(root.path()).await;
    // The leader proposes without prefetching: the followers lack the objects when they apply.
    let channels = create_all_with(&members, &without_prefetch()).await;
    let leader = wait_for_leader(&channels.iter().collect::<Vec<_>>()).await;
    let holder = (leader + 1) % 3;
    let lacking = (leader + 2) % 3;
    let liar = members[leader].liar.clone().unwrap();
    liar.corrupt.store(true, Ordering::SeqCst);

    let bytes: Vec<u8> =
        b"held by the leader and one follower; the leader lies about it ".repeat(20_000);
    let r = members[leader].store.store(&bytes).unwrap().blob_ref;
    members[holder].store.store(&bytes).unwrap();

    let index = channels[leader].propose_pin(&r, "guarded").await.unwrap();
    let store = members[lacking].store.clone();
    wait_until("the pin applied on the follower that lacked it", || {
        (stored_applied(&store, CHANNEL).unwrap()?.1 >= index).then_some(())
    })
    .await;
    assert_eq!(pinned(&store), vec![ReplicatedChannel::blob_id(&r)]);
    let mut read = Vec::new();
    store.fetch(&r, &mut read).unwrap();
    assert_eq!(read, bytes, "the blob reads back verified");

    let fetched = channels[lacking].status().fetched;
    eprintln!(
        "figure: {fetched:?}; the leader served {} corrupted object(s)",
        liar.served_corrupt.load(Ordering::SeqCst)
    );
    assert!(
        liar.served_corrupt.load(Ordering::SeqCst) >= 1,
        "the leader was asked first and lied"
    );
    assert!(fetched.source_failures >= 1, "{fetched:?}");
    assert_eq!(
        fetched.rounds_failed, 0,
        "the other follower answered in the same round"
    );
    // The holder needed nothing.
    assert_eq!(channels[holder].status().fetched.objects, 0);
    for c in channels {
        c.shutdown().await.unwrap();
    }
}
