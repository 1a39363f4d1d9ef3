//! A writer killed (SIGKILL, via failpoints) between the segment write and the index commit
//! leaves every committed blob intact, and the store keeps working.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::os::unix::process::ExitStatusExt;

use common::*;

const POINTS: &[&str] = &[
    "engine.after_segment_append:2",
    "segment.after_write:3",
    "segment.after_sync",
    "engine.after_segment_sync",
    "engine.index_commit.before",
];

#[test]
fn kill_at_each_failpoint_keeps_committed_blobs_and_loses_only_the_open_upload() {
    for point in POINTS {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        let a = random_bytes(120_000, 1);
        let b = random_bytes(90_000, 2);
        let fa = write_file(tmp.path(), "a.bin", &a);
        let fb = write_file(tmp.path(), "b.bin", &b);
        let chunking = ["--chunking", "cdc:1024,4096,16384"];
        let ra = ok_text(
            &dir,
            &[&["blob", "put"][..], &chunking, &[fa.to_str().unwrap()]].concat(),
        );

        let out = cmd(&dir)
            .args(["blob", "put"])
            .args(chunking)
            .arg(&fb)
            .env("NET_MESH_FAILPOINT", point)
            .output()
            .unwrap();
        assert_eq!(
            out.status.signal(),
            Some(9),
            "{point}: writer should die by SIGKILL"
        );

        // The committed blob reads back verified; the killed upload left no pin.
        assert!(ok(&dir, &["blob", "get", &ra]) == a, "{point}");
        let ls: serde_json::Value =
            serde_json::from_slice(&ok(&dir, &["blob", "ls", "--json"])).unwrap();
        assert_eq!(ls.as_array().unwrap().len(), 1, "{point}");

        // The store accepts the same upload again and serves it.
        let rb = ok_text(
            &dir,
            &[&["blob", "put"][..], &chunking, &[fb.to_str().unwrap()]].concat(),
        );
        assert!(ok(&dir, &["blob", "get", &rb]) == b, "{point}");
        assert!(ok(&dir, &["blob", "get", &ra]) == a, "{point}");
    }
}

#[test]
fn kill_after_the_index_commit_keeps_the_new_blob() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let b = random_bytes(50_000, 3);
    let fb = write_file(tmp.path(), "b.bin", &b);
    let out = cmd(&dir)
        .args(["blob", "put", "--json"])
        .arg(&fb)
        .env("NET_MESH_FAILPOINT", "engine.index_commit.after")
        .output()
        .unwrap();
    assert_eq!(out.status.signal(), Some(9));
    let ls: serde_json::Value =
        serde_json::from_slice(&ok(&dir, &["blob", "ls", "--json"])).unwrap();
    let rows = ls.as_array().unwrap();
    assert_eq!(rows.len(), 1, "the commit happened before the kill");
    let r = rows[0]["blob_ref"].as_str().unwrap();
    assert!(ok(&dir, &["blob", "get", r]) == b);
}
