//! `--checkpoint-interval` without `--resumable` is a usage error (exit 2), locally and
//! through `--node` alike, and stores nothing; `NET_MESH_CHECKPOINT_INTERVAL` is read only for
//! a resumable put (or `staging resume`): a bad value leaves a plain put alone and fails a
//! resumable one as a usage error that names the variable.
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

const VAR: &str = "NET_MESH_CHECKPOINT_INTERVAL";

/// Makes the command of one side (the local data dir, or the node).
type Side<'a> = dyn Fn() -> Command + 'a;

fn show(out: &Output) -> String {
    format!(
        "{:?}; stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn checkpoint_interval_applies_to_resumable_puts_only() {
    let tmp = tempfile::tempdir().unwrap();
    let local = tmp.path().join("local");
    let node_dir = tmp.path().join("node");
    let node = ServedNode::start(&node_dir, Serve::default());
    let client = Client::node_admin(&node_dir);
    let file = write_file(tmp.path(), "in.bin", &random_bytes(300_000, 71));
    let path = file.to_str().unwrap();

    let sides: [(&str, Box<Side>); 2] = [
        ("local", Box::new(|| cmd(&local))),
        ("node", Box::new(|| client.cmd(&node.addr))),
    ];
    for (side, command) in &sides {
        let run = |args: &[&str], env: Option<&str>| {
            let mut c = command();
            c.args(args).stdin(std::process::Stdio::null());
            match env {
                Some(v) => c.env(VAR, v),
                None => c.env_remove(VAR),
            };
            c.output().unwrap()
        };
        let out = run(&["blob", "put", "--checkpoint-interval", "1M", path], None);
        assert_eq!(out.status.code(), Some(2), "{side}: {}", show(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("--resumable"),
            "{side}: {}",
            show(&out)
        );
        let listed = run(&["blob", "ls"], None);
        assert!(
            listed.status.success() && listed.stdout.is_empty(),
            "{side}: {listed:?}"
        );

        // A bad variable: a plain put does not read it, a resumable one names it.
        let out = run(&["blob", "put", path], Some("lots"));
        assert!(out.status.success(), "{side}: {}", show(&out));
        for args in [
            &["blob", "put", "--resumable", path][..],
            &["staging", "resume", "no-such-upload", path][..],
        ] {
            let out = run(args, Some("lots"));
            assert_eq!(
                out.status.code(),
                Some(2),
                "{side} {args:?}: {}",
                show(&out)
            );
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.contains(VAR) && stderr.contains("\"lots\" is not a size"),
                "{side} {args:?}: {stderr}"
            );
        }
        // A good one is taken by a resumable put.
        let out = run(&["blob", "put", "--resumable", path], Some("64K"));
        assert!(out.status.success(), "{side}: {}", show(&out));
    }
}
