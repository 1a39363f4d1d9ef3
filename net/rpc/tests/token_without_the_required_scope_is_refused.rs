//! A call that needs a right the token does not grant is refused with `MissingScope`;
//! rights are independent bits (admin does not imply write).
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
fn token_without_the_required_scope_is_refused() {
    let trust = Trust::root_only();
    let token = [direct(&alice(), Scope::READ | Scope::ADMIN, "default")];
    for ok in [
        Scope::NONE,
        Scope::READ,
        Scope::ADMIN,
        Scope::READ | Scope::ADMIN,
    ] {
        assert!(token::verify(&token, &trust.ctx(&alice(), "default", ok)).is_ok());
    }
    for needed in [Scope::WRITE, Scope::DELEGATE, Scope::READ | Scope::WRITE] {
        assert_eq!(
            token::verify(&token, &trust.ctx(&alice(), "default", needed)),
            Err(VerifyError::MissingScope {
                required: needed,
                granted: Scope::READ | Scope::ADMIN
            })
        );
    }
}
