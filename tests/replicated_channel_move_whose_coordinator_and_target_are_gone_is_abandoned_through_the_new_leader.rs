//! H-2, never stuck, with real `net-mesh serve` processes: a replica move whose coordinator
//! (the leader) died right after the target joined as a learner (failpoint
//! `move.coordinator.after_phase:1`, after `learner_added` was committed), and whose target
//! then went away too, is abandoned through the group's new leader: `channel move --id N
//! --abandon` hands the move to it (the source bound to it; the target, unreachable, not), and
//! it removes the learner, frees the source (which keeps every pin) and reports the target
//! not told. Writes go on meanwhile. Then the old coordinator comes back and the leader that
//! abandoned the move stops, so another member leads; the target, back, is told by the same
//! command run again, through that next leader (the abandoned move handed over to it): it
//! removes its copy and refuses the channel, saying that the move was abandoned. A new move
//! between the same two nodes then finishes, and every store is clean under fsck.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::node::*;
use common::replicated::Cluster;
use common::*;

const CHANNEL: &str = "photos";
const WAIT: Duration = Duration::from_secs(90);

fn restart_with(cluster: &mut Cluster, i: usize, env: &[(&str, &str)]) {
    let stopped = cluster.nodes[i].take().unwrap();
    let port = stopped.host_port().to_string();
    assert!(stopped.stop().success());
    cluster.nodes[i] = Some(cluster.serve_with(i, Some(port), env));
}

/// The `HOST:PORT` of a `NODE_ADDR`.
fn listen_of(node_addr: &str) -> String {
    node_addr.split_once('@').unwrap().1.to_string()
}

/// The channel's leader as `node` sees it, once it is not `old`.
fn new_leader(cluster: &Cluster, node: &str, old: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let out = cluster
            .client
            .run(node, &["channel", "status", CHANNEL, "--json"]);
        if out.status.success() {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            if let Some(leader) = v["leader"].as_str()
                && leader != old
            {
                return leader.to_string();
            }
        }
        assert!(Instant::now() < deadline, "no new leader: {out:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `channel move --id ID --abandon --json` through `via`; returns the abandon's detail.
fn abandon(cluster: &Cluster, via: &str, from: &str, to: &str, id: &str) -> String {
    let out = cluster.client.json(
        via,
        &[
            "channel",
            "move",
            CHANNEL,
            "--from",
            from,
            "--to",
            to,
            "--id",
            id,
            "--abandon",
            "--json",
        ],
    );
    let phases = out["phases"].as_array().unwrap();
    assert_eq!(phases.len(), 1, "{out}");
    assert_eq!(phases[0]["phase"], "abandoned", "{out}");
    phases[0]["detail"].as_str().unwrap().to_string()
}

#[test]
fn replicated_channel_move_whose_coordinator_and_target_are_gone_is_abandoned_through_the_new_leader()
 {
    let tmp = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(tmp.path(), 4, &[], false);
    let addrs = cluster.addrs.clone();
    // Whichever member leads will coordinate the move and die after its first phase.
    for i in 0..3 {
        restart_with(
            &mut cluster,
            i,
            &[("NET_MESH_FAILPOINT", "move.coordinator.after_phase:1")],
        );
    }
    let leader = cluster.replicate(CHANNEL, &[0, 1, 2]);
    let k = (0..3).find(|i| addrs[*i] == leader).unwrap();
    let a = (0..3).find(|i| *i != k).unwrap();
    let (source, target) = (addrs[a].clone(), addrs[3].clone());
    let mut acked = BTreeSet::new();
    for i in 0..3u64 {
        let file = write_file(tmp.path(), &format!("f{i}"), &random_bytes(40_000, 70 + i));
        acked.insert(cluster.put(&leader, CHANNEL, &file));
    }

    let cut = cluster.client.run(
        &leader,
        &[
            "channel", "move", CHANNEL, "--from", &source, "--to", &target, "--json",
        ],
    );
    assert!(!cut.status.success(), "the move must not finish: {cut:?}");
    let coordinator = cluster.nodes[k].take().unwrap();
    let status = coordinator.wait();
    assert!(killed(status), "the coordinator was not killed: {status:?}");
    let said = String::from_utf8_lossy(&cut.stderr).to_string();
    let id = said
        .split_once("--id ")
        .map(|(_, rest)| {
            rest.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| panic!("no move id to resume in: {said}"));
    // The target goes away too. The two members left are restarted without the failpoint
    // (one at a time: the group has a quorum again once each is back).
    assert!(cluster.nodes[3].take().unwrap().stop().success());
    for i in (0..3).filter(|i| *i != k) {
        restart_with(&mut cluster, i, &[]);
    }
    let leader = new_leader(&cluster, &source, &leader);

    // The abandon goes to the new leader, which takes the move over.
    let detail = abandon(&cluster, &source, &source, &target, &id);
    assert!(detail.contains("removed from the group"), "{detail}");
    assert!(detail.contains("keeps its copy"), "{detail}");
    assert!(detail.contains("the target was not told"), "{detail}");
    let status = cluster
        .client
        .json(&source, &["channel", "status", CHANNEL, "--json"]);
    let members = status["members"].as_array().unwrap();
    assert!(
        members
            .iter()
            .all(|m| m["addr"].as_str().unwrap() != target),
        "{status}"
    );
    // The group takes writes without the coordinator, and the source kept every pin.
    let file = write_file(tmp.path(), "f3", &random_bytes(40_000, 73));
    acked.insert(cluster.put(&leader, CHANNEL, &file));
    assert_eq!(cluster.pinned(&source, CHANNEL), acked);

    // Leadership moves on before the target is back: the old coordinator returns (its row of
    // the move still at `learner_added`), and the leader that abandoned the move stops.
    cluster.nodes[k] = Some(cluster.serve(k, Some(listen_of(&addrs[k]))));
    let l = (0..3).find(|i| addrs[*i] == leader).unwrap();
    let up = (0..3).find(|i| *i != l).unwrap();
    assert!(cluster.nodes[l].take().unwrap().stop().success());
    let next = new_leader(&cluster, &addrs[up], &leader);
    cluster.nodes[l] = Some(cluster.serve(l, Some(listen_of(&addrs[l]))));

    // The target is back: the same abandon, through the next leader, tells it, and it removes
    // its copy.
    cluster.nodes[3] = Some(cluster.serve(3, Some(listen_of(&target))));
    let detail = abandon(&cluster, &next, &source, &target, &id);
    assert!(detail.contains("removed its copy"), "{detail}");
    let late = write_file(tmp.path(), "late", b"written to the abandoned target");
    let refused = cluster.client.run(
        &target,
        &["blob", "--channel", CHANNEL, "put", late.to_str().unwrap()],
    );
    assert_eq!(refused.status.code(), Some(4), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("was abandoned"),
        "{refused:?}"
    );
    assert!(cluster.pinned(&target, CHANNEL).is_empty());

    // Both nodes are free: a new move between them finishes (the old coordinator's row of the
    // move it began gave way, or was abandoned if it led).
    cluster.move_replica(CHANNEL, &source, &source, &target);
    let deadline = Instant::now() + WAIT;
    while cluster.pinned(&target, CHANNEL) != acked {
        assert!(Instant::now() < deadline, "the target lacks pins");
        std::thread::sleep(Duration::from_millis(50));
    }
    cluster.stop_and_fsck();
}
