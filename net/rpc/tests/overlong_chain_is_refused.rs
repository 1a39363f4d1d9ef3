//! A chain of more than MAX_CHAIN_LEN links is refused with `ChainTooLong` before any link is
//! looked at — by the verifier, the chain decoder and the text parser.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod token_fixtures;

use net_mesh_rpc::token::{
    self, ChainDecodeError, MAX_CHAIN_LEN, ParseTokenError, Scope, VerifyError,
};
use token_fixtures::*;

#[test]
fn overlong_chain_is_refused() {
    let trust = Trust::root_only();
    let full = valid_chain(MAX_CHAIN_LEN, "default");
    let last = holders(MAX_CHAIN_LEN).pop().unwrap();
    assert!(token::verify(&full, &trust.ctx(&last, "default", Scope::READ)).is_ok());

    let mut chain = full.clone();
    chain.push(full[MAX_CHAIN_LEN - 1].clone());
    let links = MAX_CHAIN_LEN + 1;
    assert_eq!(
        token::verify(&chain, &trust.ctx(&last, "default", Scope::READ)),
        Err(VerifyError::ChainTooLong { links })
    );
    let bytes = token::encode_chain(&chain);
    assert_eq!(
        token::decode_chain(&bytes),
        Err(ChainDecodeError::TooLong { links })
    );
    assert_eq!(
        token::verify_encoded(&bytes, &trust.ctx(&last, "default", Scope::READ)),
        Err(VerifyError::ChainTooLong { links })
    );
    assert_eq!(
        token::chain_from_text(&token::chain_to_text(&chain)),
        Err(ParseTokenError::TooLong { links })
    );
    // Counted before decoding: seven garbage items are too many, not bad text.
    assert_eq!(
        token::chain_from_text("x.x.x.x.x.x.x"),
        Err(ParseTokenError::TooLong { links: 7 })
    );
}
