//! Helpers shared by the integration tests: run the real `net-mesh` binary against a temp
//! data dir and make deterministic pseudo-random inputs.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub mod crash;
pub mod damage;
pub mod node;
pub mod replicated;
pub mod workload;

/// Path of the `net-mesh` binary cargo built for these tests.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_net-mesh"))
}

/// A `net-mesh` command with `--data-dir dir`, no inherited data-dir env.
pub fn cmd(dir: &Path) -> Command {
    let mut c = Command::new(bin());
    c.arg("--data-dir")
        .arg(dir)
        .env_remove("NET_MESH_DATA_DIR")
        .env_remove("NET_MESH_FAILPOINT");
    c
}

/// `command` (a `net-mesh` command line) to be run in 1 GiB of address space (`ulimit -v`,
/// through `sh`), stdin closed.
pub fn in_one_gib(command: &Command) -> Command {
    let program = command.get_program().to_str().unwrap().to_string();
    let args: Vec<String> = command
        .get_args()
        .map(|a| a.to_str().unwrap().to_string())
        .collect();
    let mut limited = Command::new("sh");
    limited
        .arg("-c")
        .arg("ulimit -v 1048576 && exec \"$@\"")
        .arg("sh")
        .arg(program)
        .args(args)
        .env_remove("NET_MESH_DATA_DIR")
        // The limit is on address space: keep glibc from reserving 64 MiB per thread's arena
        // on a machine with many cores.
        .env("MALLOC_ARENA_MAX", "2")
        .stdin(Stdio::null());
    limited
}

/// Runs `net-mesh --data-dir dir ARGS…` and returns its output.
pub fn run(dir: &Path, args: &[&str]) -> Output {
    cmd(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("spawn net-mesh")
}

/// Runs and asserts success; returns stdout.
pub fn ok(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = run(dir, args);
    assert!(
        out.status.success(),
        "net-mesh {args:?} failed ({:?}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Runs and asserts success; returns stdout as a trimmed string.
pub fn ok_text(dir: &Path, args: &[&str]) -> String {
    String::from_utf8(ok(dir, args)).unwrap().trim().to_string()
}

/// Deterministic pseudo-random bytes (xorshift64*), fast enough for hundreds of MiB.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Writes `data` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

/// Flips a byte of the `BlobRef` in the pin row of blob `blob_id` (hex) pinned as `name` in
/// the default channel of the store in `dir` (docs/FORMAT.md §3.4: 11 + name, then the ref),
/// so that the row no longer decodes.
pub fn damage_pin_ref(dir: &Path, blob_id: &str, name: &str) {
    use redb::ReadableTable;
    const PINS: redb::TableDefinition<(&str, &[u8; 32]), &[u8]> =
        redb::TableDefinition::new("pins_v2");
    let key: [u8; 32] = (0..32)
        .map(|i| u8::from_str_radix(&blob_id[2 * i..2 * i + 2], 16).unwrap())
        .collect::<Vec<_>>()
        .try_into()
        .unwrap();
    let db = redb::Database::open(dir.join("index.redb")).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut t = txn.open_table(PINS).unwrap();
        let mut row = t.get(("default", &key)).unwrap().unwrap().value().to_vec();
        row[11 + name.len()] ^= 0xff;
        t.insert(("default", &key), row.as_slice()).unwrap();
    }
    txn.commit().unwrap();
}
