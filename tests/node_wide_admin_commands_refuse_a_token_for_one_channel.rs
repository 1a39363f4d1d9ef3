//! Through the CLI, an admin token for one channel (`token mint --scope read,write,admin
//! --channel default`) grants admin on that channel's pins only: the commands that act on the
//! whole node — `gc`, `token revoke`, `channel create` — are refused (exit 4, `wrong_channel`)
//! and change nothing (no channel made, no revocation floor raised: the same token still
//! works); so is `channel status NAME`, which shows the channel its request names (exit 4
//! before the node looks: not "not replicated"). An admin token for every channel (`--channel
//! '*'`) runs them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::path::Path;

use common::node::*;
use common::*;

/// An admin token on `channel` from the node's own identity (of `node_dir`) for `subject`.
fn admin_token(node_dir: &Path, subject: &str, channel: &str) -> String {
    ok_text(
        node_dir,
        &[
            "token",
            "mint",
            "--subject",
            subject,
            "--scope",
            "read,write,admin",
            "--channel",
            channel,
            "--ttl",
            "1h",
        ],
    )
}

fn refused_for_one_channel(out: &std::process::Output, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{what}: {out:?}");
    assert!(
        stderr.contains("wrong_channel") && stderr.contains("whole node"),
        "{what}: {stderr}"
    );
}

#[test]
fn node_wide_admin_commands_refuse_a_token_for_one_channel() {
    let tmp = tempfile::tempdir().unwrap();
    let node_dir = tmp.path().join("node");
    let node_id = node_identity(&node_dir);
    let node = ServedNode::start(&node_dir, Serve::default());
    let addr = node.addr.clone();
    let owner = Client::node_admin(&node_dir);
    let peer = Client::new(&tmp.path().join("peer"), "p");
    let one = admin_token(&node_dir, &peer.public_key(), "default");
    let file = write_file(tmp.path(), "in.bin", &random_bytes(100_000, 5));
    let file = file.to_str().unwrap();

    // The token works on its channel's pins.
    let blob_ref = peer.ok_text(&addr, &["--token", &one, "blob", "put", file]);

    // Node-wide: refused, and nothing changed.
    let gc = peer.run(&addr, &["--token", &one, "gc"]);
    refused_for_one_channel(&gc, "gc");
    let revoke = peer.run(
        &addr,
        &[
            "--token",
            &one,
            "token",
            "revoke",
            "--issuer",
            &node_id,
            "--below-generation",
            "7",
        ],
    );
    refused_for_one_channel(&revoke, "token revoke");
    let create = peer.run(&addr, &["--token", &one, "channel", "create", "sneaky"]);
    refused_for_one_channel(&create, "channel create");
    let channels = owner.json(&addr, &["channel", "ls", "--json"]);
    assert!(
        !channels.to_string().contains("sneaky"),
        "a refused channel create made it: {channels}"
    );
    let status = peer.run(&addr, &["--token", &one, "channel", "status", "default"]);
    refused_for_one_channel(&status, "channel status");
    // No floor was raised: the generation-0 token still works.
    let listed = peer.ok_text(&addr, &["--token", &one, "blob", "ls", "--json"]);
    assert!(listed.contains(&blob_ref), "{listed}");

    // A token for every channel runs them.
    let every = admin_token(&node_dir, &peer.public_key(), "*");
    peer.ok(&addr, &["--token", &every, "gc", "--dry-run"]);
    let status = peer.run(&addr, &["--token", &every, "channel", "status", "default"]);
    let stderr = String::from_utf8_lossy(&status.stderr);
    assert_eq!(status.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("not replicated"), "{stderr}");
    assert_eq!(
        peer.ok_text(&addr, &["--token", &every, "channel", "create", "photos"]),
        "created channel photos"
    );
    let floor = peer.json(
        &addr,
        &[
            "--token",
            &every,
            "token",
            "revoke",
            "--issuer",
            &peer.id,
            "--below-generation",
            "1",
            "--json",
        ],
    );
    assert_eq!(floor["below_generation"], 1, "{floor}");

    assert!(node.stop().success());
}
