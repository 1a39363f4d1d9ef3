//! `net-mesh fsck --repair` killed (SIGKILL via failpoints) before or after its index commit
//! leaves a store that a second `fsck --repair` brings to clean, with live blobs intact — the
//! chunk `chunk rm --force` dropped included, salvaged from an orphan copy of its segment.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::os::unix::process::ExitStatusExt;

use common::*;

#[test]
fn kill_during_repair_then_repair_again_is_clean() {
    for point in ["fsck.repair_commit.before", "fsck.repair_commit.after"] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        let a = random_bytes(150_000, 1);
        let b = random_bytes(150_000, 2);
        let fa = write_file(tmp.path(), "a.bin", &a);
        let fb = write_file(tmp.path(), "b.bin", &b);
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
        let rb = ok_text(
            &dir,
            &[
                "blob",
                "put",
                "--chunking",
                "cdc:1024,4096,16384",
                fb.to_str().unwrap(),
            ],
        );
        // Damage: a forced chunk loss in A (dropped entry + missing object) and an orphan file.
        let chunks: serde_json::Value =
            serde_json::from_slice(&ok(&dir, &["blob", "chunks", &ra, "--json"])).unwrap();
        let victim = chunks[2]["hash"].as_str().unwrap().to_string();
        ok(&dir, &["chunk", "rm", &victim, "--force"]);
        let seg = std::fs::read_dir(dir.join("segments"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        std::fs::copy(seg, dir.join("segments").join("seg-00000000000000bb.nms")).unwrap();
        assert_eq!(run(&dir, &["fsck"]).status.code(), Some(3));

        let out = cmd(&dir)
            .args(["fsck", "--repair"])
            .env("NET_MESH_FAILPOINT", point)
            .output()
            .unwrap();
        assert_eq!(out.status.signal(), Some(9), "{point}");
        assert!(ok(&dir, &["blob", "get", &rb]) == b, "{point}");

        assert_eq!(
            run(&dir, &["fsck", "--repair"]).status.code(),
            Some(3),
            "{point}: problems found"
        );
        // The orphan is a copy of the segment that holds A's chunk: repair salvaged the chunk
        // from it before removing it, so nothing remains and A reads back.
        let out = run(&dir, &["fsck", "--json"]);
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let kinds: Vec<&str> = report["problems"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["severity"] != "info")
            .map(|p| p["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, Vec::<&str>::new(), "{point}");
        assert!(
            !dir.join("segments")
                .join("seg-00000000000000bb.nms")
                .exists(),
            "{point}"
        );
        ok(&dir, &["fsck", "--read-data"]);
        assert!(ok(&dir, &["blob", "get", &ra]) == a, "{point}");
    }
}
