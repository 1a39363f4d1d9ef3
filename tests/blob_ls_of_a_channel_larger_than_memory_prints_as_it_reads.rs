//! `blob ls` of a channel whose pin rows hold more than the memory it may use: 420 pins of
//! Manifest refs of ~65,000 chunk refs each (2.6 MB a row, 1.1 GB of rows; one stored chunk,
//! repeated). Locally and through `--node` the command runs in 1 GiB of address space and
//! prints every pin, and the node's peak resident memory stays far below the rows' total.
//! (Both sides collected the whole listing before printing: the client ran out of its 1 GiB
//! and the node held every row at once; and redb's default 1 GiB page cache kept what a walk
//! read.) `--json` prints the same rows, locally and remotely alike, checked on a channel of
//! a few such pins (encoding 1.1 GB of refs as text takes minutes in a debug build). `status`
//! counts the pins without reading them, and `blob stat ID_PREFIX` reads only the rows with
//! that prefix (both decoded every pin, locally and on the node).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::process::Command;

use common::node::*;
use common::*;
use net_mesh_engine::codec::{BlobRef, ChunkRef, ChunkRole, Encoding, chunk_id};
use net_mesh_engine::index::blob_id;
use net_mesh_engine::{ObjectKind, Store, StoreConfig};

const PINS: usize = 420;
const REFS: usize = 65_536;
const FEW: usize = 3;

/// Stores one chunk in `dir` and pins in channel `default` `PINS` Manifest refs listing it
/// ~65,000 times each, and the first `FEW` of them in channel `few`; returns the pins' hex
/// ids, sorted (the order `blob ls` lists them in), of each channel.
fn store_huge_pins(dir: &std::path::Path) -> (Vec<String>, Vec<String>) {
    let store = Store::open(dir, StoreConfig::default()).unwrap();
    store.create_channel("few").unwrap();
    let data = random_bytes(100, 9);
    let chunk = ChunkRef {
        hash: chunk_id(&data),
        size: data.len() as u32,
        role: ChunkRole::Data,
    };
    let mut importer = store.importer().unwrap();
    importer
        .import(ObjectKind::Chunk, &chunk.hash, &data)
        .unwrap();
    importer.commit().unwrap();
    drop(importer);
    let (mut ids, mut few) = (Vec::new(), Vec::new());
    for i in 0..PINS {
        // A distinct count per pin, so each ref (and id) differs.
        let count = REFS - i;
        let manifest = BlobRef::Manifest {
            encoding: Encoding::Plain,
            chunks: vec![chunk; count],
            size: (count * data.len()) as u64,
        };
        store.pin(&manifest, &format!("m{i}")).unwrap();
        let id: String = blob_id(&manifest)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if i < FEW {
            store.pin_in("few", &manifest, &format!("m{i}")).unwrap();
            few.push(id.clone());
        }
        ids.push(id);
    }
    ids.sort();
    few.sort();
    (ids, few)
}

/// Runs `command` in 1 GiB of address space; returns its stdout once it succeeded.
fn run_limited(command: &Command) -> String {
    let out = in_one_gib(command).output().unwrap();
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn check_text(out: &str, ids: &[String]) {
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), ids.len());
    for (line, id) in lines.iter().zip(ids) {
        assert!(
            line.starts_with(&format!("{}  manifest", &id[..16])),
            "{line}"
        );
    }
}

fn check_json(out: &str, ids: &[String]) {
    let rows: Vec<serde_json::Value> = serde_json::from_str(out).unwrap();
    let listed: Vec<&str> = rows
        .iter()
        .map(|r| r["blob_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ids.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(rows.iter().all(|r| r["kind"] == "manifest"));
}

/// The process's peak resident set (`VmHWM`), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

#[test]
fn blob_ls_of_a_channel_larger_than_memory_prints_as_it_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let (ids, few) = store_huge_pins(&dir);
    let json_args = ["blob", "--channel", "few", "ls", "--json"];

    let mut local = cmd(&dir);
    local.args(["blob", "ls"]);
    check_text(&run_limited(&local), &ids);
    let mut local = cmd(&dir);
    local.args(json_args);
    let local_json = run_limited(&local);
    check_json(&local_json, &few);

    // `status` counts the pin rows without reading them; a blob named by an id prefix is
    // found by reading only the rows with that prefix.
    let mut local = cmd(&dir);
    local.args(["blob", "stat", &ids[7][..12], "--json"]);
    let stat: serde_json::Value = serde_json::from_str(&run_limited(&local)).unwrap();
    assert_eq!(stat["kind"], "manifest");
    let mut local = cmd(&dir);
    local.args(["status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&run_limited(&local)).unwrap();
    assert_eq!(status["blob_count"], (PINS + FEW) as u64);

    let node = ServedNode::start(&dir, Serve::default());
    let client = Client::node_admin(&dir);
    let mut remote = client.cmd(&node.addr);
    remote.args(["blob", "ls"]);
    check_text(&run_limited(&remote), &ids);
    let mut remote = client.cmd(&node.addr);
    remote.args(json_args);
    assert_eq!(run_limited(&remote), local_json);
    let mut remote = client.cmd(&node.addr);
    remote.args(["blob", "stat", &ids[7][..12], "--json"]);
    let remote_stat: serde_json::Value = serde_json::from_str(&run_limited(&remote)).unwrap();
    assert_eq!(remote_stat, stat);
    let status = client.json(&node.addr, &["status", "--json"]);
    assert_eq!(status["blob_count"], (PINS + FEW) as u64);
    // The rows total 1.1 GB; the node held a few at a time.
    let peak = peak_rss(node.child.id());
    assert!(peak < 256 << 20, "node peak RSS {} MiB", peak >> 20);
    assert!(node.stop().success());
}
