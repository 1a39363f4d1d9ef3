//! A replica move on real `net-mesh serve` processes while a client writes: a three-member
//! replicated channel moves its replica from a follower to a fourth node (`channel move`)
//! while the client keeps putting through the other follower. The move reports every phase
//! and ends with exactly the target membership; every acknowledged blob reads back verified
//! from the new member and the members that stayed; the old member holds none of the
//! channel's pins any more and refuses writes to it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::replicated::Cluster;
use common::*;

const CHANNEL: &str = "photos";
const WAIT: Duration = Duration::from_secs(90);

#[test]
fn replicated_channel_move_while_a_client_writes_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(tmp.path(), 4, &[], false);
    let client = cluster.client.clone();
    let addrs = cluster.addrs.clone();
    let leader = cluster.replicate(CHANNEL, &[0, 1, 2]);
    let followers: Vec<String> = addrs[..3]
        .iter()
        .filter(|a| **a != leader)
        .cloned()
        .collect();
    let (source, writer_node, target) = (&followers[0], &followers[1], &addrs[3]);

    let acked: Arc<Mutex<BTreeMap<String, Vec<u8>>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (client, acked, stop) = (client.clone(), acked.clone(), stop.clone());
        let node = writer_node.clone();
        let dir = tmp.path().join("in");
        std::fs::create_dir_all(&dir).unwrap();
        std::thread::spawn(move || {
            let mut i = 0u64;
            // Keeps writing until told to stop, and at least 12 puts.
            while i < 12 || !stop.load(Ordering::SeqCst) {
                let len = if i.is_multiple_of(4) { 600_000 } else { 30_000 };
                let data = random_bytes(len, 500 + i);
                let file = write_file(&dir, &format!("f{i}"), &data);
                let out = client.run(
                    &node,
                    &[
                        "blob",
                        "--channel",
                        CHANNEL,
                        "put",
                        "--json",
                        file.to_str().unwrap(),
                    ],
                );
                assert!(
                    out.status.success(),
                    "put {i} during the move failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                acked
                    .lock()
                    .unwrap()
                    .insert(v["blob_id"].as_str().unwrap().to_string(), data);
                i += 1;
            }
        })
    };
    let deadline = Instant::now() + WAIT;
    while acked.lock().unwrap().len() < 3 {
        assert!(Instant::now() < deadline, "no put acknowledged");
        std::thread::sleep(Duration::from_millis(20));
    }
    cluster.move_replica(CHANNEL, writer_node, source, target);
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    println!("{} puts acknowledged around the move", acked.len());
    let ids: BTreeSet<String> = acked.keys().cloned().collect();

    // Exactly the target membership, seen by every member.
    let want: BTreeSet<String> = [leader.clone(), writer_node.clone(), target.clone()].into();
    for member in [&leader, writer_node, target] {
        let deadline = Instant::now() + WAIT;
        loop {
            let status = client.json(member, &["channel", "status", CHANNEL, "--json"]);
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
                "{member}: members {members:?}, pins {:?}",
                cluster.pinned(member, CHANNEL).len()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        for (id, data) in &acked {
            let out = tmp.path().join("got");
            client.ok(
                member,
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
            assert!(std::fs::read(&out).unwrap() == *data, "{id} on {member}");
        }
    }
    // The old member handed its copy off: no pins, and writes there are refused.
    assert!(cluster.pinned(source, CHANNEL).is_empty());
    let file = write_file(tmp.path(), "late.bin", b"late");
    let refused = client.run(
        source,
        &["blob", "--channel", CHANNEL, "put", file.to_str().unwrap()],
    );
    assert_eq!(refused.status.code(), Some(4), "{refused:?}");
    cluster.stop_and_fsck();
}
