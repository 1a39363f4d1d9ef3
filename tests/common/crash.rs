//! Shared driver for the crash-and-resume suites: uploads with `blob put --resumable`, kills
//! the writer with a real SIGKILL (after a random delay, or at an armed failpoint), resumes
//! with `staging resume` until the upload finishes, then checks the store.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::*;

pub const CHUNKING: &str = "cdc:16K,64K,256K";
pub const MIN_CHUNK: u64 = 16 * 1024;

/// xorshift64* for kill delays (seeded; the seed is printed so a failure can be replayed).
pub struct Rng(pub u64);

impl Rng {
    pub fn from_env() -> Rng {
        let seed = std::env::var("NET_MESH_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("crash seed: NET_MESH_CRASH_SEED={seed}");
        Rng(seed | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// One live resumable upload of `file` into `dir` under `id`.
#[derive(Clone, Copy)]
pub struct Upload<'a> {
    pub dir: &'a Path,
    pub file: &'a Path,
    pub id: &'a str,
    pub interval: &'a str,
}

impl Upload<'_> {
    /// True while the store holds a checkpoint for the upload.
    pub fn staged(&self) -> bool {
        let out = ok(self.dir, &["staging", "list", "--json"]);
        let rows: serde_json::Value = serde_json::from_slice(&out).unwrap();
        rows.as_array()
            .unwrap()
            .iter()
            .any(|r| r["staging_id"] == self.id)
    }

    /// True when the upload already finished (its finalize committed; the writer may have been
    /// killed before it printed the ref): `staging resume` then answers with the ref.
    pub fn finished(&self) -> bool {
        !self.staged()
            && run(
                self.dir,
                &["staging", "resume", self.id, self.file.to_str().unwrap()],
            )
            .status
            .success()
    }

    /// Starts the writer: `blob put --resumable` when the upload was never begun, else
    /// `staging resume` (which also answers for an upload that already finished).
    pub fn spawn(&self, failpoint: Option<&str>) -> Child {
        let mut c = cmd(self.dir);
        if self.staged() || self.finished() {
            c.args(["staging", "resume", self.id])
                .arg(self.file)
                .args(["--checkpoint-interval", self.interval]);
        } else {
            c.args(["blob", "put", "--resumable", "--staging-id", self.id])
                .args([
                    "--checkpoint-interval",
                    self.interval,
                    "--chunking",
                    CHUNKING,
                ])
                .arg(self.file);
        }
        if let Some(fp) = failpoint {
            c.env("NET_MESH_FAILPOINT", fp);
        }
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Runs the writer to the end; returns the printed blob ref.
    pub fn finish(&self) -> String {
        let out = self.spawn(None).wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            self.id,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }
}

/// Outcome of one writer run that may be killed.
pub enum Run {
    Killed,
    Finished(String),
}

/// Runs the writer and SIGKILLs it after `delay` unless it finished first.
pub fn run_and_kill(up: &Upload<'_>, delay: Duration) -> Run {
    let mut child = up.spawn(None);
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            assert!(
                status.success(),
                "writer failed ({status:?}): {}",
                String::from_utf8_lossy(&out.stderr)
            );
            return Run::Finished(String::from_utf8(out.stdout).unwrap().trim().to_string());
        }
        if start.elapsed() >= delay {
            child.kill().unwrap(); // SIGKILL
            let status = child.wait().unwrap();
            if status.signal() == Some(9) {
                return Run::Killed;
            }
            // It finished between try_wait and kill.
            let out = child.wait_with_output().unwrap();
            assert!(status.success(), "{status:?}");
            return Run::Finished(String::from_utf8(out.stdout).unwrap().trim().to_string());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Runs the writer with `failpoint` armed; returns whether it died by SIGKILL (else it
/// finished, and its ref is returned).
pub fn run_at_failpoint(up: &Upload<'_>, failpoint: &str) -> Run {
    let out = up.spawn(Some(failpoint)).wait_with_output().unwrap();
    if out.status.signal() == Some(9) {
        return Run::Killed;
    }
    assert!(
        out.status.success(),
        "{failpoint}: writer failed ({:?}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Run::Finished(String::from_utf8(out.stdout).unwrap().trim().to_string())
}

/// Total bytes of segment files in the store, and how many there are.
pub fn stored_bytes(dir: &Path) -> (u64, usize) {
    let mut total = 0;
    let mut files = 0;
    for e in std::fs::read_dir(dir.join("segments")).unwrap() {
        let e = e.unwrap();
        total += e.metadata().unwrap().len();
        files += 1;
    }
    (total, files)
}

/// The ref an uninterrupted plain `blob put` gives `file` (in a scratch store).
pub fn plain_ref(scratch: &Path, file: &Path) -> String {
    ok_text(
        scratch,
        &[
            "blob",
            "put",
            "--chunking",
            CHUNKING,
            file.to_str().unwrap(),
        ],
    )
}

/// Upper bound on record-framing and tree-node overhead for `bytes` of input.
pub fn framing_overhead(bytes: u64) -> u64 {
    // 52-byte record header per chunk (chunks are >= MIN_CHUNK except each blob's last),
    // a 41-byte ref per chunk in a manifest or leaf, plus segment file headers.
    (bytes / MIN_CHUNK + 64) * (52 + 41 + 40) + 64 * 1024
}
