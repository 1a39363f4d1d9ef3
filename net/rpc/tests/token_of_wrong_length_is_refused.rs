//! Bytes of any length other than 169 (one token) or a multiple of it (a chain) are refused
//! with `Length` (not `LegacyLength`): 0, 1, 168, 170, 338 + 1 bytes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod token_fixtures;

use net_mesh_rpc::token::{
    self, ChainDecodeError, ParseTokenError, PermissionToken, Scope, TOKEN_LEN, TokenDecodeError,
    VerifyError,
};
use token_fixtures::*;

#[test]
fn token_of_wrong_length_is_refused() {
    let long = golden_bytes("corrupt_token_170");
    assert_eq!(long.len(), 170);
    let valid = direct(&alice(), Scope::READ, "default").encode();
    for len in [0usize, 1, 168, 170, 322 - 1, 2 * TOKEN_LEN + 1] {
        let bytes: Vec<u8> = valid.iter().copied().cycle().take(len).collect();
        assert_eq!(
            PermissionToken::decode(&bytes),
            Err(TokenDecodeError::Length { len }),
            "{len}"
        );
    }
    assert_eq!(
        PermissionToken::decode(&long),
        Err(TokenDecodeError::Length { len: 170 })
    );
    assert_eq!(
        token::decode_chain(&long),
        Err(ChainDecodeError::Length { len: 170 })
    );
    assert_eq!(token::decode_chain(&[]), Err(ChainDecodeError::Empty));
    let trust = Trust::root_only();
    let ctx = trust.ctx(&alice(), "default", Scope::READ);
    assert_eq!(
        token::verify_encoded(&long, &ctx),
        Err(VerifyError::Length { len: 170 })
    );
    assert_eq!(
        token::verify_encoded(&[], &ctx),
        Err(VerifyError::EmptyChain)
    );
    assert_eq!(token::verify(&[], &ctx), Err(VerifyError::EmptyChain));
    // The valid token itself passes; as text, 170 bytes is refused the same way.
    assert!(token::verify_encoded(&valid, &ctx).is_ok());
    assert_eq!(
        format!("nmt1{}", base32(&long)).parse::<PermissionToken>(),
        Err(ParseTokenError::Token {
            link: 0,
            error: TokenDecodeError::Length { len: 170 }
        })
    );
}
