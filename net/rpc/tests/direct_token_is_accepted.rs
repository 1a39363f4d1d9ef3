//! A token minted by a trusted issuer for the session's peer, on the call's channel, with the
//! rights the call needs, inside its window, is accepted — one channel or every channel.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod token_fixtures;

use net_mesh_rpc::token::{self, PermissionToken, Scope, TokenChannel, Verified};
use token_fixtures::*;

#[test]
fn direct_token_is_accepted() {
    let trust = Trust::root_only();
    let token = direct(&alice(), Scope::READ | Scope::WRITE, "photos");
    let verified = token::verify(
        std::slice::from_ref(&token),
        &trust.ctx(&alice(), "photos", Scope::WRITE),
    )
    .unwrap();
    assert_eq!(
        verified,
        Verified {
            root_issuer: root().node_id(),
            scope: Scope::READ | Scope::WRITE,
            channel: TokenChannel::named("photos"),
            not_after: NOW + HOUR,
            links: 1,
        }
    );
    // The same token, carried as bytes (call metadata) and as text.
    let ctx = trust.ctx(&alice(), "photos", Scope::READ);
    assert_eq!(
        token::verify_encoded(&token.encode(), &ctx).unwrap().links,
        1
    );
    let parsed: PermissionToken = token.to_text().parse().unwrap();
    assert_eq!(token::verify(&[parsed], &ctx).unwrap().links, 1);

    // A wildcard token is accepted on any channel.
    let any = PermissionToken::mint(&root(), claims(&alice(), Scope::READ, TokenChannel::Any, 0))
        .unwrap();
    for channel in ["default", "photos", ""] {
        let verified = token::verify(
            std::slice::from_ref(&any),
            &trust.ctx(&alice(), channel, Scope::READ),
        )
        .unwrap();
        assert_eq!(verified.channel, TokenChannel::Any);
    }
}
