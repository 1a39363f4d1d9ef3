//! A token presented by a session whose authenticated peer is not the token's subject is
//! refused with `WrongSubject`, also at the end of a delegated chain.
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
fn token_for_another_subject_is_refused() {
    let trust = Trust::root_only();
    let token = [direct(&alice(), Scope::READ, "default")];
    assert!(token::verify(&token, &trust.ctx(&alice(), "default", Scope::READ)).is_ok());
    assert_eq!(
        token::verify(&token, &trust.ctx(&bob(), "default", Scope::READ)),
        Err(VerifyError::WrongSubject {
            subject: alice().node_id()
        })
    );
    // The root issuer itself is not the subject either.
    assert!(matches!(
        token::verify(&token, &trust.ctx(&root(), "default", Scope::READ)),
        Err(VerifyError::WrongSubject { .. })
    ));
    // A chain root → alice → bob: alice (an earlier subject) may not present it.
    let chain = valid_chain(2, "default");
    assert!(token::verify(&chain, &trust.ctx(&bob(), "default", Scope::READ)).is_ok());
    assert_eq!(
        token::verify(&chain, &trust.ctx(&alice(), "default", Scope::READ)),
        Err(VerifyError::WrongSubject {
            subject: bob().node_id()
        })
    );
}
