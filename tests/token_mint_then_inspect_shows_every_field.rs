//! `token mint` signs with a fresh `--identity` (created on first use, noted on stderr) and
//! prints the token text; `token inspect` shows every field of it as the library decodes it:
//! issuer and subject node ids, scope names, the channel hash of the name (`*` for every
//! channel), the window the ttl asked for, depth, nonce, size 169 and a signature that verifies.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use common::*;
use net_mesh_rpc::{PermissionToken, Scope, TokenChannel, channel_hash};
use serde_json::Value;

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `identity show NAME --json` of `dir`.
fn identity(dir: &Path, name: &str) -> Value {
    json(&ok(dir, &["identity", "show", name, "--json"]))
}

#[test]
fn token_mint_then_inspect_shows_every_field() {
    let tmp = tempfile::tempdir().unwrap();
    let issuer_dir = tmp.path().join("issuer");
    let subject_dir = tmp.path().join("subject");
    ok(&subject_dir, &["identity", "generate", "bob"]);
    let bob = identity(&subject_dir, "bob");
    let bob_key = bob["public_key"].as_str().unwrap();
    let bob_id = bob["node_id"].as_str().unwrap();

    // First use of --identity default in the issuer's dir: created, with one note on stderr.
    let before = now();
    let out = run(
        &issuer_dir,
        &[
            "token",
            "mint",
            "--subject",
            bob_key,
            "--scope",
            "read,write",
            "--channel",
            "photos",
            "--ttl",
            "1h",
            "--json",
        ],
    );
    let after = now();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("created identity \"default\""), "{stderr}");
    let issuer = identity(&issuer_dir, "default");
    let issuer_id = issuer["node_id"].as_str().unwrap();
    let minted = json(&out.stdout);
    let text = minted["token"].as_str().unwrap();
    assert!(text.starts_with("nmt1") && !text.contains('.'), "{text}");
    assert_eq!(minted["issuer"], issuer_id);
    assert_eq!(minted["issuer_public_key"], issuer["public_key"]);
    assert_eq!(minted["subject"], bob_id);
    assert_eq!(minted["subject_public_key"], bob_key);
    assert_eq!(minted["scope"], serde_json::json!(["read", "write"]));
    assert_eq!(minted["channel"], channel_hash("photos").to_string());
    assert_eq!(minted["channel_name"], "photos");
    assert_eq!(minted["delegation_depth"], 0);
    assert_eq!(minted["size"], 169);
    let not_before = minted["not_before"].as_u64().unwrap();
    assert!(before <= not_before && not_before <= after, "{minted}");
    assert_eq!(minted["not_after"].as_u64().unwrap(), not_before + 3600);

    // The library reads the same claims from the text.
    let token: PermissionToken = text.parse().unwrap();
    assert!(token.verify_signature().is_ok());
    assert_eq!(token.issuer_node_id().to_hex(), issuer_id);
    let claims = token.claims();
    assert_eq!(claims.scope, Scope::READ | Scope::WRITE);
    assert_eq!(claims.channel, TokenChannel::named("photos"));
    assert_eq!(
        (claims.not_before, claims.not_after),
        (not_before, not_before + 3600)
    );

    // inspect --json: every field of the one link.
    let inspected = json(&ok(&issuer_dir, &["token", "inspect", text, "--json"]));
    assert_eq!(inspected["size"], 169);
    assert_eq!(inspected["valid"], true);
    let links = inspected["links"].as_array().unwrap();
    assert_eq!(links.len(), 1);
    let link = &links[0];
    assert_eq!(link["link"], 0);
    assert_eq!(link["issuer"], issuer_id);
    assert_eq!(link["issuer_public_key"], issuer["public_key"]);
    assert_eq!(link["subject"], bob_id);
    assert_eq!(link["subject_public_key"], bob_key);
    assert_eq!(link["scope"], serde_json::json!(["read", "write"]));
    assert_eq!(link["channel"], channel_hash("photos").to_string());
    assert_eq!(
        link["channel"], "d2094496caa05186",
        "FORMAT.md golden vector"
    );
    assert_eq!(link["issuer_generation"], 0);
    assert_eq!(link["not_before"], not_before);
    assert_eq!(link["not_after"], not_before + 3600);
    for field in ["not_before_rfc3339", "not_after_rfc3339"] {
        let stamp = link[field].as_str().unwrap();
        assert!(
            stamp.len() == 20 && stamp.ends_with('Z'),
            "{field}: {stamp}"
        );
    }
    assert_eq!(link["delegation_depth"], 0);
    assert_eq!(link["nonce"], format!("{:016x}", claims.nonce));
    assert_eq!(link["size"], 169);
    assert_eq!(link["signature"], "ok");
    assert_eq!(link["narrows_parent"], Value::Null);

    // The text form says the same, one field a line; --token-file reads the same token.
    let printed = ok_text(&issuer_dir, &["token", "inspect", text]);
    for line in [
        "links: 1".to_string(),
        "size: 169".to_string(),
        format!("  issuer: {issuer_id}"),
        format!("  subject: {bob_id}"),
        "  scope: read,write".to_string(),
        format!("  channel: {}", channel_hash("photos")),
        format!(
            "  not_after: {} {}",
            not_before + 3600,
            link["not_after_rfc3339"].as_str().unwrap()
        ),
        "  delegation_depth: 0".to_string(),
        "  signature: ok".to_string(),
    ] {
        assert!(printed.lines().any(|l| l == line), "{line:?} in\n{printed}");
    }
    let file = write_file(tmp.path(), "token.txt", format!("{text}\n").as_bytes());
    let from_file = json(&ok(
        &issuer_dir,
        &[
            "token",
            "inspect",
            "--token-file",
            file.to_str().unwrap(),
            "--json",
        ],
    ));
    assert_eq!(from_file, inspected);

    // A wildcard token for two days: channel `*`, and the same identity (no new note).
    let out = run(
        &issuer_dir,
        &[
            "token",
            "mint",
            "--subject",
            bob_key,
            "--scope",
            "read",
            "--channel",
            "*",
            "--ttl",
            "2d",
        ],
    );
    assert!(out.status.success() && out.stderr.is_empty(), "{out:?}");
    let wildcard = String::from_utf8(out.stdout).unwrap();
    let wildcard = json(&ok(
        &issuer_dir,
        &["token", "inspect", wildcard.trim(), "--json"],
    ));
    let link = &wildcard["links"][0];
    assert_eq!(link["channel"], "*");
    assert_eq!(link["issuer"], issuer_id);
    assert_eq!(link["scope"], serde_json::json!(["read"]));
    assert_eq!(
        link["not_after"].as_u64().unwrap() - link["not_before"].as_u64().unwrap(),
        2 * 86_400
    );
}
