//! Any single bit flipped in a token's signature, or in the bytes it signs, makes the token
//! fail with `BadSignature` naming the link (when the flipped bytes still decode and the
//! other checks pass); `verify_signature` says the same.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod token_fixtures;

use net_mesh_rpc::token::{
    self, OFF_NONCE, OFF_SIGNATURE, PermissionToken, Scope, TOKEN_LEN, VerifyError,
};
use token_fixtures::*;

#[test]
fn bit_flipped_signature_is_refused() {
    let trust = Trust::root_only();
    let token = direct(&alice(), Scope::READ, "default");
    token.verify_signature().unwrap();
    let ctx = trust.ctx(&alice(), "default", Scope::READ);
    let bytes = token.encode();
    // Every bit of the signature, and every bit of the nonce (signed, checked by nothing else).
    let bits = (OFF_SIGNATURE * 8..TOKEN_LEN * 8).chain(OFF_NONCE * 8..(OFF_NONCE + 8) * 8);
    for bit in bits {
        let mut flipped = bytes;
        flipped[bit / 8] ^= 1 << (bit % 8);
        let tampered = PermissionToken::decode(&flipped).unwrap();
        assert!(tampered.verify_signature().is_err(), "bit {bit}");
        assert_eq!(
            token::verify(&[tampered], &ctx),
            Err(VerifyError::BadSignature { link: 0 }),
            "bit {bit}"
        );
    }
    // In a chain, the link with the bad signature is named.
    let chain = valid_chain(3, "default");
    let mut bytes = token::encode_chain(&chain);
    bytes[2 * TOKEN_LEN - 1] ^= 0x80; // last byte of link 1's signature
    assert_eq!(
        token::verify_encoded(&bytes, &trust.ctx(&carol(), "default", Scope::READ)),
        Err(VerifyError::BadSignature { link: 1 })
    );
}
