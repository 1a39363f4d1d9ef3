//! Chains of 2 to MAX_CHAIN_LEN links, each minted with `delegate` by the previous link's
//! subject, verify for the last subject; so does a wildcard parent narrowed to one channel,
//! and a link that narrows rights and window.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod token_fixtures;

use net_mesh_rpc::token::{self, MAX_CHAIN_LEN, PermissionToken, Scope, TokenChannel};
use token_fixtures::*;

#[test]
fn delegated_chain_is_accepted() {
    let trust = Trust::root_only();
    for links in 2..=MAX_CHAIN_LEN {
        let chain = valid_chain(links, "photos");
        let last = holders(links).pop().unwrap();
        let verified = token::verify(&chain, &trust.ctx(&last, "photos", Scope::WRITE)).unwrap();
        assert_eq!(verified.links, links);
        assert_eq!(verified.root_issuer, root().node_id());
        // Binary and text forms carry the same chain.
        let ctx = trust.ctx(&last, "photos", Scope::READ);
        assert_eq!(
            token::decode_chain(&token::encode_chain(&chain)).unwrap(),
            chain
        );
        assert_eq!(
            token::verify_encoded(&token::encode_chain(&chain), &ctx)
                .unwrap()
                .links,
            links
        );
        assert_eq!(
            token::chain_from_text(&token::chain_to_text(&chain)).unwrap(),
            chain
        );
    }

    // A wildcard root narrowed by alice to one channel, fewer rights and a shorter window.
    let parent =
        PermissionToken::mint(&root(), claims(&alice(), Scope::ALL, TokenChannel::Any, 1)).unwrap();
    let mut narrow = claims(&bob(), Scope::READ, TokenChannel::named("music"), 0);
    narrow.not_before = NOW - 60;
    narrow.not_after = NOW + 60;
    narrow.issuer_generation = 9;
    let child = parent.delegate(&alice(), narrow).unwrap();
    let verified =
        token::verify(&[parent, child], &trust.ctx(&bob(), "music", Scope::READ)).unwrap();
    assert_eq!(verified.scope, Scope::READ);
    assert_eq!(verified.channel, TokenChannel::named("music"));
    assert_eq!(verified.not_after, NOW + 60);
}
