//! A token past its not_after by more than the skew is refused with `Expired`; the same
//! token at the last second the skew allows is accepted.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod token_fixtures;

use net_mesh_rpc::token::{self, DEFAULT_SKEW_S, Scope, VerifyError};
use token_fixtures::*;

#[test]
fn expired_token_is_refused() {
    let trust = Trust::root_only();
    let token = [direct(&alice(), Scope::READ, "default")];
    let mut ctx = trust.ctx(&alice(), "default", Scope::READ);
    ctx.now_unix_s = NOW + HOUR + DEFAULT_SKEW_S;
    assert!(token::verify(&token, &ctx).is_ok());
    ctx.now_unix_s += 1;
    assert_eq!(
        token::verify(&token, &ctx),
        Err(VerifyError::Expired {
            not_after: NOW + HOUR,
            now: NOW + HOUR + DEFAULT_SKEW_S + 1
        })
    );
    // Far in the future (no overflow near u64::MAX).
    ctx.now_unix_s = u64::MAX;
    assert!(matches!(
        token::verify(&token, &ctx),
        Err(VerifyError::Expired { .. })
    ));
}
