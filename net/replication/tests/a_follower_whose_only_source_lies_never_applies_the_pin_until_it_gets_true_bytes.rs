//! A blob held only by the leader, whose `node/v1/objects` serves corrupted bytes: both
//! followers reject every object, keep the entry unapplied (no pin, `last_applied` behind it,
//! none of the blob's objects stored) and retry round after round with a backoff, while the
//! leader's group goes on. Once the leader serves true bytes, they apply the pin and the blob
//! reads back verified from their stores.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::sync::atomic::Ordering;

use net_mesh_engine::index::pin_roots;
use net_mesh_replication::{ReplicatedChannel, stored_applied};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_whose_only_source_lies_never_applies_the_pin_until_it_gets_true_bytes() {
    let root = tempfile::tempdir().unwrap();
    let members = three_lying_members(root.path()).await;
    // The leader proposes without prefetching: the followers lack the objects when they apply.
    let channels = create_all_with(&members, &without_prefetch()).await;
    let leader = wait_for_leader(&channels.iter().collect::<Vec<_>>()).await;
    let followers: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let liar = members[leader].liar.clone().unwrap();
    liar.corrupt.store(true, Ordering::SeqCst);

    let bytes = b"only the leader has this, and it lies about it ".repeat(5_000);
    let r = members[leader].store.store(&bytes).unwrap().blob_ref;
    // Committed on a quorum (the followers hold the entry) and applied on the leader.
    let index = channels[leader]
        .propose_pin(&r, "lied-about")
        .await
        .unwrap();

    for &f in &followers {
        wait_until("the follower failed two whole rounds", || {
            (channels[f].status().fetched.rounds_failed >= 2).then_some(())
        })
        .await;
    }
    for &f in &followers {
        let store = &members[f].store;
        let applied = stored_applied(store, CHANNEL).unwrap().map_or(0, |a| a.1);
        assert!(applied < index, "follower {f} did not apply the entry");
        assert!(pinned(store).is_empty(), "follower {f} pinned nothing");
        for root in pin_roots(&r) {
            assert!(!store.has(&root).unwrap(), "no corrupted object stored");
        }
        let status = channels[f].status();
        assert!(status.applied < Some(index), "{status:?}");
        assert_eq!(status.fetched.objects, 0, "nothing verified: {status:?}");
    }
    // The group goes on meanwhile: an unpin of something else commits.
    let later = channels[leader].propose_unpin(&[7; 32]).await.unwrap();
    assert!(later > index);

    liar.corrupt.store(false, Ordering::SeqCst);
    for &f in &followers {
        let store = members[f].store.clone();
        wait_until("the pin applied once the leader serves true bytes", || {
            (stored_applied(&store, CHANNEL).unwrap()?.1 >= later).then_some(())
        })
        .await;
        assert_eq!(pinned(&store), vec![ReplicatedChannel::blob_id(&r)]);
        let mut read = Vec::new();
        store.fetch(&r, &mut read).unwrap();
        assert_eq!(read, bytes);
        eprintln!("figure: follower {f}: {:?}", channels[f].status().fetched);
    }
    for c in channels {
        c.shutdown().await.unwrap();
    }
}
