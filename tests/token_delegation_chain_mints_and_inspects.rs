//! A root mints a token that lets B delegate; B, holding it, mints a narrower one for C with
//! `--parent` and gets the chain root → C; `inspect` shows both links, each signature good and
//! the second narrowing the first. A delegation that widens the scope, depth, window or channel,
//! or that someone other than the parent's subject attempts, is refused (exit 4: the library
//! refuses it as a delegation fault, a well-formed request that is not permitted) and prints
//! nothing; a chain glued from a token minted without `--parent` is flagged (exit 3).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

/// Node id and public key of identity `name` of `dir`, created here.
fn generate(dir: &Path, name: &str) -> (String, String) {
    ok(dir, &["identity", "generate", name]);
    let shown = json(&ok(dir, &["identity", "show", name, "--json"]));
    (
        shown["node_id"].as_str().unwrap().to_string(),
        shown["public_key"].as_str().unwrap().to_string(),
    )
}

/// Runs `args` as identity `name` of `dir`, asserts exit `code`, nothing on stdout and one
/// error line; returns that line.
fn refused<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(
    dir: &Path,
    name: &str,
    args: &[S],
    code: i32,
) -> String {
    let out = cmd(dir)
        .args(["--identity", name])
        .args(args)
        .output()
        .unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
    assert!(out.stdout.is_empty(), "{args:?}");
    assert!(
        err.starts_with("net-mesh: error: ") && err.trim_end().lines().count() == 1,
        "{args:?}: {err}"
    );
    err
}

