//! `gc --grace 0s` deletes unreferenced objects at once but leaves live resumable uploads alone
//! (they have their own grace): an upload killed moments after a checkpoint is still listed
//! after it and resumes to the uninterrupted upload's ref. `gc --staging-grace 0s` releases an
//! idle upload (named in `released_holds`), its objects become garbage, and resume then
//! answers "does not exist".
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::crash::*;
use common::*;
use serde_json::{Value, json};

fn gc(dir: &std::path::Path, args: &[&str]) -> Value {
    let mut all = vec!["gc", "--json"];
    all.extend_from_slice(args);
    serde_json::from_slice(&ok(dir, &all)).unwrap()
}

/// `staging list --json`: (id, bytes committed) of every live upload.
fn staged(dir: &std::path::Path) -> Vec<(String, u64)> {
    let rows: Value = serde_json::from_slice(&ok(dir, &["staging", "list", "--json"])).unwrap();
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let id = r["staging_id"].as_str().unwrap().to_string();
            (id, r["bytes_committed"].as_u64().unwrap())
        })
        .collect()
}

fn staged_ids(dir: &std::path::Path) -> Vec<String> {
    staged(dir).into_iter().map(|(id, _)| id).collect()
}

#[test]
fn gc_grace_does_not_release_a_live_resumable_upload_and_the_staging_grace_does() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let kept_input = random_bytes(4 << 20, 21);
    let kept_file = write_file(tmp.path(), "kept.bin", &kept_input);
    let idle_file = write_file(tmp.path(), "idle.bin", &random_bytes(2 << 20, 22));
    let kept = Upload {
        dir: &dir,
        file: &kept_file,
        id: "kept",
        interval: "256K",
    };
    let idle = Upload {
        dir: &dir,
        file: &idle_file,
        id: "idle",
        interval: "256K",
    };
    // Both writers die right after a checkpoint committed.
    assert!(matches!(
        run_at_failpoint(&kept, "staging.checkpoint.after_commit:4"),
        Run::Killed
    ));
    assert!(matches!(
        run_at_failpoint(&idle, "staging.checkpoint.after_commit:2"),
        Run::Killed
    ));
    assert_eq!(staged_ids(&dir), ["idle", "kept"]);

    // The object grace does not touch live uploads, however short it is.
    let report = gc(&dir, &["--grace", "0s"]);
    assert_eq!(report["released_holds"], json!([]), "{report}");
    assert_eq!(report["grace_secs"], 0);
    assert_eq!(staged_ids(&dir), ["idle", "kept"]);

    let r = kept.finish();
    assert_eq!(r, plain_ref(&tmp.path().join("scratch"), &kept_file));
    assert!(ok(&dir, &["blob", "get", &r]) == kept_input);
    let idle_committed = match staged(&dir).as_slice() {
        [(id, committed)] if id == "idle" => *committed,
        other => panic!("{other:?}"),
    };
    assert!(idle_committed >= 256 * 1024);

    // The staging grace releases the idle upload; what only it held is garbage from then on.
    let report = gc(&dir, &["--staging-grace", "0s"]);
    assert_eq!(
        report["released_holds"],
        json!([{"namespace": "staging", "what": "idle"}]),
        "{report}"
    );
    assert!(staged_ids(&dir).is_empty());
    let out = run(
        &dir,
        &["staging", "resume", "idle", idle_file.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not exist"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = gc(&dir, &["--grace", "0s"]);
    assert!(
        report["bytes_freed"].as_u64().unwrap() >= idle_committed,
        "the released upload's chunks are freed: {report}"
    );

    assert!(ok(&dir, &["blob", "get", &r]) == kept_input);
    ok(&dir, &["fsck", "--read-data"]);
}
