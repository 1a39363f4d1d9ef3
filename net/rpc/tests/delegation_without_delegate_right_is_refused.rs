//! A token without the `delegate` right cannot be passed on: a link under it is refused with
//! `DelegationNotPermitted`, even with depth to spare, and `delegate` will not mint it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod token_fixtures;

use net_mesh_rpc::token::{
    self, DelegationFault, MintError, PermissionToken, Scope, TokenChannel, VerifyError,
};
use token_fixtures::*;

#[test]
fn delegation_without_delegate_right_is_refused() {
    let trust = Trust::root_only();
    let channel = TokenChannel::named("default");
    let parent = PermissionToken::mint(
        &root(),
        claims(
            &alice(),
            Scope::READ | Scope::WRITE | Scope::ADMIN,
            channel,
            3,
        ),
    )
    .unwrap();
    let child_claims = claims(&bob(), Scope::READ, channel, 0);
    assert_eq!(
        parent.delegate(&alice(), child_claims),
        Err(MintError::Delegation(DelegationFault::NotPermitted))
    );
    let child = PermissionToken::mint(&alice(), child_claims).unwrap();
    assert_eq!(
        token::verify(&[parent, child], &trust.ctx(&bob(), "default", Scope::READ)),
        Err(VerifyError::DelegationNotPermitted { link: 1 })
    );
}
