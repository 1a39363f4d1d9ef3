//! Node B pulls a blob from node A (`blob pull REF --from A`), slowly (B's `--bandwidth`).
//! Once B has fetched some of it, the blob is removed on A (`blob rm`) and `gc --grace 0s`
//! deletes its objects there. B's pull then lacks the rest: it fails as not found (exit 1, "the
//! source node … no longer has it"), as a pull begun after the removal would, not as damage
//! (exit 3): A's store checks clean. Nothing is pinned on B.
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

/// Bytes B's pull stream has moved, once it is live.
fn pulled_bytes(status: &serde_json::Value) -> Option<u64> {
    status["streams"]
        .as_array()?
        .iter()
        .find(|s| s["kind"] == "pull")
        .and_then(|s| s["bytes_in_class"].as_u64())
}

#[test]
fn a_pull_whose_source_removes_and_collects_the_blob_meanwhile_is_not_found() {
    let tmp = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (tmp.path().join("a"), tmp.path().join("b"));
    let client = Client::new(&tmp.path().join("client"), "c");
    let b_id = node_identity(&b_dir);
    let (allow_a, allow_b) = (tmp.path().join("allow-a"), tmp.path().join("allow-b"));
    write_allow(&allow_a, &[(&client.id, "admin"), (&b_id, "read")]);
    write_allow(&allow_b, &[(&client.id, "write")]);
    let a = ServedNode::start(
        &a_dir,
        Serve {
            allow: Some(&allow_a),
            ..Serve::default()
        },
    );
    // 24 MB at 1 MB/s: the pull is far from its end when A removes the blob.
    let b = ServedNode::start(
        &b_dir,
        Serve {
            allow: Some(&allow_b),
            args: vec!["--bandwidth", "1M"],
            ..Serve::default()
        },
    );
    let data = random_bytes(24_000_000, 29);
    let file = write_file(tmp.path(), "in.bin", &data);
    let blob_ref = client.ok_text(&a.addr, &["blob", "put", file.to_str().unwrap()]);

    let pull = client
        .cmd(&b.addr)
        .args(["blob", "pull", &blob_ref, "--from", &a.addr])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while pulled_bytes(&client.json(&b.addr, &["status", "--json"])).unwrap_or(0) == 0 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    client.ok(&a.addr, &["blob", "rm", &blob_ref]);
    let gc = client.json(&a.addr, &["gc", "--grace", "0s", "--json"]);
    assert!(gc["objects_freed"].as_u64().unwrap() > 0, "{gc}");

    let out = pull.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{:?}: {stderr}", out.status);
    assert!(stderr.contains("no longer has it"), "{stderr}");
    assert_eq!(client.ok_text(&b.addr, &["blob", "ls"]), "");
    assert_eq!(a.stop().code(), Some(0));
    assert_eq!(b.stop().code(), Some(0));
    ok(&a_dir, &["fsck", "--read-data"]);
}
