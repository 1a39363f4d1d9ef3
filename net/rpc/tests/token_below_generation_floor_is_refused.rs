//! Revocation by issuer generation: once a floor is set for an issuer, its tokens of a lower
//! generation are refused with `RevokedGeneration` — a root's, or a delegating holder's
//! anywhere in a chain; tokens at or above the floor still pass.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod token_fixtures;

use net_mesh_rpc::token::{self, PermissionToken, Scope, TokenChannel, VerifyError};
use token_fixtures::*;

#[test]
fn token_below_generation_floor_is_refused() {
    let mut trust = Trust::root_only();
    let old = [direct(&alice(), Scope::READ, "default")]; // generation 1
    let mut fresh_claims = claims(&alice(), Scope::READ, TokenChannel::named("default"), 0);
    fresh_claims.issuer_generation = 2;
    let fresh = [PermissionToken::mint(&root(), fresh_claims).unwrap()];
    assert!(token::verify(&old, &trust.ctx(&alice(), "default", Scope::READ)).is_ok());

    trust.floors.insert(root().node_id(), 2);
    assert_eq!(
        token::verify(&old, &trust.ctx(&alice(), "default", Scope::READ)),
        Err(VerifyError::RevokedGeneration {
            link: 0,
            issuer: root().node_id(),
            generation: 1,
            floor: 2
        })
    );
    assert!(token::verify(&fresh, &trust.ctx(&alice(), "default", Scope::READ)).is_ok());

    // A floor on alice revokes what alice delegated (link 1), not the root's grant to her.
    let mut trust = Trust::root_only();
    let chain = valid_chain(3, "default"); // root → alice → bob → carol, generation 1 each
    assert!(token::verify(&chain, &trust.ctx(&carol(), "default", Scope::READ)).is_ok());
    trust.floors.insert(alice().node_id(), 5);
    assert_eq!(
        token::verify(&chain, &trust.ctx(&carol(), "default", Scope::READ)),
        Err(VerifyError::RevokedGeneration {
            link: 1,
            issuer: alice().node_id(),
            generation: 1,
            floor: 5
        })
    );
    assert!(token::verify(&chain[..1], &trust.ctx(&alice(), "default", Scope::READ)).is_ok());
}
