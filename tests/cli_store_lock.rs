//! A second process opening a store in use gets "store is locked by pid N".
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn second_process_gets_locked_by_pid_error() {
    let tmp = tempfile::tempdir().unwrap();
    // `blob put -` holds the store open while it waits for stdin.
    let mut holder = cmd(tmp.path())
        .args(["blob", "put", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let lock = tmp.path().join("LOCK");
    loop {
        let pid = std::fs::read_to_string(&lock).unwrap_or_default();
        if pid.trim() == holder.id().to_string() {
            break;
        }
        assert!(Instant::now() < deadline, "holder never took the lock");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = run(tmp.path(), &["blob", "ls"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("locked by pid {}", holder.id())),
        "{stderr}"
    );
    drop(holder.stdin.take());
    assert!(holder.wait().unwrap().success());
    // Once the holder is gone the store opens again.
    ok(tmp.path(), &["blob", "ls"]);
}
