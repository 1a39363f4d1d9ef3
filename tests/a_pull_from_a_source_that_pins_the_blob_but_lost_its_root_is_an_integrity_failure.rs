//! `blob pull REF --from A` when A pins the blob but has lost its root object (index or segment
//! damage) fails as an integrity error (exit 3) naming A and saying the blob is pinned there
//! but its root object is missing, not as "A does not have it" (not found): A's object stream
//! only says the object is missing, so the pulling node asks A's `stat` of the ref, which
//! says whether a channel pins it. Nothing is pinned on the pulling node.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::damage::drop_object;
use common::node::*;
use common::*;
use net_mesh_engine::BlobRef;
use net_mesh_engine::error::hex;

#[test]
fn a_pull_from_a_source_that_pins_the_blob_but_lost_its_root_is_an_integrity_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let a_dir = tmp.path().join("a");
    let b_dir = tmp.path().join("b");

    // On A: a Small blob pinned in `default`, its one chunk removed by the operator override;
    // a Tree blob pinned in channel `photos` only, its root node's index entry lost.
    let small_file = write_file(tmp.path(), "small.bin", &random_bytes(20_000, 7));
    let small = ok_text(&a_dir, &["blob", "put", small_file.to_str().unwrap()]);
    let BlobRef::Small { hash, .. } = BlobRef::from_text(&small).unwrap() else {
        panic!("{small} is not a Small ref");
    };
    ok(&a_dir, &["chunk", "rm", &hex(&hash), "--force"]);
    ok(&a_dir, &["channel", "create", "photos"]);
    let tree_file = write_file(tmp.path(), "tree.bin", &random_bytes(300_000, 8));
    let tree = ok_text(
        &a_dir,
        &[
            "blob",
            "--channel",
            "photos",
            "put",
            tree_file.to_str().unwrap(),
            "--chunking",
            "fixed:4K",
            "--leaf-fanout",
            "4",
            "--internal-fanout",
            "4",
        ],
    );
    let BlobRef::Tree { root_hash, .. } = BlobRef::from_text(&tree).unwrap() else {
        panic!("{tree} is not a Tree ref");
    };
    drop_object(&a_dir, &root_hash);

    // A serves B (read); B serves the client (write).
    let client = Client::new(&tmp.path().join("client"), "c");
    let b_id = node_identity(&b_dir);
    let (allow_a, allow_b) = (tmp.path().join("allow-a"), tmp.path().join("allow-b"));
    write_allow(&allow_a, &[(&b_id, "read")]);
    write_allow(&allow_b, &[(&client.id, "write")]);
    let serve = |allow| Serve {
        allow: Some(allow),
        ..Serve::default()
    };
    let a = ServedNode::start(&a_dir, serve(&allow_a));
    let b = ServedNode::start(&b_dir, serve(&allow_b));

    for (blob, channel) in [(&small, "default"), (&tree, "photos")] {
        let out = client.run(&b.addr, &["blob", "pull", blob, "--from", &a.addr]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "pull of {blob}: {stderr}");
        let says = format!(
            "the source node {}: blob {blob} is pinned (in channel {channel}) but its root \
             object is missing",
            a.id()
        );
        assert!(stderr.contains(&says), "pull of {blob}: {stderr}");
        assert!(!stderr.contains("does not have it"), "{stderr}");
        assert!(out.stdout.is_empty(), "printed {:?}", out.stdout);
    }

    // Nothing was pinned on B.
    let listed = client.json(&b.addr, &["blob", "ls", "--json"]);
    assert_eq!(listed, serde_json::json!([]), "{listed}");
}
