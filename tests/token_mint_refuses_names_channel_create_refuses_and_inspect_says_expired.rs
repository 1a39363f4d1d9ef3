//! `token mint` takes the channel names `channel create` takes (and `*`): a name it refuses
//! (upper case, a leading dot, a slash, too long) is a usage error (exit 2) that mints
//! nothing, and so is the all-zero subject key. `token inspect` of a token whose window ended
//! (minted by the library with a past window) says it is not valid and why: `valid: false`
//! with "expired at …" in --json, `valid: no (…expired at…)` in text; a token within its
//! window says `valid: yes`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::*;
use net_mesh_rpc::token::chain_to_text;
use net_mesh_rpc::{Identity, PermissionToken, Scope, TokenChannel, TokenClaims};

#[test]
fn token_mint_refuses_names_channel_create_refuses_and_inspect_says_expired() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let bob = Identity::from_seed([0x44; 32]);
    let bob_key: String = bob
        .public_key()
        .to_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mint = |subject: &str, channel: &str| {
        run(
            dir,
            &[
                "token",
                "mint",
                "--subject",
                subject,
                "--scope",
                "read",
                "--channel",
                channel,
                "--ttl",
                "1h",
            ],
        )
    };
    let too_long = "a".repeat(65);
    for channel in ["Photos", ".hidden", "a/b", "sp ace", too_long.as_str()] {
        let refused = run(dir, &["channel", "create", channel]);
        assert_eq!(refused.status.code(), Some(2), "{channel}: {refused:?}");
        let out = mint(&bob_key, channel);
        assert_eq!(out.status.code(), Some(2), "{channel}: {out:?}");
        assert!(out.stdout.is_empty(), "{channel}: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("--channel"),
            "{channel}: {out:?}"
        );
    }
    let zero = mint(&"0".repeat(64), "photos");
    assert_eq!(zero.status.code(), Some(2), "{zero:?}");
    assert!(
        String::from_utf8_lossy(&zero.stderr).contains("all-zero key"),
        "{zero:?}"
    );
    // A name channel create takes, and '*', mint.
    for channel in ["photos", "*"] {
        let out = mint(&bob_key, channel);
        assert!(out.status.success(), "{channel}: {out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        let printed = ok_text(dir, &["token", "inspect", text.trim()]);
        assert!(printed.lines().any(|l| l == "valid: yes"), "{printed}");
    }

    // A token whose window ended an hour ago.
    let issuer = Identity::from_seed([0x42; 32]);
    let expired = PermissionToken::mint(
        &issuer,
        TokenClaims {
            subject: bob.public_key().to_bytes(),
            scope: Scope::READ,
            channel: TokenChannel::named("photos"),
            issuer_generation: 0,
            not_before: 1_700_000_000,
            not_after: 1_700_003_600,
            delegation_depth: 0,
            nonce: 7,
        },
    )
    .unwrap();
    let text = chain_to_text(&[expired]);
    let report: serde_json::Value =
        serde_json::from_slice(&ok(dir, &["token", "inspect", &text, "--json"])).unwrap();
    assert_eq!(report["valid"], false, "{report}");
    let why = report["invalid_reason"].as_str().unwrap();
    assert!(
        why.contains("expired at 1700003600 (2023-11-14T23:13:20Z)"),
        "{report}"
    );
    assert_eq!(report["links"][0]["signature"], "ok", "{report}");
    let printed = ok_text(dir, &["token", "inspect", &text]);
    assert!(
        printed
            .lines()
            .any(|l| l.starts_with("valid: no (") && l.contains("expired at 1700003600")),
        "{printed}"
    );
}
