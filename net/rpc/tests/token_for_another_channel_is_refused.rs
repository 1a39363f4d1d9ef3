//! A token for one channel, used on another, is refused with `WrongChannel`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod token_fixtures;

use net_mesh_rpc::token::{self, Scope, TokenChannel, VerifyError};
use token_fixtures::*;

#[test]
fn token_for_another_channel_is_refused() {
    let trust = Trust::root_only();
    let token = [direct(&alice(), Scope::READ, "photos")];
    assert!(token::verify(&token, &trust.ctx(&alice(), "photos", Scope::READ)).is_ok());
    for other in ["music", "Photos", "photos ", "", "default"] {
        assert_eq!(
            token::verify(&token, &trust.ctx(&alice(), other, Scope::READ)),
            Err(VerifyError::WrongChannel {
                channel: TokenChannel::named("photos")
            }),
            "{other:?}"
        );
    }
}
