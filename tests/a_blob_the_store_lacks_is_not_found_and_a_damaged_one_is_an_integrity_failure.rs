//! A valid ref of a blob the store does not hold is not found (exit 1, "blob REF is not in the
//! store") for `blob get`, `cat`, `stat` and `chunks`, locally and through `--node`, for every
//! kind of ref; a blob whose root is there but an object below it is not stays an integrity
//! failure (exit 3). `blob pull --from A` of a blob A lacks is not found too and says it is A
//! that lacks it; a pull A refuses to serve names A.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::path::Path;
use std::process::Output;

use common::damage::{drop_object, failed, reads, strs};
use common::node::*;
use common::*;
use net_mesh_engine::{BlobRef, Store, StoreConfig};
use net_mesh_segments::RecordKind;

/// Removes the index entry of one internal node of tree `tree` other than its root, so the
/// root is there and an object below it is not.
fn drop_an_inner_node(dir: &Path, tree: &str) {
    let BlobRef::Tree { root_hash, .. } = BlobRef::from_text(tree).unwrap() else {
        panic!("{tree} is not a Tree ref");
    };
    let inner = {
        let store = Store::open(dir, StoreConfig::default()).unwrap();
        let objects = store.index().objects().unwrap();
        objects
            .into_iter()
            .find(|(hash, e)| e.kind == RecordKind::InternalNode && *hash != root_hash)
            .expect("the tree has an internal node below its root")
            .0
    };
    drop_object(dir, &inner);
}

#[test]
fn a_blob_the_store_lacks_is_not_found_and_a_damaged_one_is_an_integrity_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let elsewhere = tmp.path().join("elsewhere");
    let dir = tmp.path().join("store");
    let client = Client::new(&tmp.path().join("client"), "c");
    let file = write_file(tmp.path(), "in.bin", &random_bytes(300_000, 41));
    let path = file.to_str().unwrap();

    // Refs of every kind, of blobs stored elsewhere only.
    let small = ok_text(&elsewhere, &["blob", "put", path]);
    let manifest = ok_text(
        &elsewhere,
        &["blob", "put", path, "--chunking", "fixed:64K"],
    );
    let tree_args = [
        "--chunking",
        "fixed:4K",
        "--leaf-fanout",
        "4",
        "--internal-fanout",
        "4",
    ];
    let mut put_tree = vec!["blob", "put", path];
    put_tree.extend(tree_args);
    let tree = ok_text(&elsewhere, &put_tree);
    let absent = [&small, &manifest, &tree];

    // The store holds another tree, whose root is there and one internal node below it not.
    let other = write_file(tmp.path(), "other.bin", &random_bytes(300_000, 42));
    let mut put_damaged = vec!["blob", "put", other.to_str().unwrap()];
    put_damaged.extend(tree_args);
    let damaged = ok_text(&dir, &put_damaged);
    drop_an_inner_node(&dir, &damaged);

    let check = |run: &dyn Fn(&[&str]) -> Output, side: &str| {
        for blob in absent {
            // A Manifest ref is too long to print: it is named by its id.
            let named = if blob == &manifest {
                "is not in the store".to_string()
            } else {
                format!("blob {blob} is not in the store")
            };
            for args in reads(blob, "1..5") {
                let out = run(&strs(&args));
                failed(&out, 1, &named, &format!("{side} {args:?}"));
            }
        }
        for args in reads(&damaged, "1..5") {
            if args[1] == "cat" {
                // A range whose path misses the dropped node is read whole.
                continue;
            }
            let out = run(&strs(&args));
            failed(
                &out,
                3,
                "(internal node) is not in the store",
                &format!("{side} {args:?}"),
            );
        }
    };
    check(&|args| run(&dir, args), "local");
    let node = ServedNode::start(&dir, Serve::default());
    let node_client = Client::node_admin(&dir);
    check(&|args| node_client.run(&node.addr, args), "node");

    // Pulls: from a node that lacks the blob, and from one that does not serve the puller.
    let a_dir = tmp.path().join("a");
    let b_dir = tmp.path().join("b");
    let b_id = node_identity(&b_dir);
    let (allow_a, allow_b, allow_c) = (
        tmp.path().join("allow-a"),
        tmp.path().join("allow-b"),
        tmp.path().join("allow-c"),
    );
    write_allow(&allow_a, &[(&client.id, "write"), (&b_id, "read")]);
    write_allow(&allow_b, &[(&client.id, "write")]);
    write_allow(&allow_c, &[(&client.id, "write")]);
    let serve = |allow| Serve {
        allow: Some(allow),
        ..Serve::default()
    };
    let a = ServedNode::start(&a_dir, serve(&allow_a));
    let b = ServedNode::start(&b_dir, serve(&allow_b));
    let c = ServedNode::start(&tmp.path().join("c"), serve(&allow_c));
    for blob in [&small, &tree] {
        let out = client.run(&b.addr, &["blob", "pull", blob, "--from", &a.addr]);
        let says = format!("the source node {} does not have it", a.id());
        failed(
            &out,
            1,
            &says,
            &format!("pull of {blob} from a node without it"),
        );
        failed(&out, 1, "is not in the store", "pull");
    }
    client.ok(&c.addr, &["blob", "put", path]);
    let out = client.run(&b.addr, &["blob", "pull", &small, "--from", &c.addr]);
    failed(
        &out,
        4,
        &format!("the source node {}", c.id()),
        "pull refused by its source",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("this node"), "{stderr}");
    let listed = client.json(&b.addr, &["blob", "ls", "--json"]);
    assert_eq!(listed, serde_json::json!([]), "{listed}");
    drop(node);
}
