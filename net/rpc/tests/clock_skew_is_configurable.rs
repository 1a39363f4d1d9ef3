//! The skew widens the validity window at both ends by exactly its value: with skew 0 a token
//! is valid from not_before to not_after inclusive; with skew 300 five minutes more each side.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod token_fixtures;

use net_mesh_rpc::token::{self, Scope, VerifyError};
use token_fixtures::*;

#[test]
fn clock_skew_is_configurable() {
    let trust = Trust::root_only();
    let token = [direct(&alice(), Scope::READ, "default")];
    let mut ctx = trust.ctx(&alice(), "default", Scope::READ);
    let (start, end) = (NOW - HOUR, NOW + HOUR);
    for skew in [0, 300] {
        ctx.skew_s = skew;
        for (now, ok) in [
            (start - skew - 1, false),
            (start - skew, true),
            (end + skew, true),
            (end + skew + 1, false),
        ] {
            ctx.now_unix_s = now;
            let result = token::verify(&token, &ctx);
            assert_eq!(result.is_ok(), ok, "skew {skew}, now {now}: {result:?}");
            if !ok {
                assert!(matches!(
                    result,
                    Err(VerifyError::NotYetValid { .. } | VerifyError::Expired { .. })
                ));
            }
        }
    }
}
