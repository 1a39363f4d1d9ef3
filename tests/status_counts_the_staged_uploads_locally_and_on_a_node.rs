//! `status --json`'s `live_uploads` counts the resumable uploads staged in the store (what
//! `staging list` lists), locally and through `--node` alike: two uploads whose writers were
//! killed count 2 on both sides (the node counted only the put calls running, 0 here), and one
//! more left by a killed node client counts once it no longer runs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::path::Path;
use std::process::Stdio;

use common::node::*;
use common::*;
use serde_json::Value;

fn live_uploads(status: &[u8]) -> u64 {
    let v: Value = serde_json::from_slice(status).unwrap();
    v["live_uploads"].as_u64().unwrap()
}

/// A resumable put of `file` under `id` on the local data dir `dir`, killed after its third
/// checkpoint.
fn kill_local_upload(dir: &Path, id: &str, file: &Path) {
    let out = cmd(dir)
        .args(["blob", "put", "--resumable", "--staging-id", id])
        .args(["--checkpoint-interval", "256K"])
        .arg(file)
        .env("NET_MESH_FAILPOINT", "staging.checkpoint.after_commit:3")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(killed(out.status), "local writer {id}: {out:?}");
}

#[test]
fn status_counts_the_staged_uploads_locally_and_on_a_node() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let file = write_file(tmp.path(), "in.bin", &random_bytes(3_000_000, 81));
    kill_local_upload(&dir, "up-1", &file);
    kill_local_upload(&dir, "up-2", &file);
    let local = ok(&dir, &["status", "--json"]);
    assert_eq!(
        live_uploads(&local),
        2,
        "{}",
        String::from_utf8_lossy(&local)
    );

    let node = ServedNode::start(&dir, Serve::default());
    let client = Client::node_admin(&dir);
    let remote = client.ok(&node.addr, &["status", "--json"]);
    assert_eq!(
        live_uploads(&remote),
        2,
        "{}",
        String::from_utf8_lossy(&remote)
    );

    // A third upload, whose node client is killed: the node's worker checkpoints what it had
    // and ends with the call (its stream with it); the upload stays staged.
    let out = client
        .cmd(&node.addr)
        .args(["blob", "put", "--resumable", "--staging-id", "up-3"])
        .args(["--checkpoint-interval", "256K"])
        .arg(&file)
        .env("NET_MESH_FAILPOINT", "cli.node_put.after_piece:3")
        .output()
        .unwrap();
    assert!(killed(out.status), "node client: {out:?}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let remote = loop {
        let status = client.ok(&node.addr, &["status", "--json"]);
        let v: Value = serde_json::from_slice(&status).unwrap();
        if v["streams"].as_array().unwrap().is_empty() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the put never ended: {v}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let listed: Value =
        serde_json::from_slice(&client.ok(&node.addr, &["staging", "list", "--json"])).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 3, "{listed}");
    assert_eq!(
        live_uploads(&remote),
        3,
        "{}",
        String::from_utf8_lossy(&remote)
    );
    assert!(node.stop().success());
    let local = ok(&dir, &["status", "--json"]);
    assert_eq!(
        live_uploads(&local),
        3,
        "{}",
        String::from_utf8_lossy(&local)
    );
}
