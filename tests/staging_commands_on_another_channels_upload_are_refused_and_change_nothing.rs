//! A resumable upload into channel `photos` whose writer is killed belongs to `photos`. Through
//! a node, a peer whose token grants write on `default` only, and the owner on a command naming
//! no channel, get: `staging list` without it, `staging resume` (with the same file) and
//! `staging abort` refused with exit 4 and the upload's channel named; the upload stays live at
//! the same checkpoint and nothing is pinned. `staging --channel photos resume` then finishes it
//! to the ref a local put prints, pinned in `photos` only. The local data dir's `staging`
//! commands behave the same way.
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
use serde_json::Value;

/// Asserts `out` is the refusal of acting on upload `id` of `photos` without naming it.
fn assert_refused(what: &str, id: &str, out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{what}: {stderr}");
    assert!(
        stderr.contains(&format!(
            "upload {id} belongs to channel photos, not default"
        )) && stderr.contains("--channel photos"),
        "{what}: {stderr}"
    );
    assert!(out.stdout.is_empty(), "{what}");
}

/// Runs one `net-mesh` command on a side (a node as some peer, or a local data dir).
type Run<'a> = &'a dyn Fn(&[&str]) -> Output;

fn parsed(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The one live upload a `staging list --json` shows: its id, resume offset and seq.
fn only_row(rows: &Value) -> (String, u64, u64) {
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    (
        rows[0]["staging_id"].as_str().unwrap().to_string(),
        rows[0]["resume_offset"].as_u64().unwrap(),
        rows[0]["seq"].as_u64().unwrap(),
    )
}

/// The story on one side, once upload `id` of `file` is live in `photos` there: `others` are
/// ways to call without naming `photos` (each refused), `owner` runs commands as the owner.
fn story(id: &str, file: &str, local_ref: &str, others: &[Run<'_>], owner: Run<'_>) {
    let in_photos = || {
        only_row(&parsed(&owner(&[
            "staging",
            "--channel",
            "photos",
            "list",
            "--json",
        ])))
    };
    let before = in_photos();
    assert_eq!(before.0, id);
    assert!(before.1 > 0, "{before:?}");
    for run in others {
        assert_eq!(
            parsed(&run(&["staging", "list", "--json"])),
            Value::Array(vec![])
        );
        assert_refused(
            "resume",
            id,
            &run(&["staging", "resume", id, file, "--json"]),
        );
        assert_refused("abort", id, &run(&["staging", "abort", id]));
        assert_eq!(in_photos(), before);
        for channel in ["default", "photos"] {
            let pins = parsed(&owner(&["blob", "--channel", channel, "ls", "--json"]));
            assert_eq!(pins, Value::Array(vec![]), "{channel}");
        }
    }
    let done = parsed(&owner(&[
        "staging",
        "resume",
        id,
        file,
        "--json",
        "--channel",
        "photos",
    ]));
    assert_eq!(done["blob_ref"], local_ref, "{done}");
    assert_eq!(done["resumed_from"].as_u64(), Some(before.1), "{done}");
    let pins = parsed(&owner(&["blob", "--channel", "photos", "ls", "--json"]));
    assert_eq!(pins.as_array().unwrap().len(), 1, "{pins}");
    assert_eq!(pins[0]["blob_id"], done["blob_id"], "{pins}");
    let pins = parsed(&owner(&["blob", "ls", "--json"]));
    assert_eq!(pins, Value::Array(vec![]));
}

#[test]
fn staging_commands_on_another_channels_upload_are_refused_and_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = random_bytes(16_000_000, 23);
    let file = write_file(tmp.path(), "in.bin", &data);
    let file = file.to_str().unwrap();
    let local_ref = ok_text(&tmp.path().join("plain"), &["blob", "put", file]);
    let put_killed = |mut c: std::process::Command, id: &str, failpoint: &str| {
        let out = c
            .args([
                "blob",
                "--channel",
                "photos",
                "put",
                "--resumable",
                "--staging-id",
                id,
                "--checkpoint-interval",
                "256K",
                file,
            ])
            .env("NET_MESH_FAILPOINT", failpoint)
            .output()
            .unwrap();
        assert!(killed(out.status), "{:?}", out.status);
    };

    // Through a node: the owner is a writer; the other peer has a write token for `default`.
    let node_dir = tmp.path().join("node");
    let owner = Client::new(&tmp.path().join("owner"), "o");
    let other = Client::new(&tmp.path().join("other"), "x");
    let allow = tmp.path().join("allow");
    write_allow(&allow, &[(&owner.id, "write")]);
    let node = ServedNode::start(
        &node_dir,
        Serve {
            allow: Some(&allow),
            ..Serve::default()
        },
    );
    let admin = Client::node_admin(&node_dir);
    admin.ok(&node.addr, &["channel", "create", "photos"]);
    let other_key = other.public_key();
    let token = ok_text(
        &node_dir,
        &[
            "token",
            "mint",
            "--subject",
            &other_key,
            "--scope",
            "read,write",
            "--channel",
            "default",
            "--ttl",
            "1h",
        ],
    );
    put_killed(owner.cmd(&node.addr), "up-1", "cli.node_put.after_piece:12");
    // The client is dead, but the node's worker still stores what it had received and
    // checkpoints it: wait until no put call runs (its stream lives as long as its worker), so
    // the upload stands still.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let status: Value =
            serde_json::from_slice(&owner.ok(&node.addr, &["status", "--json"])).unwrap();
        let puts = status["streams"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["kind"] == "put")
            .count();
        if puts == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the node's upload worker never ended: {status}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let with_token = |args: &[&str]| {
        other.run(
            &node.addr,
            &[&["--token", token.as_str()][..], args].concat(),
        )
    };
    // The token names `default`: on `photos` the node refuses it before any staging call.
    let wrong = with_token(&["staging", "--channel", "photos", "list"]);
    assert_eq!(wrong.status.code(), Some(4), "{wrong:?}");
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("wrong_channel"),
        "{wrong:?}"
    );
    let owner_on_default = |args: &[&str]| owner.run(&node.addr, args);
    let as_owner = |args: &[&str]| owner.run(&node.addr, args);
    story(
        "up-1",
        file,
        &local_ref,
        &[&with_token, &owner_on_default],
        &as_owner,
    );
    assert!(node.stop().success());

    // On a local data dir.
    let local = tmp.path().join("local");
    ok(&local, &["channel", "create", "photos"]);
    put_killed(cmd(&local), "up-2", "staging.checkpoint.after_commit:3");
    let on_local = |args: &[&str]| run(&local, args);
    story("up-2", file, &local_ref, &[&on_local], &on_local);
}