#[test]
fn token_delegation_chain_mints_and_inspects() {
    let tmp = tempfile::tempdir().unwrap();
    let (root_dir, b_dir, c_dir) = (
        tmp.path().join("root"),
        tmp.path().join("b"),
        tmp.path().join("c"),
    );
    let (root_id, _) = generate(&root_dir, "root");
    let (b_id, b_key) = generate(&b_dir, "b");
    let (c_id, c_key) = generate(&c_dir, "c");

    let root_token = String::from_utf8(ok(
        &root_dir,
        &[
            "--identity",
            "root",
            "token",
            "mint",
            "--subject",
            &b_key,
            "--scope",
            "read,write,delegate",
            "--channel",
            "photos",
            "--ttl",
            "2h",
            "--delegate-depth",
            "1",
        ],
    ))
    .unwrap()
    .trim()
    .to_string();

    // B delegates read on photos for one hour to C.
    let minted = json(&ok(
        &b_dir,
        &[
            "--identity",
            "b",
            "token",
            "mint",
            "--subject",
            &c_key,
            "--scope",
            "read",
            "--channel",
            "photos",
            "--ttl",
            "1h",
            "--parent",
            &root_token,
            "--json",
        ],
    ));
    let chain = minted["token"].as_str().unwrap();
    let (parent, link) = chain.split_once('.').unwrap();
    assert_eq!(parent, root_token);
    assert!(link.starts_with("nmt1") && !link.contains('.'));
    assert_eq!(minted["issuer"], b_id);
    assert_eq!(minted["subject"], c_id);
    assert_eq!(minted["links"], 2);
    assert_eq!(minted["size"], 2 * 169);

    let inspected = json(&ok(&c_dir, &["token", "inspect", chain, "--json"]));
    assert_eq!(inspected["size"], 2 * 169);
    assert_eq!(inspected["valid"], true);
    let links = inspected["links"].as_array().unwrap();
    assert_eq!(links.len(), 2);
    let (first, second) = (&links[0], &links[1]);
    assert_eq!(
        (&first["issuer"], &first["subject"]),
        (&root_id.clone().into(), &b_id.clone().into())
    );
    assert_eq!(
        (&second["issuer"], &second["subject"]),
        (&b_id.clone().into(), &c_id.clone().into())
    );
    assert_eq!(
        first["scope"],
        serde_json::json!(["read", "write", "delegate"])
    );
    assert_eq!(second["scope"], serde_json::json!(["read"]));
    assert_eq!(first["delegation_depth"], 1);
    assert_eq!(second["delegation_depth"], 0);
    assert_eq!(first["channel"], second["channel"]);
    assert!(second["not_after"].as_u64() <= first["not_after"].as_u64());
    for link in links {
        assert_eq!(link["signature"], "ok");
        assert_eq!(link["size"], 169);
    }
    assert_eq!(first["narrows_parent"], Value::Null);
    assert_eq!(second["narrows_parent"], true);
    let printed = ok_text(&c_dir, &["token", "inspect", chain]);
    assert!(printed.lines().any(|l| l == "link 1:"), "{printed}");
    assert!(
        printed.lines().any(|l| l == "  narrows_parent: yes"),
        "{printed}"
    );

    // Widening anything is refused, and nothing is minted.
    let delegate = |extra: &[&str]| -> Vec<String> {
        let base = [
            "token",
            "mint",
            "--subject",
            &c_key,
            "--channel",
            "photos",
            "--parent",
            &root_token,
        ];
        base.iter().chain(extra).map(|a| a.to_string()).collect()
    };
    let err = refused(
        &b_dir,
        "b",
        &delegate(&["--scope", "read,admin", "--ttl", "1h"]),
        4,
    );
    assert!(err.contains("widens the parent's scope"), "{err}");
    let err = refused(
        &b_dir,
        "b",
        &delegate(&[
            "--scope",
            "read,delegate",
            "--ttl",
            "1h",
            "--delegate-depth",
            "1",
        ]),
        4,
    );
    assert!(
        err.contains("delegation depth 1 is not below the parent's 1"),
        "{err}"
    );
    let err = refused(
        &b_dir,
        "b",
        &delegate(&["--scope", "read", "--ttl", "3h"]),
        4,
    );
    assert!(err.contains("widens the parent's validity window"), "{err}");
    let mut other_channel = delegate(&["--scope", "read", "--ttl", "1h"]);
    other_channel[5] = "music".to_string();
    let err = refused(&b_dir, "b", &other_channel, 4);
    assert!(err.contains("widens the parent's channel"), "{err}");
    // C holds no such token: only the parent's subject may delegate it.
    let err = refused(
        &c_dir,
        "c",
        &delegate(&["--scope", "read", "--ttl", "1h"]),
        4,
    );
    assert!(
        err.contains("only the token's subject may delegate it"),
        "{err}"
    );
    // C's own link cannot be delegated further (depth 0, no delegate right).
    let err = refused(
        &c_dir,
        "c",
        &[
            "token",
            "mint",
            "--subject",
            &b_key,
            "--scope",
            "read",
            "--channel",
            "photos",
            "--ttl",
            "1m",
            "--parent",
            chain,
        ],
        4,
    );
    assert!(err.contains("does not grant delegate"), "{err}");

    // A link B signs without --parent, glued after the root token, is not a delegation.
    let wide = String::from_utf8(ok(
        &b_dir,
        &[
            "--identity",
            "b",
            "token",
            "mint",
            "--subject",
            &c_key,
            "--scope",
            "read,admin",
            "--channel",
            "photos",
            "--ttl",
            "1h",
        ],
    ))
    .unwrap();
    let glued = format!("{root_token}.{}", wide.trim());
    let out = run(&c_dir, &["token", "inspect", &glued, "--json"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let report = json(&out.stdout);
    assert_eq!(report["valid"], false);
    assert_eq!(report["links"][1]["signature"], "ok");
    assert_eq!(report["links"][1]["narrows_parent"], false);
    let fault = report["links"][1]["link_fault"].as_str().unwrap();
    assert!(fault.contains("widens the parent's scope"), "{fault}");
    let out = run(&c_dir, &["token", "inspect", &glued]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(
        printed
            .lines()
            .any(|l| l.starts_with("  narrows_parent: no (") && l.contains("scope")),
        "{printed}"
    );
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("link 1 does not follow its parent"), "{err}");
}
