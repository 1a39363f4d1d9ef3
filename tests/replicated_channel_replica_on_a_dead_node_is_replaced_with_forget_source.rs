//! Replacing a dead member (real `net-mesh serve` processes): a follower of a three-member
//! channel is killed (SIGKILL), and its replica is moved to a fourth node. Without
//! `--forget-source` the move stops where it needs the dead source and says how to go on;
//! with it, another node answering at the source's address is refused (not taken as the
//! source gone); with the source's address silent (same `--id`), the move goes on without the source, reports
//! `source_forgotten` after `left`, and the channel writes on with exactly the target
//! membership, every acknowledged blob on the new member. Once the dead node is back, the
//! members refuse its raft messages: it reports its copy stale (`channel status`, field
//! `excluded`, metric `replication_excluded` 1) and refuses reads of the channel (exit 4)
//! instead of serving its old pins, and writes at once (exit 4). The
//! same move run again (no flag) tells it: it removes its copy (`cleaned_up`) and refuses
//! writes to the channel. fsck is clean on every store.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::node::{Serve, ServedNode, killed, scrape, signal};
use common::replicated::{Cluster, listen_of, phases_of, resume_id};
use common::*;

const CHANNEL: &str = "photos";

#[test]
fn replicated_channel_replica_on_a_dead_node_is_replaced_with_forget_source() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(tmp.path(), 4, &[], true);
    let client = cluster.client.clone();
    let addrs = cluster.addrs.clone();
    let leader = cluster.replicate(CHANNEL, &[0, 1, 2]);
    let dead = (0..3).find(|i| addrs[*i] != leader).unwrap();
    let stays = (0..3).find(|i| addrs[*i] != leader && *i != dead).unwrap();
    let (source, target) = (addrs[dead].clone(), addrs[3].clone());
    let mut acked = BTreeSet::new();
    for i in 0..3u64 {
        let file = write_file(tmp.path(), &format!("f{i}"), &random_bytes(50_000, 900 + i));
        acked.insert(cluster.put(&leader, CHANNEL, &file));
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    while cluster.pinned(&source, CHANNEL) != acked {
        assert!(
            Instant::now() < deadline,
            "the source never applied the pins"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // The source dies for good (as far as the operator knows).
    let node = cluster.nodes[dead].take().unwrap();
    signal(&node.child, "KILL");
    assert!(killed(node.wait()));

    // Without --forget-source: the move needs its source, and says how to go on.
    let args = [
        "channel", "move", CHANNEL, "--from", &source, "--to", &target, "--json",
    ];
    let refused = client.run(&leader, &args);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    let said = String::from_utf8_lossy(&refused.stderr).to_string();
    assert!(said.contains("--forget-source"), "{said}");
    let id = resume_id(&said);
    assert!(!id.is_empty(), "{said}");

    let mut forget = args.to_vec();
    forget.extend(["--id", &id, "--forget-source"]);

    // Another node answering at the source's address is not the source gone: refused.
    let impostor = ServedNode::start(
        &tmp.path().join("impostor"),
        Serve {
            listen: Some(listen_of(&source)),
            ..Serve::default()
        },
    );
    let refused = client.run(&leader, &forget);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    let said = String::from_utf8_lossy(&refused.stderr).to_string();
    assert!(
        said.contains("not the pinned") && !said.contains("does not answer"),
        "{said}"
    );
    impostor.stop();

    // With it: the move goes on without the source and forgets it once it left.
    let out = client.run(&leader, &forget);
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        stderr.contains("does not answer") && stderr.contains("--forget-source"),
        "{stderr}"
    );
    let moved: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        phases_of(&moved),
        [
            "learner_added",
            "caught_up",
            "cut_over",
            "left",
            "source_forgotten"
        ],
        "{moved}"
    );
    assert_eq!(moved["id"].as_u64().unwrap().to_string(), id);

    // The channel writes on with exactly the target membership.
    let file = write_file(tmp.path(), "after", &random_bytes(50_000, 990));
    acked.insert(cluster.put(&addrs[stays], CHANNEL, &file));
    cluster.wait_for_members(CHANNEL, &[&leader, &addrs[stays], &target], &acked);

    // The dead node comes back with its copy. Once it asks for votes, the members refuse it
    // as a non-member: it says its copy is stale and serves none of its old pins.
    cluster.nodes[dead] = Some(cluster.serve(dead, Some(listen_of(&source))));
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        let status = client.json(&source, &["channel", "status", CHANNEL, "--json"]);
        if !status["excluded"].is_null() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the forgotten source never saw that it was left out: {status}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let why = status["excluded"].as_str().unwrap();
    assert!(
        why.contains(&leader) && why.contains(&addrs[stays]),
        "{status}"
    );
    let gauge = "net_mesh_node_replication_excluded{channel=\"photos\"}";
    let scraped = scrape(cluster.nodes[dead].as_ref().unwrap());
    assert!(scraped.contains(&format!("{gauge} 1")), "{scraped}");
    let leader_node = cluster
        .nodes
        .iter()
        .flatten()
        .find(|n| n.addr == leader)
        .unwrap();
    let scraped = scrape(leader_node);
    assert!(scraped.contains(&format!("{gauge} 0")), "{scraped}");
    let text = client.run(&source, &["channel", "status", CHANNEL]);
    let text = String::from_utf8_lossy(&text.stdout).to_string();
    assert!(text.contains("copy is stale"), "{text}");
    let one = acked.first().unwrap().as_str();
    for read in [vec!["ls"], vec!["stat", one], vec!["get", one]] {
        let mut args = vec!["blob", "--channel", CHANNEL];
        args.extend(read);
        let refused = client.run(&source, &args);
        assert_eq!(refused.status.code(), Some(4), "{refused:?}");
        let said = String::from_utf8_lossy(&refused.stderr).to_string();
        assert!(said.contains("stale") && said.contains("--id"), "{said}");
    }
    // A write there is refused as stale (before, it waited 30 s for a leader, then failed busy).
    let late = write_file(tmp.path(), "late", b"late");
    let refused = client.run(
        &source,
        &[
            "blob",
            "--channel",
            CHANNEL,
            "put",
            "--retries",
            "0",
            late.to_str().unwrap(),
        ],
    );
    assert_eq!(refused.status.code(), Some(4), "{refused:?}");
    let said = String::from_utf8_lossy(&refused.stderr).to_string();
    assert!(said.contains("stale"), "{said}");
    // The same move, run again, tells it.
    let mut again = args.to_vec();
    again.extend(["--id", &id]);
    let moved = client.json(&leader, &again);
    assert_eq!(phases_of(&moved), ["cleaned_up"], "{moved}");
    assert!(cluster.pinned(&source, CHANNEL).is_empty());
    let refused = client.run(
        &source,
        &["blob", "--channel", CHANNEL, "put", late.to_str().unwrap()],
    );
    assert_eq!(refused.status.code(), Some(4), "{refused:?}");
    cluster.stop_and_fsck();
}
