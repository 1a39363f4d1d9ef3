//! Pin names through the real binary: `blob put --name` with an over-long name is refused with
//! a one-line usage error (exit 2) before anything is stored; a pin row that does not decode is
//! warned about by `blob ls`, which still lists every other pin, and reported by `fsck`.
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

#[test]
fn an_over_long_pin_name_is_a_usage_error_and_stores_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let file = write_file(tmp.path(), "in.bin", &random_bytes(200_000, 1));
    let file = file.to_str().unwrap();
    let long = "é".repeat(513);
    for extra in [&[][..], &["--resumable"][..]] {
        let mut args = vec!["blob", "put", "--name", &long];
        args.extend_from_slice(extra);
        args.push(file);
        let out = run(&dir, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert_eq!(
            stderr(&out),
            "net-mesh: error: pin name is 1026 bytes long; at most 1024 bytes are allowed\n"
        );
        assert!(out.stdout.is_empty());
    }
    // Refused before the store was even opened.
    assert!(!dir.join("index.redb").exists());
    assert_eq!(ok_text(&dir, &["blob", "ls"]), "");
    assert_eq!(ok_text(&dir, &["staging", "list"]), "");

    let limit = "é".repeat(512);
    let r = ok_text(&dir, &["blob", "put", "--name", &limit, file]);
    let ls: serde_json::Value =
        serde_json::from_slice(&ok(&dir, &["blob", "ls", "--json"])).unwrap();
    assert_eq!(ls[0]["name"], limit.as_str());
    assert_eq!(ls[0]["blob_ref"], r.as_str());
}

#[test]
fn blob_ls_lists_every_good_pin_and_warns_about_a_bad_row() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let mut ids = Vec::new();
    for (i, name) in ["one.bin", "two.bin", "three.bin"].iter().enumerate() {
        let file = write_file(tmp.path(), name, &random_bytes(50_000, i as u64));
        let put: serde_json::Value = serde_json::from_slice(&ok(
            &dir,
            &["blob", "put", "--json", file.to_str().unwrap()],
        ))
        .unwrap();
        ids.push(put["blob_id"].as_str().unwrap().to_string());
    }
    let bad_id = ids[1].clone();
    damage_pin_ref(&dir, &bad_id, "two.bin");

    let out = run(&dir, &["blob", "ls"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listed = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(
        listed.contains("one.bin") && listed.contains("three.bin"),
        "{listed}"
    );
    assert!(!listed.contains("two.bin"), "{listed}");
    let warning = stderr(&out);
    assert_eq!(warning.lines().count(), 1, "{warning}");
    assert!(
        warning.starts_with(&format!("net-mesh: warning: pin {bad_id} does not decode")),
        "{warning}"
    );
    let ls: serde_json::Value =
        serde_json::from_slice(&ok(&dir, &["blob", "ls", "--json"])).unwrap();
    assert_eq!(ls.as_array().unwrap().len(), 2);
    // The good pins still resolve by id prefix.
    ok(&dir, &["blob", "get", &ids[2][..8]]);

    // GC will not guess what the bad row pins; fsck reports it (exit 3).
    let gc = run(&dir, &["gc", "--grace", "0s"]);
    assert!(!gc.status.success(), "gc ran with an undecodable pin row");
    let fsck = run(&dir, &["fsck", "--json"]);
    assert_eq!(fsck.status.code(), Some(3), "{}", stderr(&fsck));
    let report: serde_json::Value = serde_json::from_slice(&fsck.stdout).unwrap();
    let kinds: Vec<_> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap().to_string())
        .collect();
    assert!(kinds.contains(&"pin_corrupt".to_string()), "{kinds:?}");
}

#[test]
fn blob_ls_escapes_control_characters_in_names_and_json_keeps_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let file = write_file(tmp.path(), "in.bin", &random_bytes(100, 2));
    let name = "evil\n3400ef0b666bffd5  manifest  10  fake\u{1b}[2J";
    ok_text(
        &dir,
        &["blob", "put", "--name", name, file.to_str().unwrap()],
    );
    let ls = ok_text(&dir, &["blob", "ls"]);
    assert_eq!(ls.lines().count(), 1, "{ls:?}");
    assert!(
        ls.ends_with("evil\\n3400ef0b666bffd5  manifest  10  fake\\u{1b}[2J"),
        "{ls:?}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&ok(&dir, &["blob", "ls", "--json"])).unwrap();
    assert_eq!(json[0]["name"], name);
}
