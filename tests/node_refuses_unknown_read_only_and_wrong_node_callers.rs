//! A node refuses, through the CLI, a caller its allow file does not name (exit 4), a
//! read-only caller that writes (exit 4), and a `--node` whose pinned node id is not the node
//! that answers (exit 1, before anything is sent); nothing is stored by any of them.
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
fn node_refuses_unknown_read_only_and_wrong_node_callers() {
    let tmp = tempfile::tempdir().unwrap();
    let node_dir = tmp.path().join("node");
    let writer = Client::new(&tmp.path().join("writer"), "w");
    let reader = Client::new(&tmp.path().join("reader"), "r");
    let stranger = Client::new(&tmp.path().join("stranger"), "s");
    let allow = tmp.path().join("allow");
    write_allow(&allow, &[(&writer.id, "write"), (&reader.id, "read")]);
    let file = write_file(tmp.path(), "in.bin", &random_bytes(300_000, 5));
    let file = file.to_str().unwrap();
    let node = ServedNode::start(
        &node_dir,
        Serve {
            allow: Some(&allow),
            ..Serve::default()
        },
    );

    // A stranger can neither read nor write.
    for args in [
        &["blob", "ls"][..],
        &["blob", "put", file],
        &["status"],
        &["staging", "list"],
    ] {
        let out = stranger.run(&node.addr, args);
        assert_eq!(out.status.code(), Some(4), "{args:?}: {out:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }

    // A reader reads but cannot write or remove.
    assert_eq!(reader.ok_text(&node.addr, &["blob", "ls", "--json"]), "[]");
    for args in [
        &["blob", "put", file][..],
        &["blob", "put", "--resumable", file],
        &["gc"],
    ] {
        let out = reader.run(&node.addr, args);
        assert_eq!(out.status.code(), Some(4), "{args:?}: {out:?}");
    }

    // A NODE_ADDR naming another node id at this node's address: refused before sending.
    let wrong = format!("{}@{}", reader.id, node.host_port());
    let out = writer.run(&wrong, &["blob", "put", file]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty());

    // Nothing of theirs was stored or staged; the writer itself is served.
    assert_eq!(writer.ok_text(&node.addr, &["blob", "ls", "--json"]), "[]");
    assert_eq!(
        writer.ok_text(&node.addr, &["staging", "list", "--json"]),
        "[]"
    );
    let blob_ref = writer.ok_text(&node.addr, &["blob", "put", file]);
    assert_eq!(
        ok_text(&tmp.path().join("local"), &["blob", "put", file]),
        blob_ref
    );
    assert!(node.stop().success());
    let listed: serde_json::Value =
        serde_json::from_slice(&ok(&node_dir, &["blob", "ls", "--json"])).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    ok(&node_dir, &["fsck", "--read-data"]);
}
