//! A client SIGKILLed in the middle of an upload to a node (after its twelfth piece, by an armed
//! failpoint) leaves the upload live on the node; `staging resume ID FILE --node` replays the
//! file from the node's checkpoint and finishes it with the ref a local put prints.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::node::*;
use common::*;

#[test]
fn node_upload_of_a_killed_client_finishes_with_staging_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let node_dir = tmp.path().join("node");
    let client = Client::new(&tmp.path().join("client"), "alice");
    let allow = tmp.path().join("allow");
    write_allow(&allow, &[(&client.id, "write")]);
    let data = random_bytes(16_000_000, 11);
    let file = write_file(tmp.path(), "in.bin", &data);
    let file = file.to_str().unwrap();
    let local_ref = ok_text(&tmp.path().join("local"), &["blob", "put", file]);
    let node = ServedNode::start(
        &node_dir,
        Serve {
            allow: Some(&allow),
            ..Serve::default()
        },
    );

    let out = client
        .cmd(&node.addr)
        .args([
            "blob",
            "put",
            "--resumable",
            "--staging-id",
            "up-1",
            "--checkpoint-interval",
            "256K",
            file,
        ])
        .env("NET_MESH_FAILPOINT", "cli.node_put.after_piece:12")
        .output()
        .unwrap();
    assert!(killed(out.status), "{:?}", out.status);
    assert!(out.stdout.is_empty());
    let rows = client.json(&node.addr, &["staging", "list", "--json"]);
    assert_eq!(rows[0]["staging_id"], "up-1", "{rows}");

    let done = client.json(&node.addr, &["staging", "resume", "up-1", file, "--json"]);
    assert_eq!(done["blob_ref"], local_ref.as_str(), "{done}");
    let from = done["resumed_from"].as_u64().unwrap();
    assert!(from > 0 && from < data.len() as u64, "{done}");
    assert_eq!(
        done["replayed_bytes"].as_u64(),
        Some(data.len() as u64 - from)
    );
    // It finished: resuming again prints the same ref, replaying nothing.
    let again = client.json(&node.addr, &["staging", "resume", "up-1", file, "--json"]);
    assert_eq!(again["blob_ref"], local_ref.as_str());
    assert_eq!(again["replayed_bytes"], 0);
    assert!(client.ok(&node.addr, &["blob", "get", &local_ref]) == data);
    assert!(node.stop().success());
    ok(&node_dir, &["fsck", "--read-data"]);
}
