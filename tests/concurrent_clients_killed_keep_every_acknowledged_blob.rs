//! The many-clients workload (8 writers, resumable uploads, unpins, refusals, GC with zero
//! grace, compaction) in a real child process killed with SIGKILL at a random moment, round
//! after round on the same store. After each kill: reopen, every acknowledged blob reads back,
//! every acknowledged resumable upload resumes to the ref a plain put of its bytes makes, and
//! `fsck --read-data` is clean.
//!
//! `NET_MESH_STRESS_ROUNDS` sets the rounds (default 6); `NET_MESH_CRASH_SEED` replays.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::crash::Rng;
use common::workload::{self, AckLog};

const CHILD_ENV: &str = "NET_MESH_WORKLOAD_CHILD";

/// In the child process: run the workload until killed.
#[test]
fn workload_child() {
    let Some(spec) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let spec = spec.to_string_lossy().into_owned();
    let mut parts = spec.splitn(3, ':');
    let base: u64 = parts.next().unwrap().parse().unwrap();
    let seed: u64 = parts.next().unwrap().parse().unwrap();
    let dir = PathBuf::from(parts.next().unwrap());
    let store = workload::open(&dir.join("store"));
    let log = AckLog::create(&dir.join("acks.log"));
    workload::run(&store, &log, 8, u64::MAX, base, seed);
}

#[test]
fn killed_mid_workload_the_store_keeps_every_acknowledged_blob() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let scratch = workload::open(&dir.join("scratch"));
    let log_path = dir.join("acks.log");
    let mut rng = Rng::from_env();
    let rounds: u64 = std::env::var("NET_MESH_STRESS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let mut resumed = 0;
    for round in 0..rounds {
        let delay = Duration::from_millis(150 + rng.below(900));
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "workload_child",
                "--exact",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(
                CHILD_ENV,
                format!("{}:{}:{}", round << 32, rng.next(), dir.display()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        if let Ok(Some(status)) = child.try_wait() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "round {round}: the workload ended by itself ({status:?}): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL), "round {round}");

        let store = workload::open(&dir.join("store"));
        let expected = workload::read_log(&log_path);
        let log = AckLog::create(&log_path);
        resumed += workload::check_store(&store, &expected, &scratch, &log);
        drop(store);
        workload::assert_fsck_clean(&dir.join("store"));
        eprintln!(
            "round {round}: killed after {delay:?}; {} pinned blobs verified",
            expected.pinned.len()
        );
    }
    eprintln!("resumed {resumed} interrupted uploads in {rounds} rounds");
}
