//! A node whose replica of a channel moved away, then restarted (real `net-mesh serve`
//! processes): its store no longer holds the channel's raft state, yet it does not take the
//! channel as a plain local one: a put into it is refused (exit 4, "moved away") and pins
//! nothing there, and `channel status` is refused. A move brings the replica back: the node
//! joins again and holds every pin.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::replicated::Cluster;
use common::*;

const CHANNEL: &str = "photos";
const WAIT: Duration = Duration::from_secs(90);

fn put(cluster: &Cluster, node: &str, file: &std::path::Path) -> String {
    let v = cluster.client.json(
        node,
        &[
            "blob",
            "--channel",
            CHANNEL,
            "put",
            "--json",
            file.to_str().unwrap(),
        ],
    );
    v["blob_id"].as_str().unwrap().to_string()
}

#[test]
fn replicated_channel_replica_moved_away_stays_refused_after_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(tmp.path(), 4, &[], false);
    let addrs = cluster.addrs.clone();
    let leader = cluster.replicate(CHANNEL, &[0, 1, 2]);
    let node_at = (0..3).find(|i| addrs[*i] != leader).unwrap();
    let (node, spare) = (&addrs[node_at], &addrs[3]);
    let mut acked = BTreeSet::new();
    for i in 0..3u64 {
        let file = write_file(tmp.path(), &format!("f{i}"), &random_bytes(30_000, 40 + i));
        acked.insert(put(&cluster, &leader, &file));
    }
    cluster.move_replica(CHANNEL, &leader, node, spare);

    let stopped = cluster.nodes[node_at].take().unwrap();
    let port = stopped.host_port().to_string();
    assert!(stopped.stop().success());
    cluster.nodes[node_at] = Some(cluster.serve(node_at, Some(port)));
    let late = write_file(tmp.path(), "late.bin", b"written to the old member");
    let refused = cluster.client.run(
        node,
        &["blob", "--channel", CHANNEL, "put", late.to_str().unwrap()],
    );
    assert_eq!(refused.status.code(), Some(4), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("moved away"),
        "{refused:?}"
    );
    assert!(cluster.pinned(node, CHANNEL).is_empty());
    let status = cluster
        .client
        .run(node, &["channel", "status", CHANNEL, "--json"]);
    assert_eq!(status.status.code(), Some(4), "{status:?}");

    cluster.move_replica(CHANNEL, &leader, spare, node);
    acked.insert(put(&cluster, node, &late));
    let deadline = Instant::now() + WAIT;
    while cluster.pinned(node, CHANNEL) != acked {
        assert!(
            Instant::now() < deadline,
            "{} of {} pins",
            cluster.pinned(node, CHANNEL).len(),
            acked.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    cluster.stop_and_fsck();
}
