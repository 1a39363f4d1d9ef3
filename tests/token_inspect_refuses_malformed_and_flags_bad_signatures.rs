//! `token inspect` decodes strictly: a text of the older 161-byte layout gets the library's own
//! message and a text of 170 bytes its length message, both usage errors (exit 2) that print
//! nothing; a token whose signature has one bit flipped still decodes, is printed in full with
//! `signature: bad`, and fails with the integrity class (exit 3).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::path::Path;
use std::process::Output;

use common::*;
use net_mesh_rpc::PermissionToken;
use net_mesh_rpc::token::{LEGACY_TOKEN_LEN, TEXT_PREFIX, TOKEN_LEN, TokenDecodeError};
use serde_json::Value;

/// RFC 4648 base32, lowercase, no padding: the token text alphabet (FORMAT.md §5.5).
fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let (mut out, mut acc, mut bits) = (String::new(), 0u32, 0u32);
    for &byte in bytes {
        acc = (acc << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((acc >> bits) & 31) as usize]));
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((acc << (5 - bits)) & 31) as usize]));
    }
    out
}

fn text_of(bytes: &[u8]) -> String {
    format!("{TEXT_PREFIX}{}", base32(bytes))
}

/// Asserts exit `code` with one error line containing `message`.
fn fails_with(out: &Output, code: i32, message: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{err}");
    assert!(
        err.starts_with("net-mesh: error: ") && err.trim_end().lines().count() == 1,
        "{err}"
    );
    assert!(err.contains(message), "{message:?} in {err}");
}

fn inspect(dir: &Path, text: &str, json: bool) -> Output {
    let mut args = vec!["token", "inspect", text];
    if json {
        args.push("--json");
    }
    run(dir, &args)
}

#[test]
fn token_inspect_refuses_malformed_and_flags_bad_signatures() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    ok(&dir, &["identity", "generate", "bob"]);
    let shown: Value =
        serde_json::from_slice(&ok(&dir, &["identity", "show", "bob", "--json"])).unwrap();
    let minted = ok_text(
        &dir,
        &[
            "token",
            "mint",
            "--subject",
            shown["public_key"].as_str().unwrap(),
            "--scope",
            "read",
            "--channel",
            "default",
            "--ttl",
            "10m",
        ],
    );
    let bytes = minted.parse::<PermissionToken>().unwrap().encode();
    assert_eq!(
        text_of(&bytes),
        minted,
        "the test's encoder writes the CLI's text"
    );
    assert!(inspect(&dir, &minted, false).status.success());

    // The older 161-byte layout: its own message, exit 2, nothing printed.
    let legacy = text_of(&bytes[..LEGACY_TOKEN_LEN]);
    for json in [false, true] {
        let out = inspect(&dir, &legacy, json);
        fails_with(&out, 2, &TokenDecodeError::LegacyLength.to_string());
        assert!(out.stdout.is_empty());
    }
    let file = write_file(tmp.path(), "legacy.txt", format!("{legacy}\n").as_bytes());
    let out = run(
        &dir,
        &["token", "inspect", "--token-file", file.to_str().unwrap()],
    );
    fails_with(&out, 2, "older layout");

    // 170 bytes: the length message, exit 2.
    let mut long = bytes.to_vec();
    long.push(0);
    let out = inspect(&dir, &text_of(&long), false);
    fails_with(
        &out,
        2,
        &format!("a permission token is {TOKEN_LEN} bytes, got 170"),
    );
    assert!(out.stdout.is_empty());
    // Text that is not base32 at all is a usage error too.
    fails_with(
        &inspect(&dir, &minted.to_uppercase(), false),
        2,
        "not a permission token",
    );

    // One bit of the signature flipped: every field printed, `signature: bad`, exit 3.
    let mut forged = bytes;
    forged[TOKEN_LEN - 1] ^= 0x01;
    let forged = text_of(&forged);
    let out = inspect(&dir, &forged, false);
    fails_with(&out, 3, "signature does not verify");
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(
        printed.lines().any(|l| l == "  signature: bad"),
        "{printed}"
    );
    assert!(printed.lines().any(|l| l == "  scope: read"), "{printed}");
    assert!(printed.lines().any(|l| l == "  size: 169"), "{printed}");
    let out = inspect(&dir, &forged, true);
    fails_with(&out, 3, "signature does not verify");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["valid"], false);
    assert_eq!(report["links"][0]["signature"], "bad");
    assert_eq!(report["links"][0]["subject"], shown["node_id"]);

    // As a parent, a forged token is refused before anything is minted.
    let out = run(
        &dir,
        &[
            "--identity",
            "bob",
            "token",
            "mint",
            "--subject",
            shown["public_key"].as_str().unwrap(),
            "--scope",
            "read",
            "--channel",
            "default",
            "--ttl",
            "1m",
            "--parent",
            &forged,
        ],
    );
    fails_with(&out, 3, "signature does not verify");
    assert!(out.stdout.is_empty());
}
