//! A replica move whose target is already a member of the channel (real `net-mesh serve`
//! processes: three nodes, a channel on two of them) is refused before anything is bound: the
//! CLI refuses a new move (usage, exit 2, "... is already a member of photos"), and the target
//! itself refuses to be bound when the CLI's check is skipped (a `--id` run, which the CLI
//! takes for the resume of a move). No node holds a move of the channel afterwards, so a valid
//! move of the refused target's replica to the third node binds and finishes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::collections::BTreeSet;

use common::replicated::Cluster;
use common::*;

const CHANNEL: &str = "photos";

/// Asserts that no move of the channel is bound on `node`.
fn no_move_bound(cluster: &Cluster, node: &str) {
    let status = cluster
        .client
        .json(node, &["channel", "status", CHANNEL, "--json"]);
    assert!(status["move"].is_null(), "{node}: {status}");
}

#[test]
fn replicated_channel_move_to_a_member_is_refused_before_anything_is_bound() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(tmp.path(), 3, &[], false);
    let addrs = cluster.addrs.clone();
    let leader = cluster.replicate(CHANNEL, &[0, 1]);
    // The source is the leader (it would coordinate), the target the other member.
    let member = addrs[..2].iter().find(|a| **a != leader).unwrap().clone();
    let file = write_file(tmp.path(), "f0", &random_bytes(40_000, 5));
    let acked = BTreeSet::from([cluster.put(&leader, CHANNEL, &file)]);

    let refused = cluster.client.run(
        &leader,
        &[
            "channel", "move", CHANNEL, "--from", &leader, "--to", &member,
        ],
    );
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains(&format!("{member} is already a member of {CHANNEL}")),
        "{said}"
    );
    // Refused by the CLI before any node was asked: no move to resume.
    assert!(!said.contains("resume move"), "{said}");
    for node in [&leader, &member] {
        no_move_bound(&cluster, node);
    }

    // Past the CLI's check (an --id is taken for a resume), the target refuses to be bound.
    let refused = cluster.client.run(
        &leader,
        &[
            "channel", "move", CHANNEL, "--from", &leader, "--to", &member, "--id", "4242",
        ],
    );
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("is already a member of"), "{said}");
    for node in [&leader, &member] {
        no_move_bound(&cluster, node);
    }

    // The member refused as a target is free: its replica moves to the third node.
    cluster.move_replica(CHANNEL, &leader, &member, &addrs[2]);
    cluster.wait_for_members(CHANNEL, &[&leader, &addrs[2]], &acked);
    cluster.stop_and_fsck();
}
