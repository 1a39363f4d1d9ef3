//! A replicated channel on three real `net-mesh serve` processes: a client writes through a
//! follower while the leader is SIGKILLed mid-write. The survivors elect a new leader, every
//! put that was acknowledged (exit 0) reads back byte for byte, verified, from both survivors;
//! an `rm` through the other member is forwarded and applied everywhere; the killed node,
//! restarted on its data dir and port, catches up to the same pins; after a clean stop every
//! store passes fsck.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::node::*;
use common::*;

const CHANNEL: &str = "photos";
/// Upper bound on every wait (a bound on the test, not a timed assertion).
const WAIT: Duration = Duration::from_secs(90);

/// Pins of the channel on a node: blob id → pin name.
fn pins(client: &Client, node: &str) -> BTreeMap<String, String> {
    let rows = client.json(node, &["blob", "--channel", CHANNEL, "ls", "--json"]);
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["blob_id"].as_str().unwrap().to_string(),
                r["name"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn leader_of(client: &Client, node: &str) -> Option<String> {
    let out = client.run(node, &["channel", "status", CHANNEL, "--json"]);
    if !out.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["leader"].as_str().map(str::to_string)
}

/// Reads every blob of `expected` (id → bytes) back from `node` and compares.
fn reads_back(client: &Client, node: &str, expected: &BTreeMap<String, Vec<u8>>, out: &Path) {
    for (id, data) in expected {
        let file = out.join(format!("{}.got", &id[..16]));
        client.ok(
            node,
            &[
                "blob",
                "--channel",
                CHANNEL,
                "get",
                id,
                "-o",
                file.to_str().unwrap(),
            ],
        );
        assert!(
            std::fs::read(&file).unwrap() == *data,
            "blob {id} read back from {node} differs"
        );
        std::fs::remove_file(&file).unwrap();
    }
}

#[test]
fn replicated_channel_keeps_every_acknowledged_blob_when_its_leader_is_killed() {
    let tmp = tempfile::tempdir().unwrap();
    let client = Client::new(&tmp.path().join("client"), "operator");
    let dirs: Vec<PathBuf> = (0..3).map(|i| tmp.path().join(format!("n{i}"))).collect();
    let ids: Vec<String> = dirs.iter().map(|d| node_identity(d)).collect();
    let allows: Vec<PathBuf> = (0..3)
        .map(|i| {
            let path = tmp.path().join(format!("allow{i}"));
            let mut peers: Vec<(&str, &str)> = ids
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, id)| (id.as_str(), "read"))
                .collect();
            peers.push((&client.id, "admin"));
            write_allow(&path, &peers);
            path
        })
        .collect();
    let start = |i: usize, listen: Option<String>| {
        ServedNode::start(
            &dirs[i],
            Serve {
                allow: Some(&allows[i]),
                listen,
                ..Serve::default()
            },
        )
    };
    let mut nodes: Vec<Option<ServedNode>> = (0..3).map(|i| Some(start(i, None))).collect();
    let addrs: Vec<String> = nodes
        .iter()
        .map(|n| n.as_ref().unwrap().addr.clone())
        .collect();

    let created = client.json(
        &addrs[0],
        &[
            "channel",
            "create",
            CHANNEL,
            "--replicas",
            &format!("{},{}", addrs[1], addrs[2]),
            "--json",
        ],
    );
    assert_eq!(created["replicated"], true);
    let leader = created["leader"].as_str().unwrap().to_string();
    let leader_at = addrs.iter().position(|a| *a == leader).unwrap();
    let writer_at = (leader_at + 1) % 3;
    let other_at = (leader_at + 2) % 3;
    println!("leader n{leader_at}; writing through n{writer_at}");

    // The writer: puts through a follower, one after another; what exits 0 is acknowledged.
    let acked: Arc<Mutex<BTreeMap<String, Vec<u8>>>> = Arc::default();
    let failed = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (client, acked, failed) = (client.clone(), acked.clone(), failed.clone());
        let node = addrs[writer_at].clone();
        let dir = tmp.path().join("in");
        std::fs::create_dir_all(&dir).unwrap();
        std::thread::spawn(move || {
            for i in 0..24u64 {
                // Small blobs and multi-chunk ones, so both inline refs and objects travel.
                let len = if i.is_multiple_of(3) {
                    1_500_000
                } else {
                    20_000 + i as usize
                };
                let data = random_bytes(len, 100 + i);
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
                if out.status.success() {
                    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                    let id = v["blob_id"].as_str().unwrap().to_string();
                    acked.lock().unwrap().insert(id, data);
                } else {
                    eprintln!(
                        "put {i} not acknowledged: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                    failed.fetch_add(1, Ordering::SeqCst);
                }
            }
        })
    };
    let deadline = Instant::now() + WAIT;
    while acked.lock().unwrap().len() < 4 {
        assert!(Instant::now() < deadline, "no put acknowledged");
        std::thread::sleep(Duration::from_millis(20));
    }
    let killed_at = Instant::now();
    let mut victim = nodes[leader_at].take().unwrap();
    victim.child.kill().unwrap();
    assert!(killed(victim.child.wait().unwrap()));
    let victim_port = victim.host_port().to_string();
    drop(victim);
    println!(
        "SIGKILLed the leader after {} acknowledged puts",
        acked.lock().unwrap().len()
    );

    // The survivors elect a new leader among themselves.
    let new_leader = loop {
        if let Some(l) = leader_of(&client, &addrs[writer_at])
            && l != leader
        {
            break l;
        }
        assert!(Instant::now() < deadline, "no new leader elected");
        std::thread::sleep(Duration::from_millis(50));
    };
    println!(
        "new leader {} seen {:?} after the kill",
        &new_leader[..8],
        killed_at.elapsed()
    );
    writer.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    println!(
        "{} puts acknowledged, {} not",
        acked.len(),
        failed.load(Ordering::SeqCst)
    );
    assert!(
        acked.len() >= 20,
        "too few puts acknowledged: {}",
        acked.len()
    );

    // An rm through the other survivor is forwarded to the leader and applied everywhere.
    let (removed, _) = acked.iter().next().unwrap();
    let removed = removed.clone();
    client.ok(
        &addrs[other_at],
        &["blob", "--channel", CHANNEL, "rm", &removed],
    );
    let mut kept = acked.clone();
    kept.remove(&removed);
    let out_dir = tmp.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    for at in [writer_at, other_at] {
        let deadline = Instant::now() + WAIT;
        while pins(&client, &addrs[at])
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            != kept.keys().cloned().collect::<Vec<_>>()
        {
            assert!(
                Instant::now() < deadline,
                "n{at} pins {:?}, expected {:?}",
                pins(&client, &addrs[at]).keys().collect::<Vec<_>>(),
                kept.keys().collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        reads_back(&client, &addrs[at], &kept, &out_dir);
    }

    // The killed node restarts on its port and catches up.
    nodes[leader_at] = Some(start(leader_at, Some(victim_port)));
    let deadline = Instant::now() + WAIT;
    while pins(&client, &addrs[leader_at])
        .keys()
        .cloned()
        .collect::<Vec<_>>()
        != kept.keys().cloned().collect::<Vec<_>>()
    {
        assert!(
            Instant::now() < deadline,
            "the restarted node did not catch up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    reads_back(&client, &addrs[leader_at], &kept, &out_dir);
    let status = client.json(&addrs[leader_at], &["channel", "status", CHANNEL, "--json"]);
    assert_eq!(status["leader"].as_str(), Some(new_leader.as_str()));
    assert!(status["term"].as_u64().unwrap() >= 2);

    // A clean stop, then every store is consistent.
    for node in nodes.iter_mut() {
        assert!(node.take().unwrap().stop().success());
    }
    for dir in &dirs {
        ok(dir, &["fsck"]);
    }
}
