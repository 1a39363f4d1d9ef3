//! `blob rm` of a pin row that does not decode, through the real binary: an id prefix is
//! refused with an integrity error (exit 3) that names the row's full id; `blob rm FULL_ID`
//! removes the row (exit 0) and warns that the references it held were kept; `blob ls` is then
//! clean, `gc` runs again, fsck reports the counts left too high (exit 3) and after
//! `fsck --repair` fsck is clean (exit 0) with the other blob intact.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::*;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

fn problem_kinds(dir: &std::path::Path) -> (Option<i32>, Vec<String>) {
    let out = run(dir, &["fsck", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kinds = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["severity"] != "info")
        .map(|p| p["kind"].as_str().unwrap().to_string())
        .collect();
    (out.status.code(), kinds)
}

#[test]
fn blob_rm_removes_an_undecodable_pin_row_by_its_full_id() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let mut ids = Vec::new();
    let kept_data = random_bytes(50_000, 1);
    for (name, data) in [
        ("kept.bin", kept_data.clone()),
        ("bad.bin", random_bytes(60_000, 2)),
    ] {
        let file = write_file(tmp.path(), name, &data);
        let put: serde_json::Value = serde_json::from_slice(&ok(
            &dir,
            &["blob", "put", "--json", file.to_str().unwrap()],
        ))
        .unwrap();
        ids.push(put["blob_id"].as_str().unwrap().to_string());
    }
    let bad_id = ids[1].clone();
    damage_pin_ref(&dir, &bad_id, "bad.bin");

    let by_prefix = run(&dir, &["blob", "rm", &bad_id[..8]]);
    assert_eq!(by_prefix.status.code(), Some(3), "{}", stderr(&by_prefix));
    assert!(
        stderr(&by_prefix).contains(&bad_id),
        "{}",
        stderr(&by_prefix)
    );

    let by_id = run(&dir, &["blob", "rm", &bad_id]);
    assert!(by_id.status.success(), "{}", stderr(&by_id));
    let warning = stderr(&by_id);
    assert!(
        warning.starts_with(&format!(
            "net-mesh: warning: pin row {bad_id} did not decode"
        )),
        "{warning}"
    );
    assert!(warning.contains("fsck --repair"), "{warning}");

    let ls = run(&dir, &["blob", "ls"]);
    assert!(
        ls.status.success() && ls.stderr.is_empty(),
        "{}",
        stderr(&ls)
    );
    let listed = String::from_utf8(ls.stdout).unwrap();
    assert_eq!(listed.lines().count(), 1, "{listed}");
    assert!(listed.contains("kept.bin"), "{listed}");
    ok(&dir, &["gc", "--grace", "0s"]);

    let (code, kinds) = problem_kinds(&dir);
    assert_eq!(code, Some(3));
    assert!(!kinds.is_empty(), "{kinds:?}");
    assert!(kinds.iter().all(|k| k == "refcount_mismatch"), "{kinds:?}");
    let _ = run(&dir, &["fsck", "--repair"]);
    let (code, kinds) = problem_kinds(&dir);
    assert_eq!((code, kinds), (Some(0), Vec::<String>::new()));
    assert_eq!(ok(&dir, &["blob", "get", &ids[0][..8]]), kept_data);
}
