//! A link that grants more than its parent — a right the parent lacks, a window starting
//! earlier or ending later, another channel, or every channel under a one-channel parent — is
//! refused with `WideningDelegation` naming what widened, and cannot be minted with
//! `delegate`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod token_fixtures;

use net_mesh_rpc::token::{
    self, DelegationFault, MintError, PermissionToken, Scope, TokenChannel, TokenClaims,
    VerifyError, Widened,
};
use token_fixtures::*;

#[test]
fn widening_delegation_is_refused() {
    let trust = Trust::root_only();
    let photos = TokenChannel::named("photos");
    let parent = PermissionToken::mint(
        &root(),
        claims(&alice(), Scope::READ | Scope::DELEGATE, photos, 2),
    )
    .unwrap();
    let base = claims(&bob(), Scope::READ, photos, 1);
    let ok = parent.delegate(&alice(), base).unwrap();
    assert!(
        token::verify(
            &[parent.clone(), ok],
            &trust.ctx(&bob(), "photos", Scope::READ)
        )
        .is_ok()
    );

    let cases: [(TokenClaims, Widened, &str); 5] = [
        (
            TokenClaims {
                scope: Scope::READ | Scope::WRITE,
                ..base
            },
            Widened::Scope,
            "photos",
        ),
        (
            TokenClaims {
                not_before: base.not_before - 1,
                ..base
            },
            Widened::Validity,
            "photos",
        ),
        (
            TokenClaims {
                not_after: base.not_after + 1,
                ..base
            },
            Widened::Validity,
            "photos",
        ),
        (
            TokenClaims {
                channel: TokenChannel::named("music"),
                ..base
            },
            Widened::Channel,
            "music",
        ),
        (
            TokenClaims {
                channel: TokenChannel::Any,
                ..base
            },
            Widened::Channel,
            "photos",
        ),
    ];
    for (wide, widened, channel) in cases {
        assert_eq!(
            parent.delegate(&alice(), wide),
            Err(MintError::Delegation(DelegationFault::Widened(widened)))
        );
        let child = PermissionToken::mint(&alice(), wide).unwrap();
        // Verified for a call the wide link itself would allow.
        let ctx = trust.ctx(&bob(), channel, Scope::READ);
        assert_eq!(
            token::verify(&[parent.clone(), child], &ctx),
            Err(VerifyError::WideningDelegation { link: 1, widened }),
            "{widened:?}"
        );
    }
}
