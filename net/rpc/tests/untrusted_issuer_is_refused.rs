//! A chain whose root issuer is not in the verifier's trusted set is refused with
//! `UntrustedIssuer` — a self-issued token, or a chain that passes through a trusted node
//! only after its root.
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
fn untrusted_issuer_is_refused() {
    let trust = Trust::root_only();
    let channel = TokenChannel::named("default");
    // Alice grants herself.
    let own = PermissionToken::mint(&alice(), claims(&alice(), Scope::ALL, channel, 0)).unwrap();
    assert_eq!(
        token::verify(&[own], &trust.ctx(&alice(), "default", Scope::READ)),
        Err(VerifyError::UntrustedIssuer {
            issuer: alice().node_id()
        })
    );
    // Alice grants the (trusted) root, which delegates on to bob: the root of the chain is
    // still alice.
    let first = PermissionToken::mint(
        &alice(),
        claims(&root(), Scope::READ | Scope::DELEGATE, channel, 1),
    )
    .unwrap();
    let second = first
        .delegate(&root(), claims(&bob(), Scope::READ, channel, 0))
        .unwrap();
    assert_eq!(
        token::verify(
            &[first, second.clone()],
            &trust.ctx(&bob(), "default", Scope::READ)
        ),
        Err(VerifyError::UntrustedIssuer {
            issuer: alice().node_id()
        })
    );
    // The root's part alone is trusted.
    assert!(token::verify(&[second], &trust.ctx(&bob(), "default", Scope::READ)).is_ok());
    // Nobody is trusted.
    let mut nobody = Trust::root_only();
    nobody.trusted.clear();
    assert!(matches!(
        token::verify(
            &[direct(&alice(), Scope::READ, "default")],
            &nobody.ctx(&alice(), "default", Scope::READ)
        ),
        Err(VerifyError::UntrustedIssuer { .. })
    ));
}
