//! `net-mesh gc` through the real binary: unpinned data is freed, the segment files shrink,
//! shared chunks survive, and fsck stays clean.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::*;
use serde_json::Value;

fn disk_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

#[test]
fn gc_frees_an_unpinned_blob_and_keeps_the_shared_chunks() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let shared = random_bytes(400_000, 1);
    let mut a = shared.clone();
    a.extend(random_bytes(1_200_000, 2));
    let mut b = shared;
    b.extend(random_bytes(300_000, 3));
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

    // Default grace (24h) keeps fresh garbage.
    ok(&dir, &["blob", "rm", &ra]);
    let r: Value = serde_json::from_slice(&ok(&dir, &["gc", "--json"])).unwrap();
    assert_eq!(r["objects_freed"], 0);
    assert_eq!(r["grace_secs"], 86_400);

    let before = disk_bytes(&dir);
    let dry: Value =
        serde_json::from_slice(&ok(&dir, &["gc", "--grace", "0s", "--dry-run", "--json"])).unwrap();
    assert_eq!(dry["dry_run"], true);
    assert!(dry["chunks_freed"].as_u64().unwrap() > 100);
    assert_eq!(disk_bytes(&dir), before, "dry run changes nothing");

    let r: Value = serde_json::from_slice(&ok(&dir, &["gc", "--grace", "0s", "--json"])).unwrap();
    // The fields the README documents, no more, no fewer.
    let mut keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "bytes_copied",
            "bytes_freed",
            "candidates",
            "chunks_freed",
            "compaction_notes",
            "disk_bytes_after",
            "disk_bytes_before",
            "dry_run",
            "grace_secs",
            "missing_children",
            "nodes_freed",
            "objects_freed",
            "orphan_files",
            "records_copied",
            "released_holds",
            "segments_compacted",
            "segments_removed",
            "skipped_in_use",
            "skipped_referenced",
            "skipped_young",
            "stripe_refusals",
            "unreadable_nodes",
        ]
    );
    assert_eq!(r["chunks_freed"], dry["chunks_freed"]);
    assert!(r["bytes_freed"].as_u64().unwrap() > 1_100_000);
    assert!(r["segments_compacted"].as_u64().unwrap() >= 1, "{r}");
    let after = disk_bytes(&dir);
    assert!(
        after + 1_000_000 < before,
        "disk usage drops: {before} -> {after}"
    );
    assert_eq!(r["disk_bytes_after"].as_u64().unwrap(), after);

    assert!(ok(&dir, &["blob", "get", &rb]) == b);
    // A's unique objects are gone, its tree's root with them: the store no longer holds A
    // (not found, exit 1), though B still holds the chunks they share.
    let out = run(&dir, &["blob", "get", &ra]);
    assert_eq!(out.status.code(), Some(1), "A is gone: {out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("blob {ra} is not in the store")),
        "{out:?}"
    );
    ok(&dir, &["fsck", "--read-data"]);

    // Text output names what happened.
    let text = ok_text(&dir, &["gc", "--grace", "0s"]);
    assert!(text.contains("freed 0 objects"), "{text}");
}
