//! A node SIGKILLed in the middle of an upload (at a checkpoint, by an armed failpoint) and
//! restarted on the same data dir and port: the client, retrying by itself, reconnects, resumes
//! from the node's checkpoint instead of starting over, and prints the ref a local put of the
//! same file prints. The node's store is then clean.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::process::Stdio;

use common::node::*;
use common::*;

#[test]
fn node_put_resumes_after_the_node_is_killed_and_restarted() {
    let tmp = tempfile::tempdir().unwrap();
    let node_dir = tmp.path().join("node");
    let client = Client::new(&tmp.path().join("client"), "alice");
    let allow = tmp.path().join("allow");
    write_allow(&allow, &[(&client.id, "write")]);
    let data = random_bytes(8_000_000, 7);
    let file = write_file(tmp.path(), "in.bin", &data);
    let local_ref = ok_text(
        &tmp.path().join("local"),
        &[
            "blob",
            "put",
            "--chunking",
            "cdc:16K,64K,256K",
            file.to_str().unwrap(),
        ],
    );

    let node = ServedNode::start(
        &node_dir,
        Serve {
            allow: Some(&allow),
            env: vec![("NET_MESH_FAILPOINT", "staging.checkpoint.after_commit:6")],
            ..Serve::default()
        },
    );
    let port = node.host_port().to_string();
    let put = client
        .cmd(&node.addr)
        .args([
            "blob",
            "put",
            "--resumable",
            "--chunking",
            "cdc:16K,64K,256K",
            "--checkpoint-interval",
            "512K",
            "--retries",
            "30",
            file.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The node kills itself at its sixth checkpoint commit, in the middle of the upload.
    assert!(killed(node.wait()));
    let node = ServedNode::start(
        &node_dir,
        Serve {
            listen: Some(port),
            allow: Some(&allow),
            ..Serve::default()
        },
    );
    let out = put.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), local_ref);
    let resumed_at: u64 = stderr
        .lines()
        .find_map(|l| l.split(" at offset ").nth(1))
        .unwrap_or_else(|| panic!("the client never resumed: {stderr}"))
        .trim()
        .parse()
        .unwrap();
    assert!(
        resumed_at > 0 && resumed_at < data.len() as u64,
        "resumed at {resumed_at}"
    );

    assert!(client.ok(&node.addr, &["blob", "get", &local_ref]) == data);
    assert_eq!(
        client.ok_text(&node.addr, &["staging", "list", "--json"]),
        "[]"
    );
    assert!(node.stop().success());
    ok(&node_dir, &["fsck", "--read-data"]);
}
