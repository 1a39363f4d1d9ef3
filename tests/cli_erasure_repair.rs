//! `blob put --rs K,N` stores an erasure-coded blob that `blob get` reads back exactly with a
//! chunk corrupted; `repair` rebuilds it (a second repair finds nothing); a stripe with more
//! losses than parity makes `get` and `repair` exit 3 naming the stripe.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use common::*;
use net_mesh_engine::codec::Hash;
use net_mesh_engine::{BlobRef, ChunkRole, Store, StoreConfig};
use net_mesh_segments::codec::RECORD_HEADER_LEN;
use net_mesh_segments::segment_file_name;

/// Flips one payload byte of each object (store opened and closed here).
fn corrupt(dir: &Path, hashes: &[Hash]) {
    let store = Store::open(dir, StoreConfig::default()).unwrap();
    for h in hashes {
        let e = store.reader().unwrap().object(h).unwrap().unwrap();
        let path = dir.join("segments").join(segment_file_name(e.loc.segment));
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap();
        let pos = e.loc.offset + RECORD_HEADER_LEN as u64 + 7;
        let mut b = [0u8; 1];
        f.seek(SeekFrom::Start(pos)).unwrap();
        f.read_exact(&mut b).unwrap();
        f.seek(SeekFrom::Start(pos)).unwrap();
        f.write_all(&[b[0] ^ 0x20]).unwrap();
    }
}

fn json(dir: &Path, args: &[&str]) -> serde_json::Value {
    serde_json::from_slice(&ok(dir, args)).unwrap()
}

#[test]
fn put_rs_get_through_loss_and_repair_to_healthy() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let data = random_bytes(10 * 4096 + 1000, 21);
    let file = write_file(tmp.path(), "in.bin", &data);
    let put = json(
        &dir,
        &[
            "blob",
            "put",
            "--rs",
            "2,3",
            "--chunking",
            "fixed:4096",
            "--json",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(put["encoding"], "rs:2,3");
    assert_eq!(put["kind"], "manifest");
    let r = put["blob_ref"].as_str().unwrap().to_string();
    let stat = json(&dir, &["blob", "stat", "--json", &r]);
    assert_eq!(stat["encoding"], "rs:2,3");
    let BlobRef::Manifest { chunks, .. } = BlobRef::from_text(&r).unwrap() else {
        panic!()
    };
    // 11 data chunks: 5 full stripes and a short one, 3 refs each except the last (2).
    assert_eq!(chunks.len(), 6 * 2 + 5);
    assert_eq!(chunks[5].role, ChunkRole::Parity { stripe_index: 1 });

    corrupt(&dir, &[chunks[3].hash]);
    assert!(
        ok(&dir, &["blob", "get", &r]) == data,
        "read rebuilds the chunk"
    );
    let rep = json(&dir, &["repair", "--json", &r]);
    assert_eq!(rep["stripes_walked"], 6);
    assert_eq!(rep["repaired"], 1);
    assert_eq!(rep["chunks_rebuilt"], 1);
    assert_eq!(rep["unrecoverable"], 0);
    let rep = json(&dir, &["repair", "--json", &r]);
    assert_eq!(rep["repaired"], 0);
    assert_eq!(rep["healthy"], 6);

    // Stripe 2 loses a data chunk and its parity: beyond 2+1.
    corrupt(&dir, &[chunks[6].hash, chunks[8].hash]);
    let out = run(&dir, &["blob", "get", &r]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("stripe 2"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let out = run(&dir, &["repair", "--json", &r]);
    assert_eq!(out.status.code(), Some(3));
    let rep: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rep["unrecoverable"], 1);
    assert_eq!(rep["unrecoverable_stripes"][0], 2);
}

#[test]
fn bad_rs_parameters_are_usage_errors_and_plain_blobs_cannot_be_repaired() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let file = write_file(tmp.path(), "in.bin", b"some bytes");
    for bad in ["1,3", "3,3", "4", "x,y", "2,300"] {
        let out = run(&dir, &["blob", "put", "--rs", bad, file.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "--rs {bad}");
    }
    let r = ok_text(&dir, &["blob", "put", file.to_str().unwrap()]);
    let out = run(&dir, &["repair", &r]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "repairing a plain blob is a usage error"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("not erasure-coded"));
}
