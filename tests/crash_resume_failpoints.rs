//! A resumable upload killed (SIGKILL) at every named failpoint — after a segment write, after
//! fdatasync, inside and after the index commit, mid-checkpoint, before the finalizing commit —
//! resumes to the uninterrupted upload's ref, and the blob committed before it still verifies.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::crash::*;
use common::*;

const POINTS: &[&str] = &[
    "segment.after_write:3",
    "segment.after_sync:2",
    "engine.after_segment_append:5",
    "engine.after_segment_sync:2",
    "engine.index_commit.before:1",
    "engine.index_commit.before:3",
    "engine.index_commit.after:1",
    "engine.index_commit.after:3",
    "staging.checkpoint.in_txn:1",
    "staging.checkpoint.in_txn:2",
    "staging.checkpoint.before_commit:2",
    "staging.checkpoint.after_commit:3",
    "staging.finalize.before_commit",
];

#[test]
fn kill_at_every_failpoint_then_resume_yields_the_uninterrupted_blob() {
    let tmp = tempfile::tempdir().unwrap();
    let earlier = random_bytes(1 << 20, 7);
    let earlier_file = write_file(tmp.path(), "earlier.bin", &earlier);
    let input = random_bytes(6 << 20, 8);
    let file = write_file(tmp.path(), "input.bin", &input);
    let want = plain_ref(&tmp.path().join("scratch"), &file);
    for (i, point) in POINTS.iter().enumerate() {
        let dir = tmp.path().join(format!("store-{i}"));
        let earlier_ref = ok_text(
            &dir,
            &[
                "blob",
                "put",
                "--chunking",
                CHUNKING,
                earlier_file.to_str().unwrap(),
            ],
        );
        let up = Upload {
            dir: &dir,
            file: &file,
            id: "fp",
            interval: "256K",
        };
        assert!(
            matches!(run_at_failpoint(&up, point), Run::Killed),
            "{point}: the writer should reach the failpoint and die"
        );
        // Once more with the point armed (a kill during resume), then to the end.
        let got = match run_at_failpoint(&up, point) {
            Run::Killed => up.finish(),
            Run::Finished(r) => r,
        };
        assert_eq!(got, want, "{point}");
        assert!(ok(&dir, &["blob", "get", &got]) == input, "{point}");
        assert!(
            ok(&dir, &["blob", "get", &earlier_ref]) == earlier,
            "{point}"
        );
        assert_eq!(
            ok_text(&dir, &["staging", "list", "--json"]),
            "[]",
            "{point}"
        );
        let (stored, files) = stored_bytes(&dir);
        let unique = (input.len() + earlier.len()) as u64;
        let allowed = unique + framing_overhead(unique) + (256 << 10) * files as u64;
        assert!(stored <= allowed, "{point}: stored {stored} > {allowed}");
    }
}
