//! `net-mesh blob put --resumable` and `net-mesh staging list|resume|abort`: the staging id
//! is printed at once, listing shows the committed state, a different replayed file is refused
//! with a typed error, aborting releases the upload, and resume works after a torn final record.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::io::Write;

use common::crash::*;
use common::*;

#[test]
fn resumable_put_prints_the_staging_id_and_the_plain_ref() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let input = random_bytes(3 << 20, 11);
    let file = write_file(tmp.path(), "in.bin", &input);
    let out = run(
        &dir,
        &[
            "blob",
            "put",
            "--resumable",
            "--checkpoint-interval",
            "256K",
            "--chunking",
            CHUNKING,
            file.to_str().unwrap(),
        ],
    );
    assert!(out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    let id_line = stderr
        .lines()
        .find(|l| l.starts_with("staging-id: "))
        .unwrap();
    assert_eq!(id_line.len(), "staging-id: ".len() + 32, "{id_line}");
    let r = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(r, plain_ref(&tmp.path().join("scratch"), &file));
    assert!(ok(&dir, &["blob", "get", &r]) == input);
    assert_eq!(ok_text(&dir, &["staging", "list", "--json"]), "[]");
}

#[test]
fn list_shows_a_killed_upload_and_abort_removes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let file = write_file(tmp.path(), "in.bin", &random_bytes(4 << 20, 12));
    let up = Upload {
        dir: &dir,
        file: &file,
        id: "killed-1",
        interval: "256K",
    };
    assert!(matches!(
        run_at_failpoint(&up, "staging.checkpoint.after_commit:3"),
        Run::Killed
    ));
    let rows: serde_json::Value =
        serde_json::from_slice(&ok(&dir, &["staging", "list", "--json"])).unwrap();
    let row = &rows.as_array().unwrap()[0];
    assert_eq!(row["staging_id"], "killed-1");
    assert_eq!(
        row["chunking"],
        CHUNKING
            .replace("16K", "16384")
            .replace("64K", "65536")
            .replace("256K", "262144")
    );
    let committed = row["bytes_committed"].as_u64().unwrap();
    let resume = row["resume_offset"].as_u64().unwrap();
    assert!(committed >= 3 * 256 * 1024, "{row}");
    assert!(
        resume < committed && committed - resume <= 256 * 1024,
        "{row}"
    );
    assert_eq!(row["name"], "in.bin");
    let text = ok_text(&dir, &["staging", "list"]);
    assert!(text.starts_with("killed-1"), "{text}");

    ok(&dir, &["staging", "abort", "killed-1"]);
    assert_eq!(ok_text(&dir, &["staging", "list", "--json"]), "[]");
    let out = run(
        &dir,
        &["staging", "resume", "killed-1", file.to_str().unwrap()],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
    let out = run(&dir, &["staging", "abort", "killed-1"]);
    assert!(!out.status.success());
}

#[test]
fn resuming_with_a_different_file_is_refused_and_the_right_file_still_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let input = random_bytes(4 << 20, 13);
    let file = write_file(tmp.path(), "in.bin", &input);
    let mut other = input.clone();
    for b in &mut other[1 << 20..] {
        *b ^= 0x5a;
    }
    let other_file = write_file(tmp.path(), "other.bin", &other);
    let up = Upload {
        dir: &dir,
        file: &file,
        id: "mismatch",
        interval: "256K",
    };
    assert!(matches!(
        run_at_failpoint(&up, "staging.checkpoint.after_commit:6"),
        Run::Killed
    ));
    let out = run(
        &dir,
        &[
            "staging",
            "resume",
            "mismatch",
            other_file.to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("replayed input differs"), "{err}");
    let r = up.finish();
    assert_eq!(r, plain_ref(&tmp.path().join("scratch"), &file));
    assert!(ok(&dir, &["blob", "get", &r]) == input);
}

#[test]
fn resume_after_a_torn_final_record() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let input = random_bytes(4 << 20, 14);
    let file = write_file(tmp.path(), "in.bin", &input);
    let up = Upload {
        dir: &dir,
        file: &file,
        id: "torn",
        interval: "256K",
    };
    // Killed right after a record write: the bytes after the last commit are a partial batch.
    assert!(matches!(
        run_at_failpoint(&up, "segment.after_write:20"),
        Run::Killed
    ));
    // Tear the last record: append half a record header and some payload bytes.
    let seg_dir = dir.join("segments");
    let mut segs: Vec<_> = std::fs::read_dir(&seg_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segs.sort();
    let last = segs.last().unwrap();
    let mut f = std::fs::OpenOptions::new().append(true).open(last).unwrap();
    f.write_all(b"NMRC\x01\x01\x00\x00\xff\xff").unwrap();
    f.write_all(&random_bytes(777, 15)).unwrap();
    drop(f);
    let r = up.finish();
    assert_eq!(r, plain_ref(&tmp.path().join("scratch"), &file));
    assert!(ok(&dir, &["blob", "get", &r]) == input);
}
