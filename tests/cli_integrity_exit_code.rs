//! A corrupted chunk makes `blob get`/`blob cat` exit 3 with one error line, and `get -o` leaves
//! no partial output file.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::io::{Seek, SeekFrom, Write};

use common::*;
use net_mesh_engine::{BlobRef, Store, StoreConfig};
use net_mesh_segments::codec::RECORD_HEADER_LEN;
use net_mesh_segments::segment_file_name;

#[test]
fn corrupted_chunk_exits_3_and_writes_no_unverified_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let data = random_bytes(64 * 1024, 8);
    let file = write_file(tmp.path(), "in.bin", &data);
    let r = ok_text(
        &dir,
        &[
            "blob",
            "put",
            "--chunking",
            "fixed:4096",
            file.to_str().unwrap(),
        ],
    );
    // Corrupt the 3rd chunk on disk.
    {
        let store = Store::open(&dir, StoreConfig::default()).unwrap();
        let BlobRef::Manifest { chunks, .. } = BlobRef::from_text(&r).unwrap() else {
            panic!()
        };
        let e = store
            .reader()
            .unwrap()
            .object(&chunks[2].hash)
            .unwrap()
            .unwrap();
        let path = dir.join("segments").join(segment_file_name(e.loc.segment));
        let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        f.seek(SeekFrom::Start(
            e.loc.offset + RECORD_HEADER_LEN as u64 + 10,
        ))
        .unwrap();
        f.write_all(&[!data[2 * 4096 + 10]]).unwrap();
    }
    let out = run(&dir, &["blob", "get", &r]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        out.stdout,
        data[..2 * 4096],
        "only verified chunks before the bad one"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("hash mismatch") && stderr.lines().count() == 1,
        "{stderr}"
    );

    let target = tmp.path().join("out.bin");
    let out = run(&dir, &["blob", "get", &r, "-o", target.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        !target.exists(),
        "a failed get must not leave a partial file"
    );

    let out = run(&dir, &["blob", "cat", &r, "--range", "9000..9100"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(out.stdout.is_empty());
    // Ranges that avoid the damage still read.
    assert_eq!(
        ok(&dir, &["blob", "cat", &r, "--range", "100..8000"]),
        data[100..8000]
    );
}
