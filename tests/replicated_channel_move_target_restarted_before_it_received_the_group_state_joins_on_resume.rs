//! A move's target stopped after it joined and before the leader sent it anything (real
//! `net-mesh serve` processes): `channel move` is killed right after it bound the source and
//! the target (failpoint `cli.channel_move.after_bind`), and the target is SIGKILLed. Started
//! again, the target holds only its move row (the move's id, the CLI's output lost, is read
//! from the source's `channel status`): its channel is not taken as a plain local one
//! (a put there is refused as busy, naming the move to resume), and the same move run again
//! (`--id`) binds it again, which joins it to the group, and finishes: exactly the target
//! membership, every acknowledged blob on the target, none on the source; fsck clean.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::collections::BTreeSet;

use common::node::{killed, signal};
use common::replicated::{Cluster, listen_of, phases_of};
use common::*;

const CHANNEL: &str = "photos";

#[test]
fn replicated_channel_move_target_restarted_before_it_received_the_group_state_joins_on_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(tmp.path(), 4, &[], false);
    let client = cluster.client.clone();
    let addrs = cluster.addrs.clone();
    let leader = cluster.replicate(CHANNEL, &[0, 1, 2]);
    let a = (0..3).find(|i| addrs[*i] != leader).unwrap();
    let (source, target) = (addrs[a].clone(), addrs[3].clone());
    let mut acked = BTreeSet::new();
    for i in 0..3u64 {
        let file = write_file(tmp.path(), &format!("f{i}"), &random_bytes(40_000, 700 + i));
        acked.insert(cluster.put(&leader, CHANNEL, &file));
    }

    // Both bound, the target joined; the CLI dies before it asks the coordinator.
    let args = [
        "channel", "move", CHANNEL, "--from", &source, "--to", &target,
    ];
    let cut = client
        .cmd(&leader)
        .args(args)
        .env("NET_MESH_FAILPOINT", "cli.channel_move.after_bind")
        .output()
        .unwrap();
    assert!(killed(cut.status), "the CLI was not killed: {cut:?}");
    // Its output lost, the operator finds the move on the source's `channel status`.
    let status = client.json(&source, &["channel", "status", CHANNEL, "--json"]);
    let bound = &status["move"];
    assert_eq!(bound["from"], source.as_str(), "{status}");
    assert_eq!(bound["to"], target.as_str(), "{status}");
    assert_eq!(bound["coordinator"], leader.split('@').next().unwrap());
    assert_eq!(bound["phase"], "bound");
    let id = bound["id"].as_u64().unwrap().to_string();
    let said = String::from_utf8_lossy(&cut.stdout).to_string();
    assert!(said.starts_with(&format!("move {id} of channel")), "{said}");

    // The target dies before anyone sent it the group's state, and starts again.
    let node = cluster.nodes[3].take().unwrap();
    signal(&node.child, "KILL");
    assert!(killed(node.wait()));
    cluster.nodes[3] = Some(cluster.serve(3, Some(listen_of(&target))));
    let late = write_file(tmp.path(), "late", b"not here");
    let refused = client.run(
        &target,
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
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    let why = String::from_utf8_lossy(&refused.stderr).to_string();
    assert!(why.contains(&format!("--id {id}")), "{why}");
    assert!(cluster.pinned(&target, CHANNEL).is_empty());

    // The same move, run again, joins the target again and finishes.
    let mut again = args.to_vec();
    again.extend(["--id", &id, "--json"]);
    let moved = client.json(&leader, &again);
    assert_eq!(
        phases_of(&moved),
        [
            "learner_added",
            "caught_up",
            "cut_over",
            "left",
            "cleaned_up"
        ],
        "{moved}"
    );
    let stays = (0..3).find(|i| *i != a && addrs[*i] != leader).unwrap();
    cluster.wait_for_members(CHANNEL, &[&leader, &addrs[stays], &target], &acked);
    assert!(cluster.pinned(&source, CHANNEL).is_empty());
    // The coordinator shows the move finished; a member no move bound shows none.
    let status = client.json(&leader, &["channel", "status", CHANNEL, "--json"]);
    assert_eq!(status["move"]["id"].as_u64().unwrap().to_string(), id);
    assert_eq!(status["move"]["phase"], "cleaned_up", "{status}");
    let status = client.json(&addrs[stays], &["channel", "status", CHANNEL, "--json"]);
    assert!(status["move"].is_null(), "{status}");
    cluster.stop_and_fsck();
}
