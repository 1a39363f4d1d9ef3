//! A blob a channel pins whose root object is lost (index or segment damage: fsck reports
//! `missing_object`) is damage, not absence: `blob get`, `cat`, `stat` and `chunks` of it fail
//! with exit 3, saying the blob is pinned (in its channel) but its root object is missing,
//! locally and through `--node` (the node's read stream says which channel pins it). A ref no
//! channel pins and the store lacks stays "not in the store" (exit 1), and so does the damaged
//! blob once it is unpinned.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::process::Output;

use common::damage::{drop_object, failed, reads, strs};
use common::node::*;
use common::*;
use net_mesh_engine::BlobRef;
use net_mesh_engine::error::hex;

#[test]
fn a_pinned_blob_whose_root_is_lost_is_an_integrity_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let elsewhere = tmp.path().join("elsewhere");

    // A Small blob pinned in `default`, its one chunk removed by the operator override.
    let small_file = write_file(tmp.path(), "small.bin", &random_bytes(20_000, 7));
    let small = ok_text(&dir, &["blob", "put", small_file.to_str().unwrap()]);
    let BlobRef::Small { hash, .. } = BlobRef::from_text(&small).unwrap() else {
        panic!("{small} is not a Small ref");
    };
    ok(&dir, &["chunk", "rm", &hex(&hash), "--force"]);

    // A Tree blob pinned in channel `photos` only, its root node's index entry lost.
    ok(&dir, &["channel", "create", "photos"]);
    let tree_file = write_file(tmp.path(), "tree.bin", &random_bytes(300_000, 8));
    let tree_put = [
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
    ];
    let tree = ok_text(&dir, &tree_put);
    let BlobRef::Tree { root_hash, .. } = BlobRef::from_text(&tree).unwrap() else {
        panic!("{tree} is not a Tree ref");
    };
    drop_object(&dir, &root_hash);

    // fsck sees the damage as a missing object.
    let fsck = run(&dir, &["fsck"]);
    assert_eq!(fsck.status.code(), Some(3), "{fsck:?}");

    // A ref of a blob stored elsewhere only: neither pinned nor present here.
    let other = write_file(tmp.path(), "other.bin", &random_bytes(20_000, 9));
    let absent = ok_text(&elsewhere, &["blob", "put", other.to_str().unwrap()]);

    let check = |run: &dyn Fn(&[&str]) -> Output, side: &str| {
        for (blob, channel) in [(&small, "default"), (&tree, "photos")] {
            let says = format!(
                "blob {blob} is pinned (in channel {channel}) but its root object is missing"
            );
            for args in reads(blob, "0..1") {
                let out = run(&strs(&args));
                failed(&out, 3, &says, &format!("{side} {args:?}"));
                failed(&out, 3, "fsck", &format!("{side} {args:?}"));
            }
        }
        for args in reads(&absent, "0..1") {
            let out = run(&strs(&args));
            let says = format!("blob {absent} is not in the store");
            failed(&out, 1, &says, &format!("{side} {args:?}"));
        }
    };
    check(&|args| run(&dir, args), "local");
    let node = ServedNode::start(&dir, Serve::default());
    let admin = Client::node_admin(&dir);
    check(&|args| admin.run(&node.addr, args), "node");

    // Unpinned, the damaged Small blob is just absent.
    admin.ok(&node.addr, &["blob", "rm", &small]);
    let says = format!("blob {small} is not in the store");
    for args in reads(&small, "0..1") {
        failed(
            &admin.run(&node.addr, &strs(&args)),
            1,
            &says,
            "node, unpinned",
        );
    }
    drop(node);
    for args in reads(&small, "0..1") {
        failed(&run(&dir, &strs(&args)), 1, &says, "local, unpinned");
    }
}
