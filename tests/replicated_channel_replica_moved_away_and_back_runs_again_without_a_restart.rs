//! A replica moved away from a node and later back to it, the node never restarted (real
//! `net-mesh serve` processes): after the first move the old member refuses writes and a
//! `channel create` of the channel; the move back reports every phase, the node runs the
//! channel's group again (it joins, it is not left with the group it stopped), catches up on
//! the writes it missed, takes writes again, and every acknowledged blob reads back verified
//! from it. Before that, a target holding pins of a plain channel of the same name refuses
//! the move and nothing is bound, and that node, never a member, cannot be a move's source
//! (the CLI refuses a new move from a non-member; a move given by --id is refused by its target, a member already; its plain channel
//! keeps its pin). At the end, `channel move --abandon` of a move that no node holds is a
//! usage error that binds nothing: the nodes refuse to rebind it, and the leader refuses to
//! take it over, its source holding no such move.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::replicated::Cluster;
use common::*;

const CHANNEL: &str = "photos";
const WAIT: Duration = Duration::from_secs(90);
fn put(
    cluster: &Cluster,
    node: &str,
    dir: &std::path::Path,
    i: u64,
    acked: &mut BTreeMap<String, Vec<u8>>,
) {
    let data = random_bytes(40_000, 900 + i);
    let file = write_file(dir, &format!("f{i}"), &data);
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
    acked.insert(v["blob_id"].as_str().unwrap().to_string(), data);
}

#[test]
fn replicated_channel_replica_moved_away_and_back_runs_again_without_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(tmp.path(), 4, &[], false);
    let addrs = cluster.addrs.clone();
    let leader = cluster.replicate(CHANNEL, &[0, 1, 2]);
    let followers: Vec<String> = addrs[..3]
        .iter()
        .filter(|a| **a != leader)
        .cloned()
        .collect();
    let (node, other, spare) = (&followers[0], &followers[1], &addrs[3]);
    let dir = tmp.path().join("in");
    std::fs::create_dir_all(&dir).unwrap();
    let mut acked = BTreeMap::new();
    for i in 0..3 {
        put(&cluster, &leader, &dir, i, &mut acked);
    }

    // A target holding pins of the channel outside the group (a plain channel of the same
    // name) refuses to join it, and the refusal binds nothing: once the stray pin is gone,
    // a new move of the same source runs.
    cluster.client.ok(spare, &["channel", "create", CHANNEL]);
    let stray = write_file(tmp.path(), "stray.bin", b"pinned on the spare alone");
    let stray_id = cluster.client.json(
        spare,
        &[
            "blob",
            "--channel",
            CHANNEL,
            "put",
            "--json",
            stray.to_str().unwrap(),
        ],
    )["blob_id"]
        .as_str()
        .unwrap()
        .to_string();
    let refused = cluster.client.run(
        &leader,
        &[
            "channel", "move", CHANNEL, "--from", node, "--to", spare, "--json",
        ],
    );
    assert_eq!(refused.status.code(), Some(4), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("already holds 1 pin"),
        "{refused:?}"
    );
    assert_eq!(cluster.pinned(node, CHANNEL).len(), acked.len());
    // Nor can a node that never ran the group be a move's source: its plain channel of the
    // same name is not the group's, and its pins stay. The CLI refuses a new move from a
    // non-member before binding anything; a move given by --id (a resume, not checked there)
    // is refused by the nodes: here the target, bound first, which is a member already.
    let refused = cluster.client.run(
        &leader,
        &[
            "channel", "move", CHANNEL, "--from", spare, "--to", node, "--json",
        ],
    );
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("is not a member of channel"),
        "{refused:?}"
    );
    let refused = cluster.client.run(
        &leader,
        &[
            "channel", "move", CHANNEL, "--from", spare, "--to", node, "--id", "77", "--json",
        ],
    );
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("is already a member of"),
        "{refused:?}"
    );
    assert_eq!(
        cluster.pinned(spare, CHANNEL),
        BTreeSet::from([stray_id.clone()])
    );
    cluster
        .client
        .ok(spare, &["blob", "--channel", CHANNEL, "rm", &stray_id]);

    cluster.move_replica(CHANNEL, &leader, node, spare);
    assert!(cluster.pinned(node, CHANNEL).is_empty());
    let late = write_file(tmp.path(), "late.bin", b"late");
    let refused = cluster.client.run(
        node,
        &["blob", "--channel", CHANNEL, "put", late.to_str().unwrap()],
    );
    assert_eq!(refused.status.code(), Some(4), "{refused:?}");
    let recreate = cluster.client.run(
        node,
        &["channel", "create", CHANNEL, "--replicas", other.as_str()],
    );
    assert_eq!(recreate.status.code(), Some(4), "{recreate:?}");
    for i in 3..5 {
        put(&cluster, &leader, &dir, i, &mut acked);
    }

    // Back to the node it left; it takes writes again.
    cluster.move_replica(CHANNEL, &leader, spare, node);
    put(&cluster, node, &dir, 5, &mut acked);
    let ids: BTreeSet<String> = acked.keys().cloned().collect();
    let want: BTreeSet<String> = [leader.clone(), other.clone(), node.clone()].into();
    for member in [&leader, other, node] {
        let deadline = Instant::now() + WAIT;
        loop {
            let status = cluster
                .client
                .json(member, &["channel", "status", CHANNEL, "--json"]);
            let members: BTreeSet<String> = status["members"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["addr"].as_str().unwrap().to_string())
                .collect();
            if members == want && cluster.pinned(member, CHANNEL) == ids {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{member}: members {members:?}, {} of {} pins",
                cluster.pinned(member, CHANNEL).len(),
                ids.len()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    for (id, data) in &acked {
        let out = tmp.path().join("got");
        cluster.client.ok(
            node,
            &[
                "blob",
                "--channel",
                CHANNEL,
                "get",
                id,
                "-o",
                out.to_str().unwrap(),
            ],
        );
        assert!(std::fs::read(&out).unwrap() == *data, "{id} on {node}");
    }
    assert!(cluster.pinned(spare, CHANNEL).is_empty());

    // `--abandon` names the move by its id: a move no node holds is not taken over by the
    // leader (its source holds no such move) and nothing is rebound; without `--id` it is a
    // usage error.
    let refused = cluster.client.run(
        &leader,
        &[
            "channel",
            "move",
            CHANNEL,
            "--from",
            spare,
            "--to",
            node,
            "--id",
            "77",
            "--abandon",
        ],
    );
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("holds no move 77 bound to this node"),
        "{refused:?}"
    );
    assert!(said.contains("a rebind binds nothing new"), "{refused:?}");
    let refused = cluster.client.run(
        &leader,
        &[
            "channel",
            "move",
            CHANNEL,
            "--from",
            spare,
            "--to",
            node,
            "--abandon",
        ],
    );
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    cluster.stop_and_fsck();
}
