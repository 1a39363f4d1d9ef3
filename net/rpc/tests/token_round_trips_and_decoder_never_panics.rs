//! Properties: every minted token decodes to itself from its bytes and its text, and its
//! signature verifies; arbitrary bytes and strings never panic the token, chain and text
//! decoders (the fuzz harness's invariants hold on them).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod token_fixtures;

use net_mesh_rpc::Identity;
use net_mesh_rpc::fuzzing;
use net_mesh_rpc::token::{
    self, ChannelHash, MAX_DELEGATION_DEPTH, OFF_CHANNEL_HASH, OFF_DELEGATION_DEPTH, OFF_NOT_AFTER,
    OFF_NOT_BEFORE, OFF_SCOPE, PermissionToken, Scope, TOKEN_LEN, TokenChannel, TokenClaims,
};

fn read_u64(bytes: &[u8], offset: usize) -> u64 {
    u64::from_le_bytes(bytes[offset..offset + 8].try_into().unwrap())
}
use proptest::prelude::*;

fn claims() -> impl Strategy<Value = TokenClaims> {
    (
        any::<[u8; 32]>(),
        0u32..16,
        proptest::option::of(any::<u64>()),
        any::<u32>(),
        any::<u64>(),
        any::<u64>(),
        0..=MAX_DELEGATION_DEPTH,
        any::<u64>(),
    )
        .prop_map(
            |(subject, bits, channel, generation, a, b, depth, nonce)| TokenClaims {
                subject,
                scope: Scope::from_bits(bits).unwrap(),
                channel: channel.map_or(TokenChannel::Any, |h| TokenChannel::Named(ChannelHash(h))),
                issuer_generation: generation,
                not_before: a.min(b),
                not_after: a.max(b),
                delegation_depth: depth,
                nonce,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn minted_tokens_round_trip(seed in any::<[u8; 32]>(), claims in claims()) {
        let token = PermissionToken::mint(&Identity::from_seed(seed), claims).unwrap();
        let bytes = token.encode();
        prop_assert_eq!(PermissionToken::decode(&bytes), Ok(token.clone()));
        prop_assert_eq!(token.to_text().parse::<PermissionToken>(), Ok(token.clone()));
        prop_assert_eq!(token.claims(), &claims);
        prop_assert!(token.verify_signature().is_ok());
        fuzzing::token_decoder(&bytes);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoders(bytes in proptest::collection::vec(any::<u8>(), 0..1100)) {
        let _ = PermissionToken::decode(&bytes);
        let _ = token::decode_chain(&bytes);
        fuzzing::token_decoder(&bytes);
    }

    /// 169 bytes with the scope and depth mostly in range, so most of them decode.
    #[test]
    fn arbitrary_token_sized_bytes_round_trip(mut bytes in proptest::collection::vec(any::<u8>(), TOKEN_LEN), scope in 0u8..40, depth in 0u8..8) {
        bytes[OFF_SCOPE..OFF_SCOPE + 4].copy_from_slice(&u32::from(scope).to_le_bytes());
        if scope & 16 != 0 {
            bytes[OFF_CHANNEL_HASH..OFF_CHANNEL_HASH + 8].fill(0);
        }
        bytes[OFF_DELEGATION_DEPTH] = depth;
        let (a, b) = (read_u64(&bytes, OFF_NOT_BEFORE), read_u64(&bytes, OFF_NOT_AFTER));
        bytes[OFF_NOT_BEFORE..OFF_NOT_BEFORE + 8].copy_from_slice(&a.min(b).to_le_bytes());
        bytes[OFF_NOT_AFTER..OFF_NOT_AFTER + 8].copy_from_slice(&a.max(b).to_le_bytes());
        match PermissionToken::decode(&bytes) {
            Ok(token) => prop_assert_eq!(token.encode().to_vec(), bytes.clone()),
            Err(error) => prop_assert!(scope >= 32 || depth > MAX_DELEGATION_DEPTH, "{error}"),
        }
        fuzzing::token_decoder(&bytes);
        fuzzing::token_decoder(&[bytes.as_slice(), &bytes].concat());
    }

    #[test]
    fn arbitrary_text_never_panics_the_parser(text in "(nmt1)?[a-z2-7.=A-Z ]{0,600}") {
        let _ = token::chain_from_text(&text);
        fuzzing::token_decoder(text.as_bytes());
    }
}
