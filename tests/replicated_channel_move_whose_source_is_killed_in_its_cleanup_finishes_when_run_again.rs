//! A replica move whose source (a real `net-mesh serve` process) is killed while it removes its
//! copy, at each point of that removal: after its group stopped and before the commit that
//! forgets the copy (failpoint `move.remove_copy.before_commit`), and after that commit, before
//! the group is unregistered and the coordinator answered (`move.remove_copy.after_commit`).
//! The move fails (the source is gone mid-call), never reports `cleaned_up`, and is resumable.
//! Restarted, the source runs with whatever the cut-off left, and the same move run again by its
//! id finishes: the source holds no pin of the channel and refuses writes to it ("moved away"),
//! the target holds every acknowledged pin, and every store is clean under fsck. The same when
//! the source's removal commit fails without a crash (error point
//! `error:move.remove_copy.commit`): the move fails naming it, the source keeps running with its
//! copy (nothing written), and the run again, on the same process, removes the copy.
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
use common::replicated::{Cluster, phases_of, resume_id};
use common::*;

const CHANNEL: &str = "photos";
const WAIT: Duration = Duration::from_secs(90);

/// Kills the source at failpoint `point` of its cleanup (an `error:` point: fails that step,
/// the source going on); the move run again must report its cleanup with a detail containing
/// `cleanup_says`.
fn source_killed_in_its_cleanup_at(point: &str, cleanup_says: &str) {
    let crash = !point.starts_with("error:");
    let tmp = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(tmp.path(), 4, &[], false);
    let addrs = cluster.addrs.clone();
    let leader = cluster.replicate(CHANNEL, &[0, 1, 2]);
    let source_at = (0..3).find(|i| addrs[*i] != leader).unwrap();
    let (source, target) = (addrs[source_at].clone(), addrs[3].clone());
    let mut acked = BTreeSet::new();
    for i in 0..3u64 {
        let file = write_file(tmp.path(), &format!("f{i}"), &random_bytes(40_000, 60 + i));
        acked.insert(cluster.put(&leader, CHANNEL, &file));
    }

    // The source, restarted with the failpoint armed.
    let stopped = cluster.nodes[source_at].take().unwrap();
    let port = stopped.host_port().to_string();
    assert!(stopped.stop().success());
    let armed = cluster.serve_with(
        source_at,
        Some(port.clone()),
        &[("NET_MESH_FAILPOINT", point)],
    );
    assert_eq!(armed.addr, source);
    // Written while the source was away and back: it holds them before the move starts.
    let file = write_file(tmp.path(), "f3", &random_bytes(40_000, 63));
    acked.insert(cluster.put(&leader, CHANNEL, &file));

    let cut = cluster.client.run(
        &leader,
        &[
            "channel", "move", CHANNEL, "--from", &source, "--to", &target, "--json",
        ],
    );
    assert!(
        !cut.status.success(),
        "{point}: the move must not finish: {}",
        String::from_utf8_lossy(&cut.stdout)
    );
    let said = String::from_utf8_lossy(&cut.stderr).to_string();
    assert!(!said.contains("cleaned_up"), "{point}: {said}");
    // The CLI names the move to resume, by its id.
    let id = resume_id(&said);
    if crash {
        let status = armed.wait();
        assert!(
            killed(status),
            "{point}: the source was not killed: {status:?}"
        );
        cluster.nodes[source_at] = Some(cluster.serve(source_at, Some(port)));
    } else {
        // The failed commit wrote nothing; the source runs on, its copy whole.
        assert!(
            said.contains("committing the removal failed"),
            "{point}: {said}"
        );
        assert_eq!(cluster.pinned(&source, CHANNEL), acked, "{point}");
        cluster.nodes[source_at] = Some(armed);
    }
    let resumed = cluster.client.json(
        &leader,
        &[
            "channel", "move", CHANNEL, "--from", &source, "--to", &target, "--id", &id, "--json",
        ],
    );
    // The run again reports only the cleanup, and how it found the source's copy.
    assert_eq!(phases_of(&resumed), ["cleaned_up"], "{point}: {resumed}");
    let detail = resumed["phases"][0]["detail"].as_str().unwrap();
    assert!(detail.contains(cleanup_says), "{point}: {resumed}");

    // The source kept nothing of the channel and refuses writes to it.
    assert!(cluster.pinned(&source, CHANNEL).is_empty(), "{point}");
    let late = write_file(tmp.path(), "late", b"written to the old member");
    let refused = cluster.client.run(
        &source,
        &["blob", "--channel", CHANNEL, "put", late.to_str().unwrap()],
    );
    assert_eq!(refused.status.code(), Some(4), "{point}: {refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("moved away"),
        "{point}: {refused:?}"
    );
    // The target holds every acknowledged pin, and takes new ones.
    acked.insert(cluster.put(&leader, CHANNEL, &late));
    let deadline = Instant::now() + WAIT;
    while cluster.pinned(&target, CHANNEL) != acked {
        assert!(
            Instant::now() < deadline,
            "{point}: {} of {} pins on the target",
            cluster.pinned(&target, CHANNEL).len(),
            acked.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    cluster.stop_and_fsck();
}

#[test]
fn replicated_channel_move_whose_source_is_killed_before_its_removal_commits_finishes_when_run_again()
 {
    // The copy is still there: the run again removes it (the 4 acknowledged pins).
    source_killed_in_its_cleanup_at(
        "move.remove_copy.before_commit",
        "removed its copy (4 pins)",
    );
}

#[test]
fn replicated_channel_move_whose_source_is_killed_after_its_removal_commits_finishes_when_run_again()
 {
    // The copy is gone: the run again finds it removed.
    source_killed_in_its_cleanup_at(
        "move.remove_copy.after_commit",
        "had already removed its copy",
    );
}

#[test]
fn replicated_channel_move_whose_source_fails_its_removal_commit_finishes_when_run_again() {
    // No crash: the same process, its copy whole, removes it when the move runs again.
    source_killed_in_its_cleanup_at("error:move.remove_copy.commit", "removed its copy (4 pins)");
}
