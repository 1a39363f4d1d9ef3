//! `blob chunks` of a blob whose tree lists one leaf 2^32 times through two nodes of 65,536
//! children (4 billion rows from 4 stored objects) prints its rows as the tree is walked,
//! locally and through `--node`, in text and `--json`, within 1 GiB of address space: the
//! first rows come at once, and a reader that stops reading (`| head`) ends the command.
//! (Both collected every row before printing the first: no output, memory without bound.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::node::*;
use common::*;
use net_mesh_engine::codec::{
    BlobRef, ChildRef, ChunkRef, ChunkRole, Encoding, InternalNode, LeafNode, chunk_id,
    internal_id, leaf_id,
};
use net_mesh_engine::{ObjectKind, Store, StoreConfig};

/// A hang guard, not a timing.
const STEP: Duration = Duration::from_secs(60);

/// Stores the 4-object tree in `dir` and pins it; returns its ref's text and its chunk.
fn store_huge_tree(dir: &std::path::Path) -> (String, String) {
    let store = Store::open(dir, StoreConfig::default()).unwrap();
    let data = random_bytes(3_000, 5);
    let chunk = chunk_id(&data);
    let mut importer = store.importer().unwrap();
    importer.import(ObjectKind::Chunk, &chunk, &data).unwrap();
    let leaf = LeafNode {
        encoding: Encoding::Plain,
        chunks: vec![ChunkRef {
            hash: chunk,
            size: data.len() as u32,
            role: ChunkRole::Data,
        }],
    }
    .encode();
    let mut below = (leaf_id(&leaf), data.len() as u64);
    importer
        .import(ObjectKind::LeafNode, &below.0, &leaf)
        .unwrap();
    for level in 1..=2u8 {
        let node = InternalNode {
            level,
            children: vec![
                ChildRef {
                    hash: below.0,
                    covered: below.1,
                };
                65_536
            ],
        }
        .encode();
        below = (internal_id(&node), below.1 * 65_536);
        importer
            .import(ObjectKind::InternalNode, &below.0, &node)
            .unwrap();
    }
    importer.commit().unwrap();
    drop(importer);
    let huge = BlobRef::Tree {
        encoding: Encoding::Plain,
        root_hash: below.0,
        total_size: below.1,
        depth: 3,
    };
    store.pin(&huge, "huge").unwrap();
    let hex: String = chunk.iter().map(|b| format!("{b:02x}")).collect();
    (huge.to_text(), hex)
}

/// Runs `command` (a `net-mesh` command line) in 1 GiB of address space, reads the first
/// 64 KiB it prints, then closes the pipe; returns what it read once the command ended.
fn first_output(command: &Command) -> String {
    let mut child = in_one_gib(command)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut first = vec![0u8; 64 * 1024];
        let mut got = 0;
        while got < first.len() {
            match stdout.read(&mut first[got..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
        first.truncate(got);
        // Dropping `stdout` closes the pipe: the command's next write fails.
        let _ = tx.send(first);
    });
    let first = match rx.recv_timeout(STEP) {
        Ok(first) => first,
        Err(_) => {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "no 64 KiB of output within {STEP:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    };
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(child.wait_with_output());
    });
    let out = done_rx
        .recv_timeout(STEP)
        .expect("the command went on after its reader left")
        .unwrap();
    // It ends on the closed pipe (a write error), never on its own: 4 billion rows remain.
    assert!(!out.status.success(), "{:?}", out.status);
    String::from_utf8(first).unwrap()
}

fn check_text(out: &str, chunk: &str) {
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.len() > 100, "{} lines", lines.len());
    for line in &lines[..lines.len() - 1] {
        assert!(line.starts_with(chunk), "{line}");
        assert!(line.ends_with("  3000  data    -"), "{line:?}");
    }
}

fn check_json(out: &str, chunk: &str) {
    let row = format!("{{\"hash\":\"{chunk}\",\"role\":\"data\",\"size\":3000,\"stripe\":null}}");
    assert!(
        out.starts_with(&format!("[{row},{row},")),
        "{}",
        &out[..200]
    );
    assert!(!out.contains('\n'), "one line");
}

#[test]
fn blob_chunks_of_a_blob_listing_billions_prints_as_it_walks() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let (huge, chunk) = store_huge_tree(&dir);

    let mut local = cmd(&dir);
    local.args(["blob", "chunks", &huge]);
    check_text(&first_output(&local), &chunk);
    local.arg("--json");
    check_json(&first_output(&local), &chunk);

    let node = ServedNode::start(&dir, Serve::default());
    let client = Client::node_admin(&dir);
    let mut remote = client.cmd(&node.addr);
    remote.args(["blob", "chunks", &huge]);
    check_text(&first_output(&remote), &chunk);
    remote.arg("--json");
    check_json(&first_output(&remote), &chunk);
    // The node stopped each walk with its caller: it still answers.
    let stat = client.json(&node.addr, &["blob", "stat", &huge, "--json"]);
    assert_eq!(stat["chunks"], 1u64 << 32);
    assert!(node.stop().success());
}
