//! `blob ls --channel NAME` and `staging list --channel NAME` of a channel the store does not
//! have fail as not found (exit 1, "no channel named NAME"), locally and through `--node`
//! alike; a channel that exists but holds nothing lists empty (exit 0).
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

/// Runs a command on one side (the local data dir, or the node).
type Side<'a> = dyn Fn(&[&str]) -> Output + 'a;

#[test]
fn listing_a_channel_that_does_not_exist_is_not_found() {
    let tmp = tempfile::tempdir().unwrap();
    let local = tmp.path().join("local");
    let node_dir = tmp.path().join("node");
    let node = ServedNode::start(&node_dir, Serve::default());
    let client = Client::node_admin(&node_dir);

    let sides: [(&str, Box<Side>); 2] = [
        ("local", Box::new(|args: &[&str]| run(&local, args))),
        (
            "node",
            Box::new(|args: &[&str]| client.run(&node.addr, args)),
        ),
    ];
    for (side, run) in &sides {
        let out = run(&["channel", "create", "empty"]);
        assert!(out.status.success(), "{side}: {out:?}");
        for listing in [&["blob", "ls"][..], &["staging", "list"][..]] {
            for json in [false, true] {
                let mut args = listing.to_vec();
                args.extend(["--channel", "nosuch"]);
                if json {
                    args.push("--json");
                }
                let out = run(&args);
                assert_eq!(out.status.code(), Some(1), "{side} {args:?}: {out:?}");
                assert_eq!(
                    String::from_utf8_lossy(&out.stderr),
                    "net-mesh: error: no channel named nosuch\n",
                    "{side} {args:?}"
                );
                assert!(out.stdout.is_empty(), "{side} {args:?}: {out:?}");

                args[3] = "empty";
                let out = run(&args);
                assert!(out.status.success(), "{side} {args:?}: {out:?}");
                let expected = if json { "[]\n" } else { "" };
                assert_eq!(
                    String::from_utf8_lossy(&out.stdout),
                    expected,
                    "{side} {args:?}"
                );
            }
        }
    }
}
