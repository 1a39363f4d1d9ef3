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

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::node::*;
use common::replicated::Cluster;
use common::*;

const CHANNEL: &str = "photos";
/// Upper bound on every wait (a bound on the test, not a timed assertion).
const WAIT: Duration = Duration::from_secs(90);

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
    let mut cluster = Cluster::start(tmp.path(), 3, &[], false);
    let client = cluster.client.clone();
    let addrs = cluster.addrs.clone();
    let leader = cluster.replicate(CHANNEL, &[0, 1, 2]);
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
    let mut victim = cluster.nodes[leader_at].take().unwrap();
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
        let want: BTreeSet<String> = kept.keys().cloned().collect();
        while cluster.pinned(&addrs[at], CHANNEL) != want {
            assert!(
                Instant::now() < deadline,
                "n{at} pins {:?}, expected {want:?}",
                cluster.pinned(&addrs[at], CHANNEL)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        reads_back(&client, &addrs[at], &kept, &out_dir);
    }

    // The killed node restarts on its port and catches up.
    cluster.nodes[leader_at] = Some(cluster.serve(leader_at, Some(victim_port)));
    let deadline = Instant::now() + WAIT;
    let want: BTreeSet<String> = kept.keys().cloned().collect();
    while cluster.pinned(&addrs[leader_at], CHANNEL) != want {
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
    cluster.stop_and_fsck();
}
