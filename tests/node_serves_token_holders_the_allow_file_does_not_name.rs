//! Through the CLI, a node (`serve --trust ISSUER`) serves a caller its allow file does not
//! name when the caller brings a token: `--token` minted by the node's own identity with
//! `token mint`, `--token-file` minted by the trusted issuer — put, get and ls work, and the ref
//! is the local one. Without a token the caller is refused (exit 4); a read-only token cannot
//! put (exit 4, `missing_scope`), a token from an issuer the node does not trust is refused
//! (exit 4, `untrusted_issuer`), and text that is not a token is a usage error (exit 2).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};

use common::node::*;
use common::*;

/// `identity show NAME --json`'s public key.
fn public_key(dir: &Path, name: &str) -> String {
    let out = ok(
        dir,
        &["--identity", name, "identity", "show", name, "--json"],
    );
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    v["public_key"].as_str().unwrap().to_string()
}

/// `token mint` signed by identity `issuer` of `dir`, for `subject` with `scope`.
fn mint(dir: &Path, issuer: &str, subject: &str, scope: &str) -> String {
    ok_text(
        dir,
        &[
            "--identity",
            issuer,
            "token",
            "mint",
            "--subject",
            subject,
            "--scope",
            scope,
            "--channel",
            "default",
            "--ttl",
            "1h",
        ],
    )
}

/// Kills the node when the test ends, however it ends.
struct Served(Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn node_serves_token_holders_the_allow_file_does_not_name() {
    let tmp = tempfile::tempdir().unwrap();
    let node_dir = tmp.path().join("node");
    let node_id = node_identity(&node_dir);
    let issuer = Client::new(&tmp.path().join("issuer"), "i");
    let outsider = Client::new(&tmp.path().join("outsider"), "o");
    let peer = Client::new(&tmp.path().join("peer"), "p");
    let peer_key = public_key(&peer.dir, "p");

    let mut child = cmd(&node_dir)
        .args(["serve", "--listen", "127.0.0.1:0", "--trust", &issuer.id])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let served = Served(child);
    let addr = line.trim().to_string();
    assert!(addr.starts_with(&format!("{node_id}@")), "{line:?}");

    let data = random_bytes(250_000, 77);
    let file = write_file(tmp.path(), "in.bin", &data);
    let file = file.to_str().unwrap();
    let local_ref = ok_text(&tmp.path().join("local"), &["blob", "put", file]);

    // No token: refused.
    let out = peer.run(&addr, &["blob", "put", file]);
    assert_eq!(out.status.code(), Some(4), "{out:?}");

    // A read-only token from the node: reads, cannot put.
    let read_only = mint(&node_dir, "default", &peer_key, "read");
    assert_eq!(
        peer.ok_text(&addr, &["--token", &read_only, "blob", "ls", "--json"]),
        "[]"
    );
    let out = peer.run(&addr, &["--token", &read_only, "blob", "put", file]);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("missing_scope"), "{stderr}");

    // A token from an issuer the node does not trust.
    let untrusted = mint(&outsider.dir, "o", &peer_key, "read,write");
    let out = peer.run(&addr, &["--token", &untrusted, "blob", "ls"]);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("untrusted_issuer"), "{stderr}");

    // Not a token at all.
    let out = peer.run(&addr, &["--token", "nmt1nope", "blob", "ls"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");

    // A write token from the node: put and read back.
    let writer = mint(&node_dir, "default", &peer_key, "write");
    let blob_ref = peer.ok_text(&addr, &["--token", &writer, "blob", "put", file]);
    assert_eq!(blob_ref, local_ref);
    let got = peer.ok(&addr, &["--token", &writer, "blob", "get", &blob_ref]);
    assert_eq!(got, data);

    // A write token from the trusted issuer, in a file (one line).
    let vouched = mint(&issuer.dir, "i", &peer_key, "read,write");
    let token_file = write_file(tmp.path(), "token.txt", format!("{vouched}\n").as_bytes());
    let token_file = token_file.to_str().unwrap();
    let other = write_file(tmp.path(), "other.bin", &random_bytes(90_000, 78));
    let other_ref = peer.ok_text(
        &addr,
        &[
            "--token-file",
            token_file,
            "blob",
            "put",
            other.to_str().unwrap(),
        ],
    );
    let listed = peer.json(&addr, &["--token-file", token_file, "blob", "ls", "--json"]);
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(
        listed
            .iter()
            .any(|row| row.to_string().contains(&other_ref))
    );

    signal(&served.0, "TERM");
    let mut served = served;
    assert!(served.0.wait().unwrap().success());
}
