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

use std::time::{Duration, Instant};

use common::replicated::{Cluster, listen_of};
use common::*;

const CHANNEL: &str = "photos";
const WAIT: Duration = Duration::from_secs(90);

#[test]
fn replicated_channel_move_whose_coordinator_and_target_are_gone_is_abandoned_through_the_new_leader()
 {
    let tmp = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(tmp.path(), 4, &[], false);
    let addrs = cluster.addrs.clone();
    let cut = cluster.cut_move(tmp.path(), CHANNEL, &[], 70);
    let (k, id, leader) = (cut.coordinator, cut.id, cut.leader);
    let (source, target, mut acked) = (cut.source, cut.target, cut.acked);
    // The target goes away too. The two members left are restarted without the failpoint
    // (one at a time: the group has a quorum again once each is back).
    assert!(cluster.nodes[3].take().unwrap().stop().success());
    for i in (0..3).filter(|i| *i != k) {
        cluster.restart_with(i, &[]);
    }
    let leader = cluster.leader_other_than(CHANNEL, &source, &leader);

    // The abandon goes to the new leader, which takes the move over.
    let detail = cluster.abandon(CHANNEL, &source, &source, &target, &id);
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
    let next = cluster.leader_other_than(CHANNEL, &addrs[up], &leader);
    cluster.nodes[l] = Some(cluster.serve(l, Some(listen_of(&addrs[l]))));

    // The target is back: the same abandon, through the next leader, tells it, and it removes
    // its copy.
    cluster.nodes[3] = Some(cluster.serve(3, Some(listen_of(&target))));
    let detail = cluster.abandon(CHANNEL, &next, &source, &target, &id);
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
