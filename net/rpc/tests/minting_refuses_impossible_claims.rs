//! Minting refuses claims no verifier would accept: a window that ends before it starts, a
//! delegation depth above the maximum; a depth of exactly the maximum is minted.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod token_fixtures;

use net_mesh_rpc::token::{
    self, MAX_DELEGATION_DEPTH, MintError, PermissionToken, Scope, TokenChannel,
};
use token_fixtures::*;

#[test]
fn minting_refuses_impossible_claims() {
    let base = claims(&alice(), Scope::READ, TokenChannel::named("default"), 0);
    let inverted = token::TokenClaims {
        not_before: 11,
        not_after: 10,
        ..base
    };
    assert_eq!(
        PermissionToken::mint(&root(), inverted),
        Err(MintError::InvertedValidity {
            not_before: 11,
            not_after: 10
        })
    );
    let instant = token::TokenClaims {
        not_before: 10,
        not_after: 10,
        ..base
    };
    assert!(PermissionToken::mint(&root(), instant).is_ok());
    let deep = token::TokenClaims {
        delegation_depth: MAX_DELEGATION_DEPTH + 1,
        ..base
    };
    assert_eq!(
        PermissionToken::mint(&root(), deep),
        Err(MintError::DelegationDepthTooLarge {
            depth: MAX_DELEGATION_DEPTH + 1
        })
    );
    let deepest = token::TokenClaims {
        delegation_depth: MAX_DELEGATION_DEPTH,
        ..base
    };
    let minted = PermissionToken::mint(&root(), deepest).unwrap();
    assert_eq!(PermissionToken::decode(&minted.encode()).unwrap(), minted);
    // Nonces from the OS differ.
    assert_ne!(token::fresh_nonce().unwrap(), token::fresh_nonce().unwrap());
}
