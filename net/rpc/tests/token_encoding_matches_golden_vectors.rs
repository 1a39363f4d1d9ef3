//! Golden vectors for permission tokens (files under tests/golden/, quoted in docs/FORMAT.md
//! section 5.5): a root token, a token it delegates, a wildcard token, their text form, the
//! channel hash of two names, and corrupt tokens with their exact errors. Identities have fixed
//! seeds and ed25519 signatures are deterministic, so every byte is reproducible.
//! Regenerate with
//! `NET_MESH_UPDATE_GOLDEN=1 cargo test -p net-mesh-rpc --test token_encoding_matches_golden_vectors`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod token_fixtures;

use net_mesh_rpc::token::{
    self, ChannelHash, OFF_SCOPE, PermissionToken, Scope, TOKEN_LEN, TokenChannel, TokenClaims,
    TokenDecodeError,
};
use token_fixtures::*;

/// root (seed 0x42) → alice (seed 0x43): read,write,delegate on `default`, generation 1,
/// 2027-01-15T08:00:00Z for a day, depth 2.
fn root_token() -> PermissionToken {
    PermissionToken::mint(
        &root(),
        TokenClaims {
            subject: key(&alice()),
            scope: Scope::READ | Scope::WRITE | Scope::DELEGATE,
            channel: TokenChannel::named("default"),
            issuer_generation: 1,
            not_before: 1_800_000_000,
            not_after: 1_800_086_400,
            delegation_depth: 2,
            nonce: 0x0123_4567_89ab_cdef,
        },
    )
    .unwrap()
}

/// alice → bob (seed 0x44): read on `default` for the first hour, alice's generation 3,
/// depth 0.
fn delegated_token() -> PermissionToken {
    root_token()
        .delegate(
            &alice(),
            TokenClaims {
                subject: key(&bob()),
                scope: Scope::READ,
                channel: TokenChannel::named("default"),
                issuer_generation: 3,
                not_before: 1_800_000_000,
                not_after: 1_800_003_600,
                delegation_depth: 0,
                nonce: 2,
            },
        )
        .unwrap()
}

/// root → alice: read,admin on every channel, generation 1, for a day, depth 0.
fn wildcard_token() -> PermissionToken {
    PermissionToken::mint(
        &root(),
        TokenClaims {
            subject: key(&alice()),
            scope: Scope::READ | Scope::ADMIN,
            channel: TokenChannel::Any,
            issuer_generation: 1,
            not_before: 1_800_000_000,
            not_after: 1_800_086_400,
            delegation_depth: 0,
            nonce: 3,
        },
    )
    .unwrap()
}

#[test]
fn token_encoding_matches_golden_vectors() {
    for (name, token) in [
        ("token_root", root_token()),
        ("token_delegated", delegated_token()),
        ("token_wildcard", wildcard_token()),
    ] {
        let bytes = token.encode();
        check_golden(name, &bytes);
        let decoded = PermissionToken::decode(&golden_bytes(name)).unwrap();
        assert_eq!(decoded, token, "{name}");
        decoded.verify_signature().unwrap();
    }
    check_golden_text("token_root.txt", &root_token().to_text());
    check_golden_text(
        "token_chain.txt",
        &token::chain_to_text(&[root_token(), delegated_token()]),
    );
    let chain = token::chain_from_text(
        std::fs::read_to_string(golden_dir().join("token_chain.txt"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    assert_eq!(chain, [root_token(), delegated_token()]);

    // Channel hashes: the 8 little-endian bytes.
    for (name, channel) in [
        ("channel_hash_default", "default"),
        ("channel_hash_photos", "photos"),
    ] {
        let hash = token::channel_hash(channel);
        check_golden(name, &hash.0.to_le_bytes());
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&golden_bytes(name));
        assert_eq!(hash, ChannelHash(u64::from_le_bytes(bytes)));
    }
    assert_ne!(
        token::channel_hash("default"),
        token::channel_hash("Default")
    );

    // Corrupt vectors, with their errors.
    let root = root_token().encode();
    check_golden("corrupt_token_legacy_161", &root[..161]);
    check_golden("corrupt_token_170", &[root.as_slice(), &[0]].concat());
    let mut unknown_scope = root;
    unknown_scope[OFF_SCOPE] |= 1 << 5;
    check_golden("corrupt_token_unknown_scope", &unknown_scope);
    let mut bad_signature = root;
    bad_signature[TOKEN_LEN - 1] ^= 1;
    check_golden("corrupt_token_bad_signature", &bad_signature);
    assert_eq!(
        PermissionToken::decode(&golden_bytes("corrupt_token_legacy_161")),
        Err(TokenDecodeError::LegacyLength)
    );
    assert_eq!(
        PermissionToken::decode(&golden_bytes("corrupt_token_170")),
        Err(TokenDecodeError::Length { len: 170 })
    );
    assert_eq!(
        PermissionToken::decode(&golden_bytes("corrupt_token_unknown_scope")),
        Err(TokenDecodeError::UnknownScopeBits { bits: 1 << 5 })
    );
    let tampered = PermissionToken::decode(&golden_bytes("corrupt_token_bad_signature")).unwrap();
    assert!(tampered.verify_signature().is_err());
}
