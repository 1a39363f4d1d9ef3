//! `channel create NAME --replicas …` run again (real `net-mesh serve` processes, three nodes,
//! the channel on two of them): with the same members (in any order, through either member)
//! it changes nothing, exits 0 and prints the group's members, saying that the channel exists;
//! with another member list it is refused (exit 4) naming the group's real members, and
//! nothing is started on the node the list named (it does not run the channel afterwards).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::collections::BTreeSet;

use common::replicated::Cluster;

const CHANNEL: &str = "photos";

#[test]
fn replicated_channel_create_again_is_a_no_op_with_its_members_and_refused_with_others() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(tmp.path(), 3, &[], false);
    let addrs = cluster.addrs.clone();
    cluster.replicate(CHANNEL, &[0, 1]);
    let group = BTreeSet::from([addrs[0].clone(), addrs[1].clone()]);

    // The same members again, the other way round: a no-op that prints the group.
    let again = cluster.client.json(
        &addrs[1],
        &[
            "channel",
            "create",
            CHANNEL,
            "--replicas",
            &addrs[0],
            "--json",
        ],
    );
    assert_eq!(again["created"], false, "{again}");
    let listed: BTreeSet<String> = again["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            assert_eq!(m["started"], false, "{again}");
            m["member"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(listed, group, "{again}");
    let text = cluster.client.ok_text(
        &addrs[0],
        &["channel", "create", CHANNEL, "--replicas", &addrs[1]],
    );
    assert!(text.contains(&format!("{CHANNEL} exists")), "{text}");
    assert!(group.iter().all(|m| text.contains(m.as_str())), "{text}");

    // Another list: refused, naming the real members; the third node starts nothing.
    for (node, others) in [
        (&addrs[0], addrs[2].clone()),
        (&addrs[0], format!("{},{}", addrs[1], addrs[2])),
        (&addrs[2], addrs[0].clone()),
    ] {
        let refused = cluster
            .client
            .run(node, &["channel", "create", CHANNEL, "--replicas", &others]);
        assert_eq!(refused.status.code(), Some(4), "{refused:?}");
        let said = String::from_utf8_lossy(&refused.stderr);
        assert!(said.contains("with other members"), "{said}");
        assert!(group.iter().all(|m| said.contains(m.as_str())), "{said}");
        assert!(refused.stdout.is_empty(), "{refused:?}");
    }
    let status = cluster
        .client
        .run(&addrs[2], &["channel", "status", CHANNEL, "--json"]);
    assert_eq!(status.status.code(), Some(1), "{status:?}");
    assert!(
        String::from_utf8_lossy(&status.stderr).contains("not replicated on this node"),
        "{status:?}"
    );
    cluster.stop_and_fsck();
}
