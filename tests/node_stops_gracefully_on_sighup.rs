//! A `net-mesh serve` process sent SIGHUP (its terminal closed) stops as on SIGTERM: it says
//! so, stops, exits 0 (not killed by the signal), and leaves its store clean: `fsck` passes
//! and the blob put before reads back.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::node::{Client, Serve, ServedNode, signal};
use common::*;

#[test]
fn node_stops_gracefully_on_sighup() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let client = Client::new(&tmp.path().join("client"), "operator");
    let allow = tmp.path().join("allow");
    common::node::write_allow(&allow, &[(&client.id, "write")]);
    let mut node = ServedNode::start(
        &dir,
        Serve {
            allow: Some(&allow),
            ..Serve::default()
        },
    );
    let data = random_bytes(100_000, 7);
    let file = write_file(tmp.path(), "f", &data);
    let r = client.ok_text(&node.addr, &["blob", "put", file.to_str().unwrap()]);

    signal(&node.child, "HUP");
    let status = node.child.wait().unwrap();
    let log = node.log_text();
    assert_eq!(status.code(), Some(0), "{status:?}: {log}");
    assert!(log.contains("SIGHUP: stopping"), "{log}");
    assert!(log.contains("stopped"), "{log}");
    ok(&dir, &["fsck"]);
    let back = tmp.path().join("back");
    ok(&dir, &["blob", "get", &r, "-o", back.to_str().unwrap()]);
    assert_eq!(std::fs::read(back).unwrap(), data);
}
