//! `blob put` prints a ref of at most 2048 characters for a blob far past the Manifest
//! cross-over, plain and erasure-coded, and the ref reads the bytes back.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::*;

#[test]
fn put_prints_a_short_ref_for_a_blob_of_many_chunks() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    // 8 MiB in 16 KiB chunks: 512 data chunks (plain), 512 + 256 parity refs (RS 4,6).
    let data = random_bytes(8 << 20, 9);
    let file = write_file(tmp.path(), "big.bin", &data);
    let file = file.to_str().unwrap();
    for extra in [&[][..], &["--rs", "4,6"][..]] {
        let mut args = vec!["blob", "put", "--json", "--chunking", "fixed:16K"];
        args.extend_from_slice(extra);
        args.push(file);
        let put: serde_json::Value = serde_json::from_slice(&ok(&dir, &args)).unwrap();
        let r = put["blob_ref"].as_str().unwrap().to_string();
        assert!(r.len() <= 2048, "{extra:?}: {} characters", r.len());
        assert_eq!(put["kind"], "tree", "{extra:?}");
        assert!(ok(&dir, &["blob", "get", &r]) == data, "{extra:?}");
        // The plain text output is the same short ref.
        let mut args = vec!["blob", "put", "--chunking", "fixed:16K"];
        args.extend_from_slice(extra);
        args.push(file);
        assert_eq!(ok_text(&dir, &args), r);
    }
    // Just inside the cross-over: 30 chunks inline as a Manifest, still short.
    let file = write_file(tmp.path(), "thirty.bin", &data[..30 * 16 * 1024]);
    let put: serde_json::Value = serde_json::from_slice(&ok(
        &dir,
        &[
            "blob",
            "put",
            "--json",
            "--chunking",
            "fixed:16K",
            file.to_str().unwrap(),
        ],
    ))
    .unwrap();
    assert_eq!(put["kind"], "manifest");
    assert!(put["blob_ref"].as_str().unwrap().len() <= 2048);
}
