//! A node whose replica of a channel moved away, then restarted (real `net-mesh serve`
//! processes): its store no longer holds the channel's raft state, yet it does not take the
//! channel as a plain local one: a put into it is refused (exit 4, "moved away") and pins
//! nothing there, and `channel status` is refused. A new move naming it the source is
//! refused (by the CLI: not a member; given by --id, by its target: a member already), the same move
//! run again finishes at once, and both leave that so (restarts). A move brings the replica
//! back: the node joins again and holds every pin.
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

fn restart(cluster: &mut Cluster, i: usize) {
    let stopped = cluster.nodes[i].take().unwrap();
    let port = stopped.host_port().to_string();
    assert!(stopped.stop().success());
    cluster.nodes[i] = Some(cluster.serve(i, Some(port)));
}

/// A put into the channel on `node` is refused as moved away, and pins nothing there.
fn refuses_writes(cluster: &Cluster, node: &str, file: &std::path::Path) {
    let refused = cluster.client.run(
        node,
        &["blob", "--channel", CHANNEL, "put", file.to_str().unwrap()],
    );
    assert_eq!(refused.status.code(), Some(4), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("moved away"),
        "{refused:?}"
    );
    assert!(cluster.pinned(node, CHANNEL).is_empty());
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
        acked.insert(cluster.put(&leader, CHANNEL, &file));
    }
    let id = cluster.move_replica(CHANNEL, &leader, node, spare);

    let late = write_file(tmp.path(), "late.bin", b"written to the old member");
    restart(&mut cluster, node_at);
    refuses_writes(&cluster, node, &late);
    let status = cluster
        .client
        .run(node, &["channel", "status", CHANNEL, "--json"]);
    assert_eq!(status.status.code(), Some(4), "{status:?}");

    // A move naming it the source again is refused (it has no replica), and does not undo
    // what marks the replica moved away: a second restart still refuses writes.
    let other = (0..3)
        .map(|i| &addrs[i])
        .find(|a| **a != leader && *a != node)
        .unwrap();
    let again = cluster.client.run(
        &leader,
        &[
            "channel", "move", CHANNEL, "--from", node, "--to", other, "--json",
        ],
    );
    assert_eq!(again.status.code(), Some(2), "{again:?}");
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("is not a member of channel"),
        "{again:?}"
    );
    // Given by --id (the CLI checks only new moves), the nodes refuse: here the target,
    // bound first, which is a member already; nothing is bound on the old member.
    let again = cluster.client.run(
        &leader,
        &[
            "channel", "move", CHANNEL, "--from", node, "--to", other, "--id", "77", "--json",
        ],
    );
    assert_eq!(again.status.code(), Some(2), "{again:?}");
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("is already a member of"),
        "{again:?}"
    );
    restart(&mut cluster, node_at);
    refuses_writes(&cluster, node, &late);

    // The same move run again by its id (a resume after the source cleaned up) still binds
    // the source and finishes at once; the replica stays marked moved away.
    let id = id.to_string();
    let resumed = cluster.client.json(
        &leader,
        &[
            "channel", "move", CHANNEL, "--from", node, "--to", spare, "--id", &id, "--json",
        ],
    );
    assert_eq!(resumed["id"].as_u64().unwrap().to_string(), id, "{resumed}");
    restart(&mut cluster, node_at);
    refuses_writes(&cluster, node, &late);

    cluster.move_replica(CHANNEL, &leader, spare, node);
    acked.insert(cluster.put(node, CHANNEL, &late));
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
