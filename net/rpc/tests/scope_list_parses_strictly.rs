//! Rights lists (`read,write`) print and parse back; unknown, empty or repeated names are
//! refused; `none` is the empty scope; bits outside the four rights are not a scope.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod token_fixtures;

use net_mesh_rpc::token::{ParseScopeError, Scope};

#[test]
fn scope_list_parses_strictly() {
    for scope in (0..16).map(|bits| Scope::from_bits(bits).unwrap()) {
        assert_eq!(scope.to_string().parse::<Scope>(), Ok(scope), "{scope}");
    }
    assert_eq!("read,write".parse(), Ok(Scope::READ | Scope::WRITE));
    assert_eq!(
        "delegate,read".parse::<Scope>().unwrap().to_string(),
        "read,delegate"
    );
    assert_eq!(Scope::ALL.to_string(), "read,write,admin,delegate");
    assert_eq!("none".parse(), Ok(Scope::NONE));
    for (text, error) in [
        ("", ParseScopeError::Unknown(String::new())),
        ("read,", ParseScopeError::Unknown(String::new())),
        ("Read", ParseScopeError::Unknown("Read".into())),
        ("read, write", ParseScopeError::Unknown(" write".into())),
        ("owner", ParseScopeError::Unknown("owner".into())),
        ("read,read", ParseScopeError::Repeated("read".into())),
    ] {
        assert_eq!(text.parse::<Scope>(), Err(error), "{text:?}");
    }
    assert_eq!(Scope::from_bits(1 << 4), None);
    assert_eq!(Scope::from_bits(1 << 31), None);
}
