//! The `segment.after_sync` failpoint kills the process with SIGKILL right after fdatasync; the
//! synced data is on disk and reopening with the committed lengths the child reported works.
//! The test re-runs this test binary as the child (filtered to `child_process`).
use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use net_mesh_segments::failpoint::FAILPOINT_ENV;
use net_mesh_segments::{RecordKind, SegmentConfig, Segments};

const CHILD_DIR: &str = "NET_MESH_TEST_CHILD_DIR";

#[test]
fn child_process() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return; // only does something when spawned by the parent test
    };
    let segs = Segments::open(dir.as_ref(), SegmentConfig::default(), &BTreeMap::new()).unwrap();
    segs.append(RecordKind::Chunk, &[1; 32], b"first").unwrap();
    // Report the length the engine would commit, then sync (the failpoint fires in here).
    println!("ACTIVE {}", segs.active_segment());
    segs.sync().unwrap();
    println!("SURVIVED");
}

#[test]
fn after_sync_failpoint_kills_with_sigkill_and_data_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir.path())
        .env(FAILPOINT_ENV, "segment.after_sync:1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.signal(),
        Some(9),
        "child was not SIGKILLed: {:?} {stdout}",
        out.status
    );
    assert!(!stdout.contains("SURVIVED"), "{stdout}");
    let active: u64 = stdout
        .lines()
        .find_map(|l| l.split("ACTIVE ").nth(1))
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .expect("child reported its segment");
    // The record (32-byte file header + 52 + 5) was synced before the kill.
    let committed: BTreeMap<_, _> = [(active, 32 + 52 + 5)].into();
    let segs = Segments::open(dir.path(), SegmentConfig::default(), &committed).unwrap();
    let loc = net_mesh_segments::RecordLoc {
        segment: active,
        offset: 32,
        payload_len: 5,
    };
    assert_eq!(
        segs.read(loc, RecordKind::Chunk, &[1; 32])
            .unwrap()
            .as_ref(),
        b"first".as_slice()
    );
}

#[test]
fn unarmed_failpoint_is_a_no_op() {
    // In this process the variable is unset (or armed for another name): hits return.
    net_mesh_segments::failpoint::hit("segment.after_sync");
    net_mesh_segments::failpoint::hit("not.armed");
}
