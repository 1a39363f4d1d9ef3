//! A follower brings a pin's objects from the leader over the leader's `node/v1/objects`
//! streams, and a node lets one peer identity run at most `max_streams_per_peer` of those at
//! once (one more is refused as busy). Members whose nodes allow each peer 2 streams (and send
//! at most 64 MB/s, so a stream lasts while the others start), and whose channels run at most 2
//! object streams from one member, all channels together: four pins of 8 MB blobs only the
//! leader holds, proposed at once, are all acknowledged (each follower's third and fourth
//! prefetch waited for its turn), no fetch was refused, and both followers read every blob
//! back. (Without the turn, both followers' third and fourth fetches were refused busy by
//! the leader, and those pins failed `NotDurable`.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::sync::Arc;

use net_mesh_node::NodeConfig;
use net_mesh_rpc::Identity;
use support::*;

/// The streams a member's node allows one peer, and its channels' turns per member.
const SHARE: usize = 2;
/// Pins proposed at once: what a leader's channel prefetches at once.
const AT_ONCE: usize = net_mesh_replication::MAX_PREFETCHES_PER_CHANNEL;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pins_wait_for_the_leaders_stream_share_instead_of_failing() {
    let root = tempfile::tempdir().unwrap();
    let limits = Limits {
        node: NodeConfig {
            max_streams_per_peer: SHARE,
            bandwidth: Some(64_000_000),
            ..NodeConfig::default()
        },
        member_streams: SHARE,
    };
    let mut members = Vec::new();
    for i in 0..3u8 {
        let identity = Identity::from_seed([i + 1; 32]);
        let dir = root.path().join(format!("m{i}"));
        members.push(Member::start_with_limits(identity, dir, 0, limits.clone()).await);
    }
    let channels = Arc::new(create_all(&members).await);
    let leader = wait_for_leader(&channels.iter().collect::<Vec<_>>()).await;

    let mut blobs = Vec::new();
    let mut proposals = tokio::task::JoinSet::new();
    for i in 0..AT_ONCE {
        // Only the leader holds the blob: each pin needs a follower to fetch it.
        let bytes = distinct_bytes(8_000_000, i as u64);
        let r = members[leader].store.store(&bytes).unwrap().blob_ref;
        blobs.push((r.clone(), bytes));
        let channels = channels.clone();
        proposals
            .spawn(async move { (i, channels[leader].propose_pin(&r, &format!("p{i}")).await) });
    }
    while let Some(joined) = proposals.join_next().await {
        if let (i, Err(e)) = joined.unwrap() {
            panic!("pin {i} refused: {e}");
        }
    }
    for (f, m) in members.iter().enumerate().filter(|(f, _)| *f != leader) {
        wait_until("the follower applied every pin", || {
            (pinned(&m.store).len() == AT_ONCE).then_some(())
        })
        .await;
        for (r, bytes) in &blobs {
            let mut read = Vec::new();
            m.store.fetch(r, &mut read).unwrap();
            assert!(read == *bytes, "follower {f} reads the blob back verified");
        }
        let status = channels[f].status();
        assert_eq!(
            status.prefetched.source_failures, 0,
            "{:?}",
            status.prefetched
        );
        assert_eq!(status.fetched.source_failures, 0, "{:?}", status.fetched);
    }
    let channels = Arc::into_inner(channels).unwrap();
    for c in channels {
        c.shutdown().await.unwrap();
    }
    for m in members {
        m.stop().await;
    }
}
