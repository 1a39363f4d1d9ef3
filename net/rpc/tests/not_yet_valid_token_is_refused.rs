//! A token whose not_before is later than now by more than the skew is refused with
//! `NotYetValid`; the same token at the first second the skew allows is accepted.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod token_fixtures;

use net_mesh_rpc::token::{
    self, DEFAULT_SKEW_S, PermissionToken, Scope, TokenChannel, VerifyError,
};
use token_fixtures::*;

#[test]
fn not_yet_valid_token_is_refused() {
    let trust = Trust::root_only();
    let mut later = claims(&alice(), Scope::READ, TokenChannel::named("default"), 0);
    later.not_before = NOW + 600;
    later.not_after = NOW + 1200;
    let token = [PermissionToken::mint(&root(), later).unwrap()];
    let mut ctx = trust.ctx(&alice(), "default", Scope::READ);
    assert_eq!(
        token::verify(&token, &ctx),
        Err(VerifyError::NotYetValid {
            not_before: NOW + 600,
            now: NOW
        })
    );
    ctx.now_unix_s = NOW + 600 - DEFAULT_SKEW_S - 1;
    assert!(matches!(
        token::verify(&token, &ctx),
        Err(VerifyError::NotYetValid { .. })
    ));
    ctx.now_unix_s += 1;
    assert!(token::verify(&token, &ctx).is_ok());
}
