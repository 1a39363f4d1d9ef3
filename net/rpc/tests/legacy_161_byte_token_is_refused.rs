//! A 161-byte token (the older layout: 32-bit channel hash, no issuer generation) is refused
//! with its own error, `LegacyLength`, by the token decoder, the chain decoder, the verifier
//! and the text parser — never read as something else.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod token_fixtures;

use net_mesh_rpc::token::{
    self, ChainDecodeError, LEGACY_TOKEN_LEN, ParseTokenError, PermissionToken, Scope,
    TokenDecodeError, VerifyError,
};
use token_fixtures::*;

#[test]
fn legacy_161_byte_token_is_refused() {
    let legacy = golden_bytes("corrupt_token_legacy_161");
    assert_eq!(legacy.len(), LEGACY_TOKEN_LEN);
    assert_eq!(
        PermissionToken::decode(&legacy),
        Err(TokenDecodeError::LegacyLength)
    );
    assert_eq!(
        token::decode_chain(&legacy),
        Err(ChainDecodeError::LegacyLength { len: 161 })
    );
    let trust = Trust::root_only();
    let ctx = trust.ctx(&alice(), "default", Scope::READ);
    assert_eq!(
        token::verify_encoded(&legacy, &ctx),
        Err(VerifyError::LegacyLength { len: 161 })
    );
    // Two of them back to back.
    let two = [legacy.clone(), legacy.clone()].concat();
    assert_eq!(
        token::verify_encoded(&two, &ctx),
        Err(VerifyError::LegacyLength { len: 322 })
    );
    // As text.
    let text = format!("nmt1{}", base32(&legacy));
    assert_eq!(
        text.parse::<PermissionToken>(),
        Err(ParseTokenError::Token {
            link: 0,
            error: TokenDecodeError::LegacyLength
        })
    );
    assert_eq!(
        VerifyError::LegacyLength { len: 161 }.reason(),
        "legacy_length"
    );
}
