//! `net-mesh repair` killed (SIGKILL, via failpoints) between appending the rebuilt chunks and
//! committing their index entries leaves the store as it was: the blob still reads back through
//! its parity, and the next repair rebuilds and commits everything.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;

use common::*;
use net_mesh_engine::codec::Hash;
use net_mesh_engine::{BlobRef, Store, StoreConfig};
use net_mesh_segments::codec::RECORD_HEADER_LEN;
use net_mesh_segments::segment_file_name;

const POINTS: &[&str] = &[
    "engine.after_segment_sync",
    "engine.index_commit.before",
    "engine.index_commit.after",
];

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
        let pos = e.loc.offset + RECORD_HEADER_LEN as u64 + 3;
        let mut b = [0u8; 1];
        f.seek(SeekFrom::Start(pos)).unwrap();
        f.read_exact(&mut b).unwrap();
        f.seek(SeekFrom::Start(pos)).unwrap();
        f.write_all(&[b[0] ^ 0x01]).unwrap();
    }
}

#[test]
fn repair_killed_at_each_commit_step_loses_nothing_and_a_rerun_finishes() {
    for point in POINTS {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        let data = random_bytes(12 * 4096, 5);
        let file = write_file(tmp.path(), "in.bin", &data);
        let r = ok_text(
            &dir,
            &[
                "blob",
                "put",
                "--rs",
                "3,5",
                "--chunking",
                "fixed:4096",
                file.to_str().unwrap(),
            ],
        );
        let BlobRef::Manifest { chunks, .. } = BlobRef::from_text(&r).unwrap() else {
            panic!()
        };
        // Stripe 0 loses a data and a parity chunk, stripe 2 two data chunks.
        corrupt(
            &dir,
            &[
                chunks[1].hash,
                chunks[4].hash,
                chunks[10].hash,
                chunks[12].hash,
            ],
        );

        let out = cmd(&dir)
            .args(["repair", &r])
            .env("NET_MESH_FAILPOINT", point)
            .output()
            .unwrap();
        assert_eq!(
            out.status.signal(),
            Some(9),
            "{point}: repair should die by SIGKILL"
        );

        assert!(ok(&dir, &["blob", "get", &r]) == data, "{point}");
        let rep: serde_json::Value =
            serde_json::from_slice(&ok(&dir, &["repair", "--json", &r])).unwrap();
        let after_commit = *point == "engine.index_commit.after";
        let expected = if after_commit { 0 } else { 2 };
        assert_eq!(rep["repaired"], expected, "{point}: {rep}");
        assert_eq!(rep["unrecoverable"], 0, "{point}");
        let rep: serde_json::Value =
            serde_json::from_slice(&ok(&dir, &["repair", "--json", &r])).unwrap();
        assert_eq!(rep["repaired"], 0, "{point}");
        assert_eq!(rep["healthy"], rep["stripes_walked"], "{point}");
        assert!(ok(&dir, &["blob", "get", &r]) == data, "{point}");
    }
}
