//! `blob cat REF --range A..B` with a range that does not parse is a usage error (exit 2)
//! before anything is looked up: whether or not a blob REF names exists, whether or not the data
//! dir does (none is created) or the node answers, locally and through `--node` alike.
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
fn blob_cat_with_a_malformed_range_is_a_usage_error_before_anything_is_looked_up() {
    let tmp = tempfile::tempdir().unwrap();
    let node_dir = tmp.path().join("node");
    let data = random_bytes(10_000, 81);
    let file = write_file(tmp.path(), "in.bin", &data);
    let blob = ok_text(&node_dir, &["blob", "put", file.to_str().unwrap()]);
    let node = ServedNode::start(&node_dir, Serve::default());
    let client = Client::node_admin(&node_dir);
    // The node id of the served node at a port nothing listens on.
    let nobody = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("{}@{}", node.id(), listener.local_addr().unwrap())
    };
    let no_store = tmp.path().join("no-store");

    for range in ["ten..20", "10", "0..18446744073709551616"] {
        // A prefix no pinned blob has, on the node and in a data dir that does not exist.
        let out = client.run(&node.addr, &["blob", "cat", "ffff", "--range", range]);
        assert_eq!(out.status.code(), Some(2), "node {range}: {out:?}");
        let out = run(&no_store, &["blob", "cat", "ffff", "--range", range]);
        assert_eq!(out.status.code(), Some(2), "local {range}: {out:?}");
        assert!(
            !no_store.exists(),
            "local {range}: the data dir was created"
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("range"), "{err}");
        // A node that does not answer.
        let out = client.run(&nobody, &["blob", "cat", &blob, "--range", range]);
        assert_eq!(out.status.code(), Some(2), "no node {range}: {out:?}");
    }
    // A well-formed range still reads.
    assert_eq!(
        client.ok(&node.addr, &["blob", "cat", &blob, "--range", "3..9"]),
        data[3..9]
    );
}
