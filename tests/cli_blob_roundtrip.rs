//! `net-mesh blob put` then `get` / `cat` / `stat` / `ls` / `rm` through the real binary.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::*;

const SMALL_CDC: &str = "cdc:1024,4096,16384";

#[test]
fn put_then_get_returns_the_same_bytes_for_edge_sizes_and_both_chunkings() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("store");
    for chunking in [SMALL_CDC, "fixed:4096"] {
        for len in [0usize, 1, 4095, 4096, 4097, 16383, 16384, 16385, 100_003] {
            let data = random_bytes(len, len as u64 + 1);
            let file = write_file(tmp.path(), "in.bin", &data);
            let r = ok_text(
                &data_dir,
                &[
                    "blob",
                    "put",
                    "--chunking",
                    chunking,
                    file.to_str().unwrap(),
                ],
            );
            assert!(r.starts_with("nm1"), "ref {r}");
            let got = ok(&data_dir, &["blob", "get", &r]);
            assert_eq!(got.len(), data.len(), "len {len} {chunking}");
            assert!(got == data, "bytes differ for len {len} {chunking}");
            let out = tmp.path().join("out.bin");
            ok(&data_dir, &["blob", "get", &r, "-o", out.to_str().unwrap()]);
            assert!(std::fs::read(&out).unwrap() == data);
        }
    }
}

#[test]
fn put_json_reports_shape_and_dedup() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("store");
    let data = random_bytes(300_000, 5);
    let file = write_file(tmp.path(), "in.bin", &data);
    let args = [
        "blob",
        "put",
        "--json",
        "--chunking",
        SMALL_CDC,
        file.to_str().unwrap(),
    ];
    let first: serde_json::Value = serde_json::from_slice(&ok(&data_dir, &args)).unwrap();
    // ~70 chunks: past the 30-ref Manifest cross-over, one leaf under a root.
    assert_eq!(first["kind"], "tree");
    assert_eq!(first["size"], 300_000);
    assert_eq!(first["depth"], 2);
    let chunks = first["chunks"].as_u64().unwrap();
    assert!(chunks > 30);
    assert_eq!(first["new_chunks"].as_u64().unwrap(), chunks);
    assert_eq!(first["new_bytes"], 300_000);
    let second: serde_json::Value = serde_json::from_slice(&ok(&data_dir, &args)).unwrap();
    assert_eq!(second["blob_ref"], first["blob_ref"]);
    assert_eq!(second["new_chunks"], 0, "re-put must store no new chunk");
    assert_eq!(second["new_bytes"], 0);
}

#[test]
fn deep_tree_via_cli_reads_back_with_stat_and_ranges() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("store");
    let data = random_bytes(200_000, 77);
    let file = write_file(tmp.path(), "in.bin", &data);
    let put: serde_json::Value = serde_json::from_slice(&ok(
        &data_dir,
        &[
            "blob",
            "put",
            "--json",
            "--chunking",
            "fixed:4096",
            "--leaf-fanout",
            "2",
            "--internal-fanout",
            "2",
            file.to_str().unwrap(),
        ],
    ))
    .unwrap();
    assert_eq!(put["kind"], "tree");
    assert!(put["depth"].as_u64().unwrap() >= 3);
    let r = put["blob_ref"].as_str().unwrap();
    let stat: serde_json::Value =
        serde_json::from_slice(&ok(&data_dir, &["blob", "stat", "--json", r])).unwrap();
    assert_eq!(stat["kind"], "tree");
    assert_eq!(stat["size"], 200_000);
    assert_eq!(stat["chunks"], 49);
    assert_eq!(stat["encoding"], "plain");
    for (a, b) in [
        (0usize, 1usize),
        (4095, 4097),
        (12_345, 150_000),
        (199_999, 200_000),
        (7, 7),
    ] {
        let got = ok(
            &data_dir,
            &["blob", "cat", r, "--range", &format!("{a}..{b}")],
        );
        assert!(got == data[a..b], "range {a}..{b}");
    }
    let bad = run(&data_dir, &["blob", "cat", r, "--range", "10..200001"]);
    assert_eq!(
        bad.status.code(),
        Some(2),
        "a range past the end is a usage error"
    );
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid"));
}

#[test]
fn ls_lists_pins_and_rm_unpins_by_id_prefix() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("store");
    let file = write_file(tmp.path(), "hello.txt", b"hello mesh");
    let r = ok_text(&data_dir, &["blob", "put", file.to_str().unwrap()]);
    let ls: serde_json::Value =
        serde_json::from_slice(&ok(&data_dir, &["blob", "ls", "--json"])).unwrap();
    let rows = ls.as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["name"], "hello.txt");
    assert_eq!(rows[0]["blob_ref"], r.as_str());
    let id = rows[0]["blob_id"].as_str().unwrap();
    assert_eq!(ok(&data_dir, &["blob", "get", &id[..12]]), b"hello mesh");
    ok(&data_dir, &["blob", "rm", &id[..12]]);
    let ls: serde_json::Value =
        serde_json::from_slice(&ok(&data_dir, &["blob", "ls", "--json"])).unwrap();
    assert!(ls.as_array().unwrap().is_empty());
    let again = run(&data_dir, &["blob", "rm", &r]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("not pinned"));
}

#[test]
fn usage_errors_and_malformed_refs_exit_2_and_unknown_blobs_exit_1() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run(tmp.path(), &["blob", "frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(tmp.path(), &["blob", "put", "--chunking", "cdc:1,2,3", "x"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(tmp.path(), &["blob", "get", "nm1zzzz"]);
    assert_eq!(out.status.code(), Some(2), "a ref that does not decode");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("net-mesh: error: invalid blob ref")
            && stderr.trim().lines().count() == 1,
        "{stderr}"
    );
    let out = run(tmp.path(), &["blob", "get", "deadbeef"]);
    assert_eq!(out.status.code(), Some(1), "no pinned blob has that id");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no pinned blob matches") && stderr.trim().lines().count() == 1,
        "{stderr}"
    );
}

#[test]
fn stdin_put_and_default_data_dir_from_env() {
    let tmp = tempfile::tempdir().unwrap();
    let data = random_bytes(50_000, 3);
    let mut child = std::process::Command::new(bin())
        .args(["blob", "put", "-"])
        .env("NET_MESH_DATA_DIR", tmp.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&data).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let r = String::from_utf8(out.stdout).unwrap();
    let got = std::process::Command::new(bin())
        .args(["blob", "get", r.trim()])
        .env("NET_MESH_DATA_DIR", tmp.path())
        .output()
        .unwrap();
    assert!(got.status.success());
    assert!(got.stdout == data);
    assert!(tmp.path().join("index.redb").exists());
}

#[test]
fn get_into_a_fifo_writes_through_it_and_leaves_it_a_fifo() {
    use std::os::unix::fs::FileTypeExt;
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("store");
    let data = random_bytes(200_000, 9);
    let file = write_file(tmp.path(), "in.bin", &data);
    let r = ok_text(&data_dir, &["blob", "put", file.to_str().unwrap()]);
    let fifo = tmp.path().join("out.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    // The reader's open waits for a writer; a get that replaced the FIFO never comes.
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    ok(
        &data_dir,
        &["blob", "get", r.trim(), "-o", fifo.to_str().unwrap()],
    );
    let kind = std::fs::symlink_metadata(&fifo).unwrap().file_type();
    assert!(kind.is_fifo(), "the output FIFO was replaced: {kind:?}");
    assert!(
        reader.join().unwrap() == data,
        "bytes read from the FIFO differ"
    );
}
