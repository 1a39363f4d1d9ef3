//! A read of a blob the store lacks asks the index whether a channel pins it (damage, not
//! absence). When that lookup itself fails (error point `error:index.channel_pinning`: the
//! index read fails as an I/O error does), the read fails with the lookup's error, locally and
//! through `--node` alike: the node ends its read stream with that error rather than saying
//! only that the object is missing, so the client never reports the blob "not in the store".
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::process::Output;

use common::node::*;
use common::*;
use net_mesh_engine::BlobRef;
use net_mesh_engine::error::hex;

const POINT: (&str, &str) = ("NET_MESH_FAILPOINT", "error:index.channel_pinning");
const INJECTED: &str = "injected (failpoint error:index.channel_pinning)";

/// Asserts `out` failed with exit 1 naming the failed lookup, not absence, and printed nothing.
fn lookup_failed(out: &Output, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
    assert!(stderr.contains(INJECTED), "{what}: {stderr}");
    assert!(!stderr.contains("not in the store"), "{what}: {stderr}");
    assert!(out.stdout.is_empty(), "{what}: printed {:?}", out.stdout);
}

#[test]
fn a_failed_pin_lookup_for_a_lost_blob_is_not_reported_as_absence() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");

    // A Small blob pinned in `default`, its one chunk removed by the operator override.
    let file = write_file(tmp.path(), "small.bin", &random_bytes(20_000, 7));
    let small = ok_text(&dir, &["blob", "put", file.to_str().unwrap()]);
    let BlobRef::Small { hash, .. } = BlobRef::from_text(&small).unwrap() else {
        panic!("{small} is not a Small ref");
    };
    ok(&dir, &["chunk", "rm", &hex(&hash), "--force"]);

    // Locally, the lookup's failure is the read's.
    let local = cmd(&dir)
        .args(["blob", "get", &small])
        .env(POINT.0, POINT.1)
        .output()
        .unwrap();
    lookup_failed(&local, "local");

    // Through the node (the point armed in the node's process), the same.
    let node = ServedNode::start(
        &dir,
        Serve {
            env: vec![POINT],
            ..Serve::default()
        },
    );
    let admin = Client::node_admin(&dir);
    lookup_failed(&admin.run(&node.addr, &["blob", "get", &small]), "node");

    // The point fires once: the next read finds the pin and says the blob is lost.
    let out = admin.run(&node.addr, &["blob", "get", &small]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let says =
        format!("blob {small} is pinned (in channel default) but its root object is missing");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&says),
        "{out:?}"
    );
}
