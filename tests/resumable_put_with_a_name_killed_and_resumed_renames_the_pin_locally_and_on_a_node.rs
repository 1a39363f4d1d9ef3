//! `blob put --resumable --name new FILE` of a blob the channel pins as `old`, its writer
//! SIGKILLed mid-upload (an armed failpoint: locally after the third checkpoint commits,
//! through `--node` after the twelfth piece is sent), then `staging resume ID FILE`: the
//! resume finishes the upload as its put asked — the name, and that it was given, come from
//! the upload's checkpoint — so the pin is renamed to `new` (the resume's `name`, `blob ls`),
//! as an uninterrupted put renames it. Locally and through `--node` alike, same answers.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::process::{Command, Output};

use common::node::*;
use common::*;
use serde_json::Value;

fn json_of(out: &Output, what: &str) -> Value {
    assert!(
        out.status.success(),
        "{what}: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn resumable_put_with_a_name_killed_and_resumed_renames_the_pin_locally_and_on_a_node() {
    let tmp = tempfile::tempdir().unwrap();
    let file = write_file(tmp.path(), "photo.bin", &random_bytes(16_000_000, 9));
    let f = file.to_str().unwrap();
    let local_dir = tmp.path().join("local");
    let node_dir = tmp.path().join("node");
    let node = ServedNode::start(&node_dir, Serve::default());
    let admin = Client::node_admin(&node_dir);

    let check = |command: &dyn Fn() -> Command, failpoint: &str, side: &str| -> Value {
        let run = |args: &[&str]| command().args(args).output().unwrap();
        let first = json_of(&run(&["blob", "put", f, "--name", "old", "--json"]), side);
        assert_eq!(first["name"], "old", "{side}: {first}");

        let out = command()
            .args([
                "blob",
                "put",
                "--resumable",
                "--staging-id",
                "up-1",
                "--name",
                "new",
                "--checkpoint-interval",
                "256K",
                f,
            ])
            .env("NET_MESH_FAILPOINT", failpoint)
            .output()
            .unwrap();
        assert!(killed(out.status), "{side}: {:?}", out.status);
        assert!(out.stdout.is_empty(), "{side}: {out:?}");
        let staged = json_of(&run(&["staging", "list", "--json"]), side);
        assert_eq!(staged[0]["staging_id"], "up-1", "{side}: {staged}");
        // Not finished: the pin still has its old name.
        let listed = json_of(&run(&["blob", "ls", "--json"]), side);
        assert_eq!(listed[0]["name"], "old", "{side}: {listed}");

        let mut done = json_of(&run(&["staging", "resume", "up-1", f, "--json"]), side);
        assert_eq!(done["name"], "new", "{side}: {done}");
        let from = done["resumed_from"].as_u64().unwrap();
        assert!(from > 0, "{side}: {done}");
        let listed = json_of(&run(&["blob", "ls", "--json"]), side);
        let rows = listed.as_array().unwrap();
        assert_eq!(rows.len(), 1, "{side}: {listed}");
        assert_eq!(rows[0]["name"], "new", "{side}: {listed}");
        assert_eq!(rows[0]["blob_ref"], first["blob_ref"], "{side}: {listed}");
        // Resumed again, it answers from the finished record: the pin's name.
        let again = json_of(&run(&["staging", "resume", "up-1", f, "--json"]), side);
        assert_eq!(again["name"], "new", "{side}: {again}");
        assert_eq!(again["blob_ref"], first["blob_ref"], "{side}: {again}");
        // Where the writer was killed, and what the node or the store had stored already,
        // differ between the two sides.
        for moving in ["resumed_from", "replayed_bytes", "new_chunks", "new_bytes"] {
            done.as_object_mut().unwrap().remove(moving);
        }
        done
    };
    let local = check(
        &|| cmd(&local_dir),
        "staging.checkpoint.after_commit:3",
        "local",
    );
    let remote = check(
        &|| admin.cmd(&node.addr),
        "cli.node_put.after_piece:12",
        "node",
    );
    assert_eq!(local, remote, "the same answers locally and through --node");
    assert!(node.stop().success());
    ok(&node_dir, &["fsck", "--read-data"]);
    ok(&local_dir, &["fsck", "--read-data"]);
}
