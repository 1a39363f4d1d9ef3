//! `blob get REF | head -c 10` and `blob cat REF --range … | head -c 10`: the reader closes the
//! pipe long before the blob is written, and the command ends quietly (exit 1, nothing on
//! stderr, no panic), locally and through `--node` alike.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::io::Read;
use std::process::{Command, Stdio};

use common::node::*;
use common::*;

/// Runs `command`, reads the first 10 bytes of its stdout, closes the pipe and waits: returns
/// the bytes read, the exit code and stderr.
fn read_ten_and_close(mut command: Command) -> (Vec<u8>, Option<i32>, String) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = vec![0u8; 10];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    // The pipe is closed here: the blob (4 MiB) is far larger than the pipe holds.
    let out = child.wait_with_output().unwrap();
    (
        first,
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn blob_get_and_cat_into_a_closed_pipe_end_quietly_locally_and_on_a_node() {
    let tmp = tempfile::tempdir().unwrap();
    let local = tmp.path().join("local");
    let node_dir = tmp.path().join("node");
    let data = random_bytes(4 << 20, 61);
    let file = write_file(tmp.path(), "in.bin", &data);
    let blob = ok_text(&local, &["blob", "put", file.to_str().unwrap()]);
    ok(&node_dir, &["blob", "put", file.to_str().unwrap()]);
    let node = ServedNode::start(&node_dir, Serve::default());
    let client = Client::node_admin(&node_dir);

    let range = format!("0..{}", data.len());
    let commands: [&[&str]; 2] = [
        &["blob", "get", &blob],
        &["blob", "cat", &blob, "--range", &range],
    ];
    for args in commands {
        for side in ["local", "node"] {
            let mut command = match side {
                "local" => cmd(&local),
                _ => client.cmd(&node.addr),
            };
            command.args(args);
            let (first, code, stderr) = read_ten_and_close(command);
            assert_eq!(first, data[..10], "{side} {args:?}");
            assert_eq!(code, Some(1), "{side} {args:?}: {stderr}");
            assert_eq!(stderr, "", "{side} {args:?} wrote to stderr");
        }
    }
    // The node served on.
    assert_eq!(
        client.ok(&node.addr, &["blob", "cat", &blob, "--range", "5..15"]),
        data[5..15]
    );
}
