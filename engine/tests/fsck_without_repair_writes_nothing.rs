//! A plain `fsck` (no `--repair`) is a check: it leaves every file of the data dir as it found
//! it (names, sizes, contents) — also when the active segment has a torn uncommitted tail (the
//! store's open would cut it) and when the store never committed a segment (the open would
//! start one). With `--read-data` it records its data cursor in the index and still leaves
//! every segment file as it is. `fsck --repair` of the same stores still cuts the tail and
//! clears the orphan.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod gc_common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use gc_common::*;
use net_mesh_engine::fsck::{ProblemKind as K, ReadData};

/// Every file under `dir` but the LOCK file (the lock protocol records the owner's pid in it):
/// relative path → contents.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        for e in std::fs::read_dir(&at).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n != "LOCK") {
                let rel = path.strip_prefix(dir).unwrap().to_path_buf();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

fn check_writes_nothing(dir: &Path) -> Vec<K> {
    let before = snapshot(dir);
    let report = fsck(dir, ReadData::None, false);
    let after = snapshot(dir);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "file names"
    );
    for (path, bytes) in &before {
        assert!(after[path] == *bytes, "{} changed", path.display());
    }
    report.problems.iter().map(|p| p.kind).collect()
}

fn append(path: &Path, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(bytes).unwrap();
    f.sync_all().unwrap();
}

#[test]
fn a_torn_uncommitted_tail_is_left_in_place_by_a_check_and_cut_by_a_repair() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = random_bytes(100_000, 5);
    let (blob, active) = {
        let store = open(dir);
        let blob = store.store(&data).unwrap().blob_ref;
        (blob, store.segments().active_segment())
    };
    let path = seg_path(dir, active);
    let committed = std::fs::metadata(&path).unwrap().len();
    // Half a record header past the committed length: what a crash mid-append leaves.
    append(&path, &[0x4e; 20]);

    let kinds = check_writes_nothing(dir);
    assert!(!kinds.iter().any(|k| *k != K::OrphanRecord), "{kinds:?}");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), committed + 20);
    // Twice: the first check changed nothing the second could trip on.
    check_writes_nothing(dir);
    // Reading data, a check records its cursor in the index, and still leaves every segment
    // file as it is.
    let segments_before = snapshot(&seg_dir(dir));
    let report = fsck(dir, ReadData::All, false);
    assert!(report.data.complete, "{:?}", report.data);
    assert!(
        snapshot(&seg_dir(dir)) == segments_before,
        "segment files changed"
    );

    let report = fsck(dir, ReadData::All, true);
    assert_eq!(report.unrepaired_count(), 0, "{:#?}", report.problems);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), committed, "cut");
    let store = open(dir);
    assert_eq!(fetch(&store, &blob), data);
}

#[test]
fn a_store_that_never_committed_gets_no_segment_file_from_a_check() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    drop(open(dir));
    // The segment the first open started holds a record that was never committed.
    let files: Vec<_> = std::fs::read_dir(seg_dir(dir)).unwrap().collect();
    assert_eq!(files.len(), 1);
    let first = files.into_iter().next().unwrap().unwrap().path();
    append(&first, &[0x4e; 100]);

    let kinds = check_writes_nothing(dir);
    assert_eq!(
        kinds,
        vec![K::OrphanFile],
        "the uncommitted file is reported"
    );
    // With no segment file at all, too.
    std::fs::remove_file(&first).unwrap();
    assert_eq!(check_writes_nothing(dir), vec![]);
    assert_eq!(std::fs::read_dir(seg_dir(dir)).unwrap().count(), 0);

    // A repair still opens the store for writing (it starts the active segment).
    let report = fsck(dir, ReadData::All, true);
    assert_eq!(report.unrepaired_count(), 0, "{:#?}", report.problems);
    let store = open(dir);
    let blob = store.store(b"after").unwrap().blob_ref;
    assert_eq!(fetch(&store, &blob), b"after");
}
