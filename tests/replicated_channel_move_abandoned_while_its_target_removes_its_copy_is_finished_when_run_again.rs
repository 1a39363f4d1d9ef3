//! An abandoned replica move whose target (a real `net-mesh serve` process) is killed while it
//! removes its copy, at each point of that removal: after its group stopped and before the
//! commit that drops its pins and marks the move abandoned (failpoint
//! `move.remove_copy.before_commit`), and after that commit, before it answers
//! (`move.remove_copy.after_commit`). The move is left before its cutover by killing its
//! coordinator right after `learner_added` (`move.coordinator.after_phase:1`); the abandon then
//! runs through the new leader. The target killed mid-removal is reported not told; restarted,
//! it runs with whatever the cut-off left, and the same abandon run again finishes: the target
//! holds no pin of the channel and refuses writes to it ("was abandoned"), the source keeps
//! every acknowledged pin, and every store is clean under fsck.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::node::*;
use common::replicated::{Cluster, listen_of};
use common::*;

const CHANNEL: &str = "photos";

/// Kills the target at failpoint `point` of its removal; the abandon run again must say of
/// the target `rerun_says`.
fn target_killed_in_its_removal_at(point: &str, rerun_says: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(tmp.path(), 4, &[], false);
    let addrs = cluster.addrs.clone();
    let cut = cluster.cut_move(tmp.path(), CHANNEL, &[("NET_MESH_FAILPOINT", point)], 80);
    let (k, id) = (cut.coordinator, cut.id);
    let (source, target, mut acked) = (cut.source, cut.target, cut.acked);
    for i in (0..3).filter(|i| *i != k) {
        cluster.restart_with(i, &[]);
    }
    cluster.nodes[k] = Some(cluster.serve(k, Some(listen_of(&addrs[k]))));
    let via = cluster.leader_other_than(CHANNEL, &source, "");

    // The abandon reaches the target, which dies in its removal: not told.
    let detail = cluster.abandon(CHANNEL, &via, &source, &target, &id);
    assert!(
        detail.contains("removed from the group"),
        "{point}: {detail}"
    );
    assert!(detail.contains("keeps its copy"), "{point}: {detail}");
    assert!(
        detail.contains("the target was not told"),
        "{point}: {detail}"
    );
    let armed = cluster.nodes[3].take().unwrap();
    assert!(killed(armed.wait()), "{point}: the target was not killed");

    // Back without the failpoint, it is told by the same abandon run again.
    cluster.nodes[3] = Some(cluster.serve(3, Some(listen_of(&target))));
    let detail = cluster.abandon(CHANNEL, &via, &source, &target, &id);
    assert!(detail.contains(rerun_says), "{point}: {detail}");
    assert!(cluster.pinned(&target, CHANNEL).is_empty(), "{point}");
    let late = write_file(tmp.path(), "late", b"written to the abandoned target");
    let refused = cluster.client.run(
        &target,
        &["blob", "--channel", CHANNEL, "put", late.to_str().unwrap()],
    );
    assert_eq!(refused.status.code(), Some(4), "{point}: {refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("was abandoned"),
        "{point}: {refused:?}"
    );
    // The source kept every acknowledged pin; the group takes writes.
    acked.insert(cluster.put(&via, CHANNEL, &late));
    assert_eq!(cluster.pinned(&source, CHANNEL), acked, "{point}");
    cluster.stop_and_fsck();
}

#[test]
fn replicated_channel_move_abandoned_while_its_target_removes_its_copy_before_the_commit_is_finished_when_run_again()
 {
    // The copy is still there: the run again removes it.
    target_killed_in_its_removal_at("move.remove_copy.before_commit", "removed its copy (");
}

#[test]
fn replicated_channel_move_abandoned_while_its_target_removes_its_copy_after_the_commit_is_finished_when_run_again()
 {
    // The copy is gone: the run again finds the move abandoned there already.
    target_killed_in_its_removal_at(
        "move.remove_copy.after_commit",
        "had already abandoned the move",
    );
}
