//! Damage for the integrity suites: an object's index entry removed as index damage removes
//! it, and the read commands of a blob with the check of how each one fails.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::Path;
use std::process::Output;

/// Asserts `out` failed with exit `code`, an error line containing `says`, and no stdout.
pub fn failed(out: &Output, code: i32, says: &str, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{what}: {stderr}");
    assert!(
        stderr.contains(says),
        "{what}: stderr lacks {says:?}: {stderr}"
    );
    assert!(out.stdout.is_empty(), "{what}: printed {:?}", out.stdout);
}

/// `blob get`, `cat --range RANGE`, `stat`, `stat --json` and `chunks` of `blob`.
pub fn reads(blob: &str, range: &str) -> Vec<Vec<String>> {
    [
        vec!["get", blob],
        vec!["cat", blob, "--range", range],
        vec!["stat", blob],
        vec!["stat", blob, "--json"],
        vec!["chunks", blob],
    ]
    .into_iter()
    .map(|args| {
        std::iter::once("blob")
            .chain(args)
            .map(str::to_string)
            .collect()
    })
    .collect()
}

/// `args` as the `&str`s a command takes.
pub fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// Removes the index entry of object `hash` from the store at `dir` (closed), as index damage
/// does; panics if there is none.
pub fn drop_object(dir: &Path, hash: &[u8; 32]) {
    const OBJECTS: redb::TableDefinition<&[u8; 32], &[u8]> =
        redb::TableDefinition::new("objects_v1");
    let db = redb::Database::open(dir.join("index.redb")).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut t = txn.open_table(OBJECTS).unwrap();
        assert!(t.remove(hash).unwrap().is_some());
    }
    txn.commit().unwrap();
}
