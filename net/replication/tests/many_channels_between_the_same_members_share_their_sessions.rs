//! A node's replicated channels share their sessions to a member: one for raft messages, one
//! for the data path, however many channels the two nodes share. Three members whose nRPC
//! endpoints admit only 3 sessions per peer identity run 8 channels together: every channel
//! elects a leader and commits a pin of a blob only its leader holds (so the followers
//! prefetch it over the data path and the leader's raft messages carry the entry), every
//! follower reads every blob back, and no member refused a session. With a session per
//! channel, the members' caps would refuse the raft sessions of all but the first channels.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::sync::atomic::Ordering;

use net_mesh_replication::ReplicatedChannel;
use support::*;

/// Sessions a member admits per peer identity in this test (raft and data lanes, and one
/// spare for a session being replaced).
const CAP: usize = 3;
const CHANNELS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_channels_between_the_same_members_share_their_sessions() {
    let root = tempfile::tempdir().unwrap();
    let mut rpc = net_mesh_node::node_config();
    rpc.max_sessions_per_identity = CAP;
    let members = three_members_with_rpc(root.path(), rpc).await;
    let all = addrs(&members);
    let mut groups: Vec<Vec<ReplicatedChannel>> = Vec::new();
    for c in 0..CHANNELS {
        let mut group = Vec::new();
        for m in &members {
            group.push(
                ReplicatedChannel::create(
                    &m.replication,
                    m.store.clone(),
                    &format!("ch{c}"),
                    &all,
                    m.endpoint.clone(),
                    &config(),
                )
                .await
                .unwrap(),
            );
        }
        groups.push(group);
    }
    let mut written = Vec::new();
    for (c, group) in groups.iter().enumerate() {
        let leader = wait_for_leader(&group.iter().collect::<Vec<_>>()).await;
        // Only the leader holds the blob: the followers must prefetch it to commit the pin.
        let bytes = distinct_bytes(200_000, c as u64);
        let r = members[leader].store.store(&bytes).unwrap().blob_ref;
        if let Err(e) = group[leader].propose_pin(&r, "b").await {
            panic!("channel ch{c}: pin refused: {e}");
        }
        written.push((leader, r, bytes));
    }
    for (c, (leader, r, bytes)) in written.iter().enumerate() {
        for (f, m) in members.iter().enumerate().filter(|(f, _)| f != leader) {
            let mut read = Vec::new();
            m.store.fetch(r, &mut read).unwrap();
            assert!(read == *bytes, "channel ch{c}, member {f}");
        }
    }
    for (i, m) in members.iter().enumerate() {
        let refused = m
            .endpoint
            .metrics()
            .sessions_refused_identity
            .load(Ordering::Relaxed);
        assert_eq!(
            refused, 0,
            "member {i} refused sessions over its per-identity cap"
        );
    }
    for group in groups {
        for c in group {
            c.shutdown().await.unwrap();
        }
    }
}
