//! A publisher that lost the answer of its finished resumable upload learns the ref with
//! `staging resume ID FILE`: exit 0, the put's ref on stdout and `blob put --json`'s fields with
//! `--json`, for as long as the staging grace keeps the record; `gc --grace 0s` does not forget
//! it, `gc --staging-grace 0s` does, and resume then answers "does not exist" (exit 1).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;

use common::crash::CHUNKING;
use common::*;
use serde_json::Value;

const ID: &str = "lost-answer";

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

/// `blob put --resumable --staging-id ID FILE`, killed after its `nth` index commit when `nth`
/// is given. Returns whether it was killed, and its stdout.
fn put(dir: &Path, file: &Path, extra: &[&str], kill_after_commit: Option<u32>) -> (bool, Vec<u8>) {
    let mut c = cmd(dir);
    c.args([
        "blob",
        "put",
        "--resumable",
        "--staging-id",
        ID,
        "--chunking",
        CHUNKING,
    ])
    .args(extra)
    .arg(file);
    if let Some(n) = kill_after_commit {
        c.env(
            "NET_MESH_FAILPOINT",
            format!("engine.index_commit.after:{n}"),
        );
    }
    let out = c.stdin(Stdio::null()).output().unwrap();
    if out.status.signal() == Some(9) {
        return (true, out.stdout);
    }
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    (false, out.stdout)
}

fn resume(dir: &Path, file: &Path, extra: &[&str]) -> std::process::Output {
    cmd(dir)
        .args(["staging", "resume", ID])
        .arg(file)
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn resume_of_a_finished_upload_prints_its_ref_until_the_staging_grace_forgets_it() {
    let tmp = tempfile::tempdir().unwrap();
    let input = random_bytes(3 << 20, 91);
    let file = write_file(tmp.path(), "in.bin", &input);

    // The uninterrupted upload and what it printed.
    let done = tmp.path().join("done");
    let (killed, stdout) = put(&done, &file, &["--json"], None);
    assert!(!killed);
    let put_json = json(&stdout);
    let blob_ref = put_json["blob_ref"].as_str().unwrap().to_string();
    let plain: Value = json(&ok(
        &tmp.path().join("plain"),
        &[
            "blob",
            "put",
            "--json",
            "--chunking",
            CHUNKING,
            file.to_str().unwrap(),
        ],
    ));
    assert_eq!(plain["blob_ref"], put_json["blob_ref"]);
    let put_keys: Vec<&String> = plain.as_object().unwrap().keys().collect();
    assert_eq!(
        put_keys,
        put_json.as_object().unwrap().keys().collect::<Vec<_>>()
    );

    // Resuming it prints the ref, and with --json blob put's fields (nothing new was stored).
    let out = resume(&done, &file, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), blob_ref);
    let out = resume(&done, &file, &["--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let resumed = json(&out.stdout);
    for key in &put_keys {
        let expected = match key.as_str() {
            "new_chunks" | "new_bytes" => Value::from(0),
            _ => put_json[key.as_str()].clone(),
        };
        assert_eq!(resumed[key.as_str()], expected, "{key}: {resumed}");
    }
    assert_eq!(resumed["replayed_bytes"], 0, "{resumed}");
    assert!(resumed["resumed_from"].is_null(), "{resumed}");

    // The real loss: the writer dies right after its finalize committed, before it printed.
    // Find that commit by killing fresh uploads after their 1st, 2nd, … index commit.
    let mut lost = None;
    for n in 1..=20 {
        let dir = tmp.path().join(format!("killed-{n}"));
        let (killed, stdout) = put(&dir, &file, &[], Some(n));
        if !killed {
            break;
        }
        let staged = json(&ok(&dir, &["staging", "list", "--json"]));
        let pins = json(&ok(&dir, &["blob", "ls", "--json"]));
        if staged.as_array().unwrap().is_empty() && pins.as_array().unwrap().len() == 1 {
            assert!(stdout.is_empty(), "the killed writer printed nothing");
            lost = Some(dir);
            break;
        }
    }
    let dir = lost.expect("no kill point fell between the finalize commit and the answer");
    let out = resume(&dir, &file, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), blob_ref);

    // GC's object grace does not forget the record; the staging grace does.
    ok(&dir, &["gc", "--grace", "0s"]);
    let out = resume(&dir, &file, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), blob_ref);

    ok(&dir, &["gc", "--staging-grace", "0s"]);
    let out = resume(&dir, &file, &[]);
    assert_eq!(out.status.code(), Some(1), "not found");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.starts_with("net-mesh: error:") && err.contains("does not exist"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(out.stdout.is_empty());

    // The blob itself stays pinned and whole.
    assert!(ok(&dir, &["blob", "get", &blob_ref]) == input);
    ok(&dir, &["fsck", "--read-data"]);
}
