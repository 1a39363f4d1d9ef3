//! `verify_cached`: a chain whose signatures verified is remembered by its bytes' digest and
//! its later calls skip only the ed25519 checks — expiry, revocation floors, subject, channel
//! and scope are still refused every time; a chain with a bad signature is refused on every
//! call and never remembered; a chain differing in one signature byte is a different entry.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod token_fixtures;

use std::cell::RefCell;
use std::collections::HashSet;

use net_mesh_rpc::token::{
    self, PermissionToken, Scope, SignatureCache, VerifyError, decode_chain, encode_chain,
};
use token_fixtures::*;

#[derive(Default)]
struct Cache {
    seen: RefCell<HashSet<[u8; 32]>>,
    asked: RefCell<u32>,
}

impl SignatureCache for Cache {
    fn contains(&self, digest: &[u8; 32]) -> bool {
        *self.asked.borrow_mut() += 1;
        self.seen.borrow().contains(digest)
    }
    fn insert(&self, digest: [u8; 32]) {
        self.seen.borrow_mut().insert(digest);
    }
}

#[test]
fn a_cached_chain_skips_only_its_signature_checks() {
    let mut trust = Trust::root_only();
    let cache = Cache::default();
    let chain = valid_chain(3, "default"); // root → alice → bob → carol

    let first =
        token::verify_cached(&chain, &trust.ctx(&carol(), "default", Scope::READ), &cache).unwrap();
    assert_eq!(
        first,
        token::verify(&chain, &trust.ctx(&carol(), "default", Scope::READ)).unwrap()
    );
    assert_eq!(cache.seen.borrow().len(), 1);
    assert_eq!(
        token::verify_cached(&chain, &trust.ctx(&carol(), "default", Scope::READ), &cache).unwrap(),
        first
    );
    assert_eq!(cache.seen.borrow().len(), 1);

    // Every check but the signatures still runs on a remembered chain.
    let mut late = trust.ctx(&carol(), "default", Scope::READ);
    late.now_unix_s = NOW + 10 * 3600;
    assert!(matches!(
        token::verify_cached(&chain, &late, &cache),
        Err(VerifyError::Expired { .. })
    ));
    let other_peer = trust.ctx(&alice(), "default", Scope::READ);
    assert!(matches!(
        token::verify_cached(&chain, &other_peer, &cache),
        Err(VerifyError::WrongSubject { .. })
    ));
    let other_channel = trust.ctx(&carol(), "photos", Scope::READ);
    assert!(matches!(
        token::verify_cached(&chain, &other_channel, &cache),
        Err(VerifyError::WrongChannel { .. })
    ));
    let admin = trust.ctx(&carol(), "default", Scope::ADMIN);
    assert!(matches!(
        token::verify_cached(&chain, &admin, &cache),
        Err(VerifyError::MissingScope { .. })
    ));
    trust.floors.insert(alice().node_id(), 5);
    assert!(matches!(
        token::verify_cached(&chain, &trust.ctx(&carol(), "default", Scope::READ), &cache),
        Err(VerifyError::RevokedGeneration { link: 1, .. })
    ));
    trust.floors.clear();

    // A flipped signature bit: refused each time, never remembered.
    let mut bytes = encode_chain(&chain);
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    let forged: Vec<PermissionToken> = decode_chain(&bytes).unwrap();
    for _ in 0..2 {
        assert_eq!(
            token::verify_cached(
                &forged,
                &trust.ctx(&carol(), "default", Scope::READ),
                &cache
            ),
            Err(VerifyError::BadSignature { link: 2 })
        );
    }
    assert_eq!(cache.seen.borrow().len(), 1);
    assert!(*cache.asked.borrow() >= 4);
}
