//! Exit codes follow the class of the error, with one error line on stderr: 4 for a refusal
//! (nothing changes), 2 for a malformed request, 3 for damaged data, 1 for what does not exist.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::path::Path;

use common::crash::*;
use common::*;
use serde_json::Value;

/// Runs `args`, asserts the exit code and a single `net-mesh: error:` line on stderr, and
/// returns that line.
fn fails(dir: &Path, args: &[&str], code: i32) -> String {
    let out = run(dir, args);
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
    assert!(
        err.starts_with("net-mesh: error: ") && err.trim_end().lines().count() == 1,
        "{args:?}: {err}"
    );
    err
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

/// `staging list --json` without the age (which grows by itself).
fn staged(dir: &Path) -> Value {
    let mut rows = json(&ok(dir, &["staging", "list", "--json"]));
    for row in rows.as_array_mut().unwrap() {
        row.as_object_mut().unwrap().remove("age_ms").unwrap();
    }
    rows
}

#[test]
fn exit_codes_follow_the_error_class() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let input = random_bytes(2 << 20, 31);
    let file = write_file(tmp.path(), "in.bin", &input);
    let path = file.to_str().unwrap();
    let r = ok_text(&dir, &["blob", "put", "--chunking", CHUNKING, path]);
    let chunks = json(&ok(&dir, &["blob", "chunks", &r, "--json"]));
    let victim = chunks[1]["hash"].as_str().unwrap().to_string();

    // 4: refused, and nothing changed.
    let err = fails(&dir, &["chunk", "rm", &victim], 4);
    assert!(err.contains("--force"), "{err}");
    assert!(ok(&dir, &["blob", "get", &r]) == input);

    let live = Upload {
        dir: &dir,
        file: &file,
        id: "live",
        interval: "256K",
    };
    assert!(matches!(
        run_at_failpoint(&live, "staging.checkpoint.after_commit:2"),
        Run::Killed
    ));
    let before = staged(&dir);
    assert_eq!(before.as_array().unwrap().len(), 1);
    let start_again = [
        "blob",
        "put",
        "--resumable",
        "--staging-id",
        "live",
        "--chunking",
        CHUNKING,
        path,
    ];
    let err = fails(&dir, &start_again, 4);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(staged(&dir), before);

    let mut other = input.clone();
    for b in &mut other {
        *b ^= 0x33;
    }
    let other_file = write_file(tmp.path(), "other.bin", &other);
    let other_path = other_file.to_str().unwrap();
    let err = fails(&dir, &["staging", "resume", "live", other_path], 4);
    assert!(err.contains("replayed input differs"), "{err}");
    assert_eq!(staged(&dir), before);
    assert_eq!(live.finish(), r);
    // A finished id is not started again either (its ref is kept for `staging resume`).
    fails(&dir, &start_again, 4);

    // 2: the request itself is malformed.
    let err = fails(&dir, &["blob", "cat", &r, "--range", "10..2097153"], 2);
    assert!(err.contains("invalid"), "{err}");
    fails(&dir, &["blob", "cat", &r, "--range", "ten..20"], 2);
    fails(&dir, &["blob", "cat", &r, "--range", "10"], 2);
    fails(&dir, &["blob", "get", "nm1notaref"], 2);
    fails(&dir, &["chunk", "rm", "cafe"], 2);
    let err = fails(
        &dir,
        &["blob", "put", "--resumable", "--staging-id", "bad/id", path],
        2,
    );
    assert!(err.contains("invalid staging id"), "{err}");
    let err = fails(&dir, &["staging", "resume", "bad/id", path], 2);
    assert!(err.contains("invalid staging id"), "{err}");
    // (clap's own argument errors exit 2 too, with its usage text)
    let out = run(&dir, &["blob", "put", "--rs", "4,6", "--resumable", path]);
    assert_eq!(out.status.code(), Some(2));
    let long = "n".repeat(2000);
    fails(&dir, &["blob", "put", "--name", &long, path], 2);

    // 1: what the request names does not exist.
    fails(&dir, &["blob", "get", "0123456789abcdef"], 1);
    fails(&dir, &["staging", "abort", "never-started"], 1);
    fails(&dir, &["staging", "resume", "never-started", path], 1);
    let err = fails(
        &dir,
        &["blob", "put", "--resumable", "/nonexistent/in.bin"],
        1,
    );
    assert!(err.contains("opening /nonexistent/in.bin"), "{err}");
    let small = write_file(tmp.path(), "small.txt", b"small");
    let small = ok_text(&dir, &["blob", "put", small.to_str().unwrap()]);
    ok(&dir, &["blob", "rm", &small]);
    let err = fails(&dir, &["blob", "rm", &small], 1);
    assert!(err.contains("is not pinned"), "{err}");

    // Identities: the same classes.
    ok(&dir, &["identity", "generate", "node"]);
    let err = fails(&dir, &["identity", "generate", "node"], 4);
    assert!(err.contains("already exists"), "{err}");
    fails(&dir, &["identity", "generate", "no spaces"], 2);
    fails(&dir, &["identity", "show", "nobody"], 1);

    // 3: stored data is damaged.
    ok(&dir, &["chunk", "rm", &victim, "--force"]);
    let err = fails(&dir, &["blob", "get", &r], 3);
    assert!(err.contains("not in the store"), "{err}");
    fails(&dir, &["fsck"], 3);
}
