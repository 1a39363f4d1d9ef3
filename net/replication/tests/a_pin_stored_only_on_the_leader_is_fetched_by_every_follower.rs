//! A blob stored only on the leader is pinned through `propose_pin` on a three-member
//! channel: each follower, applying the pin, fetches the objects it lacks from the leader
//! (authenticated sessions, `node/v1/objects`, verified, children first) and commits the pin
//! with `last_applied`; the blob then reads back verified from every follower's own store.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use net_mesh_engine::index::pin_roots;
use net_mesh_replication::{ReplicatedChannel, stored_applied};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pin_stored_only_on_the_leader_is_fetched_by_every_follower() {
    let root = tempfile::tempdir().unwrap();
    // Small chunks and fanouts: the large blob is a tree several levels deep.
    let members = three_members_with(root.path(), small_tree_config()).await;
    // The leader proposes without prefetching: the followers lack the objects when they apply.
    let channels = create_all_with(&members, &without_prefetch()).await;
    let leader = wait_for_leader(&channels.iter().collect::<Vec<_>>()).await;
    let followers: Vec<usize> = (0..3).filter(|&i| i != leader).collect();

    let small = b"a small blob only the leader holds".to_vec();
    // 3 MiB that repeats nowhere, so no chunk is another's.
    let large = distinct_bytes(3 << 20, 0);
    let mut refs = Vec::new();
    for bytes in [&small, &large] {
        refs.push(members[leader].store.store(bytes).unwrap().blob_ref);
    }
    assert!(
        matches!(refs[1], net_mesh_engine::BlobRef::Tree { depth, .. } if depth >= 3),
        "the large blob is a tree of depth 3 or more: {:?}",
        refs[1]
    );
    for &f in &followers {
        for r in &refs {
            for root in pin_roots(r) {
                assert!(!members[f].store.has(&root).unwrap(), "follower lacks it");
            }
        }
    }

    let mut last = 0;
    for (i, r) in refs.iter().enumerate() {
        last = channels[leader]
            .propose_pin(r, &format!("only-on-leader-{i}"))
            .await
            .unwrap();
    }
    for &f in &followers {
        let store = members[f].store.clone();
        wait_until("the pins applied on the follower", || {
            (stored_applied(&store, CHANNEL).unwrap()?.1 >= last).then_some(())
        })
        .await;
        let mut got = pinned(&store);
        got.sort();
        let mut want: Vec<[u8; 32]> = refs.iter().map(ReplicatedChannel::blob_id).collect();
        want.sort();
        assert_eq!(got, want, "follower {f} pins");
        for (r, bytes) in refs.iter().zip([&small, &large]) {
            let mut read = Vec::new();
            store.fetch(r, &mut read).unwrap();
            assert_eq!(&read, bytes, "follower {f} reads the blob back verified");
        }
        let fetched = channels[f].status().fetched;
        eprintln!("figure: follower {f} fetched {fetched:?}");
        // Every chunk (48 of 64 KiB, one small) and every tree node above them.
        assert!(fetched.objects > 49, "{fetched:?}");
        assert!(
            fetched.bytes >= (small.len() + large.len()) as u64,
            "{fetched:?}"
        );
        assert_eq!(fetched.source_failures, 0, "{fetched:?}");
    }
    assert_eq!(
        channels[leader].status().fetched.objects,
        0,
        "the leader fetched nothing"
    );
    for c in channels {
        c.shutdown().await.unwrap();
    }
}
