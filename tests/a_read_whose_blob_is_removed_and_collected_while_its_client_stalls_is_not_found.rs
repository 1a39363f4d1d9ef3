//! A client reads a blob through a node (`blob get --node`) and stops reading half-way (its
//! stdout is not drained), so the node's read waits mid-blob. Meanwhile the blob is removed
//! (`blob rm --node`) and `gc --node --grace 0s` deletes its objects and compacts their segment
//! away. When the client reads on, the read fails as not found (exit 1, "deleted while it was
//! read"), not as damage (exit 3): nothing in the store is damaged, the blob went away. What
//! the client wrote before is the blob's own bytes, and the node's store checks clean.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::io::Read;
use std::process::Stdio;

use common::node::*;
use common::*;

#[test]
fn a_read_whose_blob_is_removed_and_collected_while_its_client_stalls_is_not_found() {
    let tmp = tempfile::tempdir().unwrap();
    let node_dir = tmp.path().join("node");
    let client = Client::new(&tmp.path().join("client"), "operator");
    let allow = tmp.path().join("allow");
    write_allow(&allow, &[(&client.id, "admin")]);
    let node = ServedNode::start(
        &node_dir,
        Serve {
            allow: Some(&allow),
            ..Serve::default()
        },
    );
    // Far more than the client's call window, its socket and its stdout pipe hold: the node's
    // read is still running while the client does not read.
    let data = random_bytes(80_000_000, 41);
    let file = write_file(tmp.path(), "in.bin", &data);
    let blob_ref = client.ok_text(&node.addr, &["blob", "put", file.to_str().unwrap()]);

    let mut get = client
        .cmd(&node.addr)
        .args(["blob", "get", &blob_ref])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = get.stdout.take().unwrap();
    // The read is under way (the node has read the blob's first objects) once bytes arrive.
    let mut head = vec![0u8; 1 << 20];
    stdout.read_exact(&mut head).unwrap();

    client.ok(&node.addr, &["blob", "rm", &blob_ref]);
    let gc = client.json(&node.addr, &["gc", "--grace", "0s", "--json"]);
    assert!(gc["objects_freed"].as_u64().unwrap() > 0, "{gc}");
    assert!(gc["segments_removed"].as_u64().unwrap() >= 1, "{gc}");

    let mut rest = Vec::new();
    stdout.read_to_end(&mut rest).unwrap();
    let out = get.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{:?}: {stderr}", out.status);
    assert!(stderr.contains("deleted while it was read"), "{stderr}");
    head.extend_from_slice(&rest);
    assert!(
        head.len() < data.len(),
        "the whole blob was read before the gc"
    );
    assert!(
        head == data[..head.len()],
        "the client wrote other bytes than the blob's"
    );

    assert_eq!(node.stop().code(), Some(0));
    ok(&node_dir, &["fsck", "--read-data"]);
}
