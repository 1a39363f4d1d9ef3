//! `blob get REF -o FILE` stopped by Ctrl-C (SIGINT) or `kill` (SIGTERM) midway leaves nothing
//! behind: the temp file it was writing is removed, an existing FILE keeps its old bytes, and
//! the command exits with 128 + the signal's number, as a shell shows a process it stopped.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::node::*;
use common::*;

/// The files in `dir`.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    found.sort();
    found
}

#[test]
fn blob_get_output_file_stopped_by_a_signal_leaves_no_temp_file() {
    let tmp = tempfile::tempdir().unwrap();
    let node_dir = tmp.path().join("node");
    // 4 MiB through a node capped at 1 MB/s: the get runs for seconds.
    let data = random_bytes(4 << 20, 71);
    let file = write_file(tmp.path(), "in.bin", &data);
    let blob = ok_text(&node_dir, &["blob", "put", file.to_str().unwrap()]);
    let node = ServedNode::start(
        &node_dir,
        Serve {
            args: vec!["--bandwidth", "1M"],
            ..Serve::default()
        },
    );
    let client = Client::node_admin(&node_dir);
    let out_dir = tmp.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let target = write_file(&out_dir, "target.bin", b"the old bytes");

    for (sig, code) in [("INT", 130), ("TERM", 143)] {
        let mut child = client
            .cmd(&node.addr)
            .args(["blob", "get", &blob, "-o", target.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Wait until the temp file holds bytes: the get is under way.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let writing = files(&out_dir)
                .iter()
                .any(|p| *p != target && std::fs::metadata(p).is_ok_and(|m| m.len() > 0));
            if writing {
                break;
            }
            assert!(
                child.try_wait().unwrap().is_none(),
                "the get ended before it wrote anything"
            );
            assert!(Instant::now() < deadline, "no temp file appeared");
            std::thread::sleep(Duration::from_millis(20));
        }
        signal(&child, sig);
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            files(&out_dir),
            std::slice::from_ref(&target),
            "SIG{sig}: left behind"
        );
        assert_eq!(std::fs::read(&target).unwrap(), b"the old bytes");
        assert_eq!(
            out.status.code(),
            Some(code),
            "SIG{sig}: {:?} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Uninterrupted, the get replaces the file.
    client.ok(
        &node.addr,
        &["blob", "get", &blob, "-o", target.to_str().unwrap()],
    );
    assert!(std::fs::read(&target).unwrap() == data);
    assert_eq!(files(&out_dir), [target]);
}
