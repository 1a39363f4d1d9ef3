//! The crash-recovery suite: resumable uploads killed with a real SIGKILL at random moments
//! and resumed with `staging resume` until done. Each finished blob equals the input and has
//! the uninterrupted upload's ref; every blob committed earlier still reads back verified; the
//! store holds at most one checkpoint interval (plus framing) more than the unique input.
//!
//! CI runs ~30 kills; the soak runs `NET_MESH_SOAK_KILLS` kills (see README):
//! `NET_MESH_SOAK_KILLS=1000 cargo test -p net-mesh-cli --test crash_resume_random_kills -- --nocapture`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::time::{Duration, Instant};

use common::crash::*;
use common::*;

const INTERVAL: &str = "512K";
const INTERVAL_BYTES: u64 = 512 * 1024;

#[test]
fn random_sigkills_then_resume_yield_the_uninterrupted_blob() {
    let target_kills: u64 = std::env::var("NET_MESH_SOAK_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let mib: usize = std::env::var("NET_MESH_SOAK_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    let mut rng = Rng::from_env();
    let tmp = tempfile::tempdir().unwrap();
    let scratch = tmp.path().join("scratch");
    let first = random_bytes(3 << 20, 1);
    let first_file = write_file(tmp.path(), "first.bin", &first);
    // A fresh store every few rounds keeps a long soak's disk use bounded (no GC here).
    const ROUNDS_PER_STORE: u64 = 8;
    let mut dir = tmp.path().join("store-0");
    let mut unique = 0u64;
    let mut committed: Vec<(String, Vec<u8>)> = Vec::new();
    let mut kills = 0u64;
    let mut round = 0u64;
    let mut budget_ms = 0u64;
    while kills < target_kills {
        round += 1;
        if (round - 1).is_multiple_of(ROUNDS_PER_STORE) {
            if round > 1 {
                check_store(&dir, unique);
                std::fs::remove_dir_all(&dir).unwrap();
            }
            dir = tmp.path().join(format!("store-{round}"));
            // A blob committed before any kill in this store.
            let first_ref = ok_text(
                &dir,
                &[
                    "blob",
                    "put",
                    "--chunking",
                    CHUNKING,
                    first_file.to_str().unwrap(),
                ],
            );
            unique = first.len() as u64;
            committed = vec![(first_ref, first.clone())];
        }
        let input = random_bytes(mib << 20, 100 + round);
        let file = write_file(tmp.path(), &format!("in-{round}.bin"), &input);
        let want = plain_ref(&scratch, &file);
        let id = format!("round-{round}");
        let up = Upload {
            dir: &dir,
            file: &file,
            id: &id,
            interval: INTERVAL,
        };
        if budget_ms == 0 {
            // Time one uninterrupted resumable run of this size, to spread kill delays over it.
            let probe_dir = tmp.path().join("probe");
            let t = Instant::now();
            Upload {
                dir: &probe_dir,
                ..up
            }
            .finish();
            budget_ms = (t.elapsed().as_millis() as u64).max(50);
            std::fs::remove_dir_all(&probe_dir).unwrap();
            eprintln!("uninterrupted resumable upload: {budget_ms} ms");
        }
        let got = loop {
            if kills >= target_kills {
                break up.finish();
            }
            // Mostly early in the remaining work, so a round sees several kills; sometimes late.
            let span = if rng.below(4) == 0 {
                budget_ms
            } else {
                budget_ms / 3
            };
            let delay = Duration::from_millis(rng.below(span + 1));
            match run_and_kill(&up, delay) {
                Run::Killed => kills += 1,
                Run::Finished(r) => break r,
            }
        };
        assert_eq!(
            got, want,
            "round {round}: ref differs from the uninterrupted upload"
        );
        assert!(ok(&dir, &["blob", "get", &got]) == input, "round {round}");
        unique += input.len() as u64;
        std::fs::remove_file(&file).unwrap();
        committed.push((got, input));
        // Every earlier blob still verifies.
        for (r, data) in &committed {
            assert!(ok(&dir, &["blob", "get", r]) == *data);
        }
        let staged = ok_text(&dir, &["staging", "list", "--json"]);
        assert_eq!(
            staged, "[]",
            "round {round}: upload left a checkpoint behind"
        );
        eprintln!("round {round}: done, {kills} kills so far");
    }
    check_store(&dir, unique);
    eprintln!("kills {kills}, rounds {round}: every blob matched the uninterrupted ref");
}

/// Stored bytes exceed the unique input by at most framing plus one checkpoint interval per
/// segment file (an uncommitted tail left by a kill).
fn check_store(dir: &std::path::Path, unique: u64) {
    let (stored, files) = stored_bytes(dir);
    let allowed = unique + framing_overhead(unique) + INTERVAL_BYTES * files as u64 + (1 << 20);
    eprintln!(
        "unique input {unique} B, stored {stored} B in {files} segment files (allowed {allowed})"
    );
    assert!(stored <= allowed, "stored {stored} > allowed {allowed}");
}
