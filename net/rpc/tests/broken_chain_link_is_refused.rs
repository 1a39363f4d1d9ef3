//! A link not signed by the subject of the link before it is refused with
//! `BrokenChainLink`: a third party cannot extend someone else's grant, and only the subject
//! may call `delegate`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod token_fixtures;

use net_mesh_rpc::token::{self, MintError, PermissionToken, Scope, TokenChannel, VerifyError};
use token_fixtures::*;

#[test]
fn broken_chain_link_is_refused() {
    let trust = Trust::root_only();
    let channel = TokenChannel::named("default");
    let parent = PermissionToken::mint(
        &root(),
        claims(&alice(), Scope::READ | Scope::DELEGATE, channel, 2),
    )
    .unwrap();
    let child_claims = claims(&carol(), Scope::READ, channel, 1);
    // Bob holds nothing of alice's, yet signs a "delegation" of her token to carol.
    assert_eq!(
        parent.delegate(&bob(), child_claims),
        Err(MintError::NotTheSubject)
    );
    let forged = PermissionToken::mint(&bob(), child_claims).unwrap();
    assert_eq!(
        token::verify(
            &[parent.clone(), forged],
            &trust.ctx(&carol(), "default", Scope::READ)
        ),
        Err(VerifyError::BrokenChainLink { link: 1 })
    );
    // A chain with a link out of order (root → alice → bob → carol, with the middle two swapped).
    let mut chain = valid_chain(3, "default");
    chain.swap(1, 2);
    assert_eq!(
        token::verify(&chain, &trust.ctx(&carol(), "default", Scope::READ)),
        Err(VerifyError::BrokenChainLink { link: 1 })
    );
    // The root's token repeated: its issuer is not its own subject.
    assert_eq!(
        token::verify(
            &[parent.clone(), parent],
            &trust.ctx(&alice(), "default", Scope::READ)
        ),
        Err(VerifyError::BrokenChainLink { link: 1 })
    );
}
