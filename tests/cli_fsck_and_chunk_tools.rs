//! `net-mesh fsck` exit codes and JSON problems, `blob chunks --json`, and `chunk rm` (refused
//! without --force; the override simulates loss that fsck then reports).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::*;
use serde_json::Value;

#[test]
fn fsck_is_clean_then_reports_a_forced_chunk_loss_with_kind_and_location() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let a = random_bytes(200_000, 5);
    let fa = write_file(tmp.path(), "a.bin", &a);
    let ra = ok_text(
        &dir,
        &[
            "blob",
            "put",
            "--chunking",
            "cdc:1024,4096,16384",
            fa.to_str().unwrap(),
        ],
    );
    let text = ok_text(&dir, &["fsck", "--read-data"]);
    assert!(text.contains("0 problem(s)"), "{text}");
    let clean: Value =
        serde_json::from_slice(&ok(&dir, &["fsck", "--json", "--read-data-subset", "50"])).unwrap();
    assert_eq!(
        clean["problems"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["severity"] != "info")
            .count(),
        0
    );
    assert_eq!(clean["data"]["mode"], "subset");

    let chunks: Value =
        serde_json::from_slice(&ok(&dir, &["blob", "chunks", &ra, "--json"])).unwrap();
    let chunks = chunks.as_array().unwrap();
    assert!(chunks.len() > 10);
    for c in chunks {
        let keys: Vec<_> = c.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, vec!["hash", "role", "size", "stripe"]);
        assert_eq!(c["role"], "data");
        assert!(c["stripe"].is_null());
    }
    let victim = chunks[3]["hash"].as_str().unwrap();

    // Without --force: refused (exit 4), with the reason.
    let out = run(&dir, &["chunk", "rm", victim]);
    assert_eq!(out.status.code(), Some(4));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("reference") && err.contains("--force"),
        "{err}"
    );
    assert!(ok(&dir, &["blob", "get", &ra]) == a);

    ok(&dir, &["chunk", "rm", victim, "--force"]);
    let out = run(&dir, &["fsck", "--json"]);
    assert_eq!(out.status.code(), Some(3));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let problems: Vec<&Value> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["severity"] != "info")
        .collect();
    assert_eq!(problems.len(), 1, "{report}");
    assert_eq!(problems[0]["kind"], "missing_object");
    assert_eq!(problems[0]["location"]["object"], victim);
    assert_eq!(report["affected_blobs"].as_array().unwrap().len(), 1);
    assert_eq!(run(&dir, &["blob", "get", &ra]).status.code(), Some(3));
}

#[test]
fn fsck_repair_removes_an_orphan_file_and_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let fa = write_file(tmp.path(), "a.bin", &random_bytes(50_000, 6));
    ok(&dir, &["blob", "put", fa.to_str().unwrap()]);
    let seg = std::fs::read_dir(dir.join("segments"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let orphan = dir.join("segments").join("seg-00000000000000aa.nms");
    std::fs::copy(seg, &orphan).unwrap();
    let out = run(&dir, &["fsck"]);
    assert_eq!(out.status.code(), Some(3));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("orphan_file"), "{text}");
    let out = run(&dir, &["fsck", "--repair"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("repair: removed orphan segment file"),
        "{text}"
    );
    assert!(!orphan.exists());
    ok(&dir, &["fsck"]);
}

#[test]
fn fsck_rejects_bad_arguments_with_usage_exit_code() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    assert_eq!(
        run(&dir, &["fsck", "--read-data-subset", "150"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        run(&dir, &["fsck", "--max-duration", "5x"]).status.code(),
        Some(2)
    );
    assert_eq!(run(&dir, &["gc", "--grace", "soon"]).status.code(), Some(2));
}

#[test]
fn fsck_max_duration_says_how_far_it_got_and_the_next_run_continues() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let fa = write_file(tmp.path(), "a.bin", &random_bytes(100_000, 7));
    ok(
        &dir,
        &[
            "blob",
            "put",
            "--chunking",
            "cdc:1024,4096,16384",
            fa.to_str().unwrap(),
        ],
    );
    let args = [
        "fsck",
        "--json",
        "--read-data",
        "--max-duration",
        "0s",
        "--threads",
        "1",
    ];
    let first: Value = serde_json::from_slice(&ok(&dir, &args)).unwrap();
    assert_eq!(first["data"]["checked"], 1);
    assert_eq!(first["data"]["complete"], false);
    let second: Value = serde_json::from_slice(&ok(&dir, &args)).unwrap();
    assert_eq!(second["data"]["started_at"], first["data"]["next_at"]);
    let text = ok_text(
        &dir,
        &[
            "fsck",
            "--read-data",
            "--max-duration",
            "0s",
            "--threads",
            "1",
        ],
    );
    assert!(text.contains("stopped by --max-duration"), "{text}");
}
