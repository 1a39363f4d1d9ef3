//! `blob put DIR` (a directory) and `blob put MISSING` fail the same way locally and through
//! `--node`: exit 1, the same one error line, nothing stored or staged.
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
fn blob_put_of_a_directory_or_a_missing_file_fails_alike_locally_and_on_a_node() {
    let tmp = tempfile::tempdir().unwrap();
    let local = tmp.path().join("local");
    let node_dir = tmp.path().join("node");
    ok(&local, &["status"]);
    ok(&node_dir, &["status"]);
    let node = ServedNode::start(&node_dir, Serve::default());
    let client = Client::node_admin(&node_dir);
    let a_dir = tmp.path().join("a-dir");
    std::fs::create_dir(&a_dir).unwrap();
    let missing = tmp.path().join("missing.bin");

    for (input, expected) in [
        (
            &a_dir,
            format!("{} is a directory, not a file", a_dir.display()),
        ),
        (
            &missing,
            format!("opening {}: No such file", missing.display()),
        ),
    ] {
        for resumable in [false, true] {
            let mut args = vec!["blob", "put", input.to_str().unwrap()];
            if resumable {
                args.push("--resumable");
            }
            let l = run(&local, &args);
            let r = client.run(&node.addr, &args);
            for (side, out) in [("local", &l), ("node", &r)] {
                let err = String::from_utf8_lossy(&out.stderr);
                assert_eq!(out.status.code(), Some(1), "{side} {args:?}: {err}");
                assert!(
                    err.starts_with(&format!("net-mesh: error: {expected}")),
                    "{side} {args:?}: {err}"
                );
                assert_eq!(err.lines().count(), 1, "{side} {args:?}: {err}");
                assert!(out.stdout.is_empty(), "{side} {args:?}");
            }
            assert_eq!(l.stderr, r.stderr, "{args:?}");
        }
    }
    // Nothing was stored or staged on either side.
    for listing in [&["blob", "ls"][..], &["staging", "list"][..]] {
        assert!(ok(&local, listing).is_empty(), "local {listing:?}");
        assert!(
            client.ok(&node.addr, listing).is_empty(),
            "node {listing:?}"
        );
    }
}
