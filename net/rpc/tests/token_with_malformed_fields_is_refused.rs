//! 169 bytes whose fields break the layout's rules are refused by the decoder, each with its
//! own error: unknown scope bits, a wildcard token with a channel hash, not_before after
//! not_after, a delegation depth above the maximum; in a chain the link is named.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod token_fixtures;

use net_mesh_rpc::token::{
    self, OFF_CHANNEL_HASH, OFF_DELEGATION_DEPTH, OFF_NOT_AFTER, OFF_NOT_BEFORE, OFF_SCOPE,
    PermissionToken, SCOPE_BIT_ANY_CHANNEL, Scope, TOKEN_LEN, TokenDecodeError, VerifyError,
};
use token_fixtures::*;

fn set(bytes: &mut [u8; TOKEN_LEN], offset: usize, value: &[u8]) {
    bytes[offset..offset + value.len()].copy_from_slice(value);
}

#[test]
fn token_with_malformed_fields_is_refused() {
    let good = direct(&alice(), Scope::READ, "default").encode();
    PermissionToken::decode(&good).unwrap();

    assert_eq!(
        PermissionToken::decode(&golden_bytes("corrupt_token_unknown_scope")),
        Err(TokenDecodeError::UnknownScopeBits { bits: 1 << 5 })
    );
    for bit in 5..32 {
        let mut bytes = good;
        set(&mut bytes, OFF_SCOPE, &(1u32 | 1 << bit).to_le_bytes());
        assert_eq!(
            PermissionToken::decode(&bytes),
            Err(TokenDecodeError::UnknownScopeBits { bits: 1 << bit })
        );
    }

    let mut wildcard = good;
    set(
        &mut wildcard,
        OFF_SCOPE,
        &(1 | SCOPE_BIT_ANY_CHANNEL).to_le_bytes(),
    );
    let hash = token::channel_hash("default");
    assert_eq!(
        PermissionToken::decode(&wildcard),
        Err(TokenDecodeError::WildcardWithChannelHash { hash })
    );
    set(&mut wildcard, OFF_CHANNEL_HASH, &0u64.to_le_bytes());
    assert_eq!(
        PermissionToken::decode(&wildcard).unwrap().claims().channel,
        token::TokenChannel::Any
    );

    let mut inverted = good;
    set(&mut inverted, OFF_NOT_BEFORE, &10u64.to_le_bytes());
    set(&mut inverted, OFF_NOT_AFTER, &9u64.to_le_bytes());
    assert_eq!(
        PermissionToken::decode(&inverted),
        Err(TokenDecodeError::InvertedValidity {
            not_before: 10,
            not_after: 9
        })
    );

    let mut deep = good;
    set(
        &mut deep,
        OFF_DELEGATION_DEPTH,
        &[token::MAX_DELEGATION_DEPTH + 1],
    );
    assert_eq!(
        PermissionToken::decode(&deep),
        Err(TokenDecodeError::DelegationDepthTooLarge {
            depth: token::MAX_DELEGATION_DEPTH + 1
        })
    );

    // In a chain, the malformed link is named and nothing else is looked at.
    let bytes = [good.as_slice(), &deep].concat();
    let trust = Trust::root_only();
    assert_eq!(
        token::verify_encoded(&bytes, &trust.ctx(&alice(), "default", Scope::READ)),
        Err(VerifyError::Malformed {
            link: 1,
            error: TokenDecodeError::DelegationDepthTooLarge {
                depth: token::MAX_DELEGATION_DEPTH + 1
            }
        })
    );
}
