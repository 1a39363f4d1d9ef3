//! A `net-mesh gc` killed (SIGKILL via failpoints) at each step of the sweep and of compaction
//! leaves a consistent store: live blobs read back, fsck finds at most an orphan file (kill
//! between the index commit and the unlink), `fsck --repair` removes it, and the next gc
//! finishes the job.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::os::unix::process::ExitStatusExt;

use common::*;
use serde_json::Value;

const POINTS: &[(&str, bool)] = &[
    ("gc.delete_commit.before", false),
    ("gc.delete_commit.after", false),
    ("compact.after_copy:3", false),
    ("compact.after_sync", false),
    ("compact.after_commit", true),
    ("compact.after_unlink", false),
];

fn disk_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

fn problem_kinds(dir: &std::path::Path) -> Vec<String> {
    let out = run(dir, &["fsck", "--read-data", "--json"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["severity"] != "info")
        .map(|p| p["kind"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn kill_at_each_gc_and_compaction_step_leaves_a_consistent_store() {
    for &(point, leaves_orphan) in POINTS {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        let shared = random_bytes(200_000, 1);
        let mut a = shared.clone();
        a.extend(random_bytes(600_000, 2));
        let mut b = shared;
        b.extend(random_bytes(100_000, 3));
        let fa = write_file(tmp.path(), "a.bin", &a);
        let fb = write_file(tmp.path(), "b.bin", &b);
        let chunking = "cdc:1024,4096,16384";
        let ra = ok_text(
            &dir,
            &["blob", "put", "--chunking", chunking, fa.to_str().unwrap()],
        );
        let rb = ok_text(
            &dir,
            &["blob", "put", "--chunking", chunking, fb.to_str().unwrap()],
        );
        ok(&dir, &["blob", "rm", &ra]);
        let before = disk_bytes(&dir);

        let out = cmd(&dir)
            .args(["gc", "--grace", "0s"])
            .env("NET_MESH_FAILPOINT", point)
            .output()
            .unwrap();
        assert_eq!(
            out.status.signal(),
            Some(9),
            "{point}: gc should die by SIGKILL"
        );

        assert!(ok(&dir, &["blob", "get", &rb]) == b, "{point}");
        let kinds = problem_kinds(&dir);
        if leaves_orphan {
            assert_eq!(kinds, vec!["orphan_file"], "{point}");
            let out = run(&dir, &["fsck", "--repair"]);
            assert_eq!(
                out.status.code(),
                Some(3),
                "{point}: problems were found (and fixed)"
            );
        } else {
            assert_eq!(kinds, Vec::<String>::new(), "{point}");
        }
        ok(&dir, &["fsck", "--read-data"]);

        // The next gc completes the job.
        ok(&dir, &["gc", "--grace", "0s"]);
        assert!(ok(&dir, &["blob", "get", &rb]) == b, "{point}");
        ok(&dir, &["fsck", "--read-data"]);
        let after = disk_bytes(&dir);
        assert!(after + 500_000 < before, "{point}: {before} -> {after}");
    }
}
