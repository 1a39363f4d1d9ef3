//! `blob put FILE --name N` (plain, resumable, erasure-coded) and `blob pull REF --from A
//! --name N` of a blob the channel pins already rename its pin to N; without `--name` the pin
//! keeps the name it has (the default, the file name or the blob id, never replaces a name).
//! The output shows the pin's name after the call (`name` in `--json`; in text, a note on stderr
//! when the pin kept a name other than the default asked for). Locally and through `--node`
//! alike, same stdout.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::process::Output;

use common::node::*;
use common::*;
use serde_json::Value;

fn json_of(out: &Output, what: &str) -> Value {
    assert!(
        out.status.success(),
        "{what}: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The pins of the channel as (name, blob_ref).
fn pins(listed: &Value) -> Vec<(String, String)> {
    listed
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["blob_ref"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn blob_put_and_pull_with_a_name_rename_an_existing_pin_and_without_keep_it() {
    let tmp = tempfile::tempdir().unwrap();
    let file = write_file(tmp.path(), "photo.bin", &random_bytes(150_000, 5));
    let f = file.to_str().unwrap();
    let local_dir = tmp.path().join("local");
    let node_dir = tmp.path().join("node");
    let node = ServedNode::start(&node_dir, Serve::default());
    let admin = Client::node_admin(&node_dir);

    let check = |run: &dyn Fn(&[&str]) -> Output, side: &str| -> Vec<Value> {
        let mut answers = Vec::new();
        let put = |args: &[&str], want: &str| -> Value {
            let mut all = vec!["blob", "put", f, "--json"];
            all.extend_from_slice(args);
            let answer = json_of(&run(&all), &format!("{side} {args:?}"));
            assert_eq!(answer["name"], want, "{side} {args:?}: {answer}");
            answer
        };
        // No pin yet: the file name.
        answers.push(put(&[], "photo.bin"));
        // A name given renames; none keeps it; a resumable put the same.
        answers.push(put(&["--name", "holiday"], "holiday"));
        answers.push(put(&[], "holiday"));
        answers.push(put(&["--resumable"], "holiday"));
        answers.push(put(&["--resumable", "--name", "resumed"], "resumed"));
        answers.push(put(&["--resumable"], "resumed"));
        answers.push(put(&["--name", "final"], "final"));
        let listed = json_of(&run(&["blob", "ls", "--json"]), side);
        let blob_ref = answers[0]["blob_ref"].as_str().unwrap().to_string();
        assert_eq!(pins(&listed), vec![("final".to_string(), blob_ref.clone())]);
        // Erasure-coded: another blob, the same rules.
        answers.push(put(&["--rs", "2,3", "--name", "rs"], "rs"));
        answers.push(put(&["--rs", "2,3"], "rs"));
        answers.push(put(&["--rs", "2,3", "--name", "rs2"], "rs2"));
        // Text: the ref on stdout; a name kept (no --name) is noted on stderr, a given one
        // that took effect is not.
        let out = run(&["blob", "put", f, "--name", "text"]);
        assert!(out.status.success(), "{side}: {out:?}");
        assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), blob_ref);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("pinned already"), "{side}: {stderr}");
        let out = run(&["blob", "put", f]);
        assert!(out.status.success(), "{side}: {out:?}");
        assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), blob_ref);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("pinned already as text; it keeps that name"),
            "{side}: {stderr}"
        );
        answers
    };
    let local = check(&|args| run(&local_dir, args), "local");
    let remote = check(&|args| admin.run(&node.addr, args), "node");
    assert_eq!(local, remote, "the same answers locally and through --node");

    // Pull: B pulls from A; with a name, without, with another.
    let a_dir = tmp.path().join("a");
    let b_dir = tmp.path().join("b");
    let allow = tmp.path().join("allow-a");
    write_allow(&allow, &[(&node_identity(&b_dir), "read")]);
    let a = ServedNode::start(
        &a_dir,
        Serve {
            allow: Some(&allow),
            ..Serve::default()
        },
    );
    let a_admin = Client::node_admin(&a_dir);
    let blob_ref = a_admin.ok_text(&a.addr, &["blob", "put", f]);
    let b = ServedNode::start(&b_dir, Serve::default());
    let b_admin = Client::node_admin(&b_dir);
    let pull = |args: &[&str], want: &str| {
        let mut all = vec![
            "blob",
            "pull",
            blob_ref.as_str(),
            "--from",
            &a.addr,
            "--json",
        ];
        all.extend_from_slice(args);
        let answer = json_of(&b_admin.run(&b.addr, &all), &format!("pull {args:?}"));
        assert_eq!(answer["name"], want, "pull {args:?}: {answer}");
    };
    pull(&["--name", "pulled"], "pulled");
    pull(&[], "pulled");
    pull(&["--name", "repulled"], "repulled");
    let out = b_admin.run(&b.addr, &["blob", "pull", &blob_ref, "--from", &a.addr]);
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("pinned already as repulled; it keeps that name"),
        "{stderr}"
    );
    let listed = b_admin.json(&b.addr, &["blob", "ls", "--json"]);
    assert_eq!(
        pins(&listed),
        vec![("repulled".to_string(), blob_ref.clone())]
    );
    drop((node, a, b));
}
