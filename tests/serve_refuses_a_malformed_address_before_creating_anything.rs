//! `net-mesh serve` with a malformed `--listen` or `--metrics` address (a real process) is a
//! usage error (exit 2) said before anything is created: the data dir gets no identity and no
//! store (it is not even made).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::node::serve_refused;

#[test]
fn serve_refuses_a_malformed_address_before_creating_anything() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    for args in [
        ["--listen", "nonsense", "", ""],
        ["--listen", "127.0.0.1:99999", "", ""],
        ["--listen", "127.0.0.1:", "", ""],
        ["--listen", ":7000", "", ""],
        ["--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:x"],
    ] {
        let args: Vec<&str> = args.into_iter().filter(|a| !a.is_empty()).collect();
        let (code, said) = serve_refused(&dir, &args);
        assert_eq!(code, Some(2), "{args:?}: {said}");
        assert!(said.contains("expected HOST:PORT"), "{args:?}: {said}");
        assert!(!dir.exists(), "{args:?} created {}", dir.display());
    }
}
