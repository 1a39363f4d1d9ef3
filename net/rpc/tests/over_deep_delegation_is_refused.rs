//! A link whose delegation depth does not drop strictly below its parent's is refused with
//! `OverDeepDelegation` (verifying a hand-signed chain) and cannot be minted with `delegate`;
//! a depth-0 token cannot be delegated at all.
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
fn over_deep_delegation_is_refused() {
    let trust = Trust::root_only();
    let scope = Scope::READ | Scope::DELEGATE;
    let channel = TokenChannel::named("default");
    for (parent_depth, depth) in [(1u8, 1u8), (1, 2), (0, 0), (3, 5)] {
        let parent =
            PermissionToken::mint(&root(), claims(&alice(), scope, channel, parent_depth)).unwrap();
        let child_claims = claims(&bob(), Scope::READ, channel, depth);
        assert_eq!(
            parent.delegate(&alice(), child_claims),
            Err(MintError::Delegation(DelegationFault::OverDeep {
                parent_depth,
                depth
            }))
        );
        // Signed by alice anyway, without the check: the verifier refuses it.
        let child = PermissionToken::mint(&alice(), child_claims).unwrap();
        assert_eq!(
            token::verify(
                &[parent.clone(), child],
                &trust.ctx(&bob(), "default", Scope::READ)
            ),
            Err(VerifyError::OverDeepDelegation {
                link: 1,
                parent_depth,
                depth
            })
        );
    }
    // One below the parent is fine.
    let parent = PermissionToken::mint(&root(), claims(&alice(), scope, channel, 3)).unwrap();
    let child = parent
        .delegate(&alice(), claims(&bob(), Scope::READ, channel, 2))
        .unwrap();
    assert!(token::verify(&[parent, child], &trust.ctx(&bob(), "default", Scope::READ)).is_ok());
}
