//! `blob get REF -o DIR` where DIR is a directory fails at once (exit 1, `DIR is a directory,
//! not a file`), before a byte of the blob is read, locally and through `--node` alike: the
//! blob here has a corrupt chunk, which a read would report (exit 3).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::node::*;
use common::*;

#[test]
fn blob_get_output_file_that_is_a_directory_is_refused_before_anything_is_read() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let data = random_bytes(64 * 1024, 91);
    let file = write_file(tmp.path(), "in.bin", &data);
    let blob = ok_text(
        &dir,
        &[
            "blob",
            "put",
            "--chunking",
            "fixed:4096",
            file.to_str().unwrap(),
        ],
    );
    corrupt_stored_bytes(&dir, &data[3 * 4096..3 * 4096 + 64]);
    let out_dir = tmp.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let into_dir = ["blob", "get", &blob, "-o", out_dir.to_str().unwrap()];

    // A read does reach the damage.
    assert_eq!(run(&dir, &["blob", "get", &blob]).status.code(), Some(3));
    let local = run(&dir, &into_dir);
    let node = ServedNode::start(&dir, Serve::default());
    let client = Client::node_admin(&dir);
    let remote = client.run(&node.addr, &into_dir);
    for (side, out) in [("local", local), ("node", remote)] {
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{side}: {err}");
        assert_eq!(
            err.trim(),
            format!(
                "net-mesh: error: {} is a directory, not a file",
                out_dir.display()
            ),
            "{side}"
        );
        assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 0, "{side}");
    }
}
