//! Shared fixtures for the permission-token tests: fixed-seed identities, a clock, claims,
//! trust sets and verify contexts, and golden-file helpers.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use net_mesh_rpc::token::{PermissionToken, Scope, TokenChannel, TokenClaims, VerifyContext};
use net_mesh_rpc::{Identity, NodeId};

/// The verifier's clock in every test (Unix seconds, 2027-01-15).
pub const NOW: u64 = 1_800_000_000;
/// Default validity: an hour either side of `NOW`.
pub const HOUR: u64 = 3600;

/// The trusted root issuer (seed 32 × 0x42, as in the other golden vectors).
pub fn root() -> Identity {
    Identity::from_seed([0x42; 32])
}
/// A node the root grants to.
pub fn alice() -> Identity {
    Identity::from_seed([0x43; 32])
}
/// A node alice delegates to.
pub fn bob() -> Identity {
    Identity::from_seed([0x44; 32])
}
/// A node bob delegates to.
pub fn carol() -> Identity {
    Identity::from_seed([0x45; 32])
}
/// Identities of a chain, root first, then `n` holders (alice, bob, carol, …).
pub fn holders(n: usize) -> Vec<Identity> {
    (0..=n)
        .map(|i| Identity::from_seed([0x42 + i as u8; 32]))
        .collect()
}

pub fn key(id: &Identity) -> [u8; 32] {
    id.public_key().to_bytes()
}

/// Claims for `subject`, valid an hour either side of `NOW`, generation 1.
pub fn claims(subject: &Identity, scope: Scope, channel: TokenChannel, depth: u8) -> TokenClaims {
    TokenClaims {
        subject: key(subject),
        scope,
        channel,
        issuer_generation: 1,
        not_before: NOW - HOUR,
        not_after: NOW + HOUR,
        delegation_depth: depth,
        nonce: 7,
    }
}

/// A root token for `subject`.
pub fn direct(subject: &Identity, scope: Scope, channel: &str) -> PermissionToken {
    PermissionToken::mint(
        &root(),
        claims(subject, scope, TokenChannel::named(channel), 0),
    )
    .unwrap()
}

/// A valid chain of `links` links on channel `channel`: root → alice → bob → …, every link
/// read|write|delegate with the depth dropping by one; the last link is for `holders(links)`'s
/// last identity.
pub fn valid_chain(links: usize, channel: &str) -> Vec<PermissionToken> {
    let ids = holders(links);
    let scope = Scope::READ | Scope::WRITE | Scope::DELEGATE;
    let mut depth = (links - 1) as u8;
    let mut chain = vec![
        PermissionToken::mint(
            &ids[0],
            claims(&ids[1], scope, TokenChannel::named(channel), depth),
        )
        .unwrap(),
    ];
    for i in 1..links {
        depth -= 1;
        let parent = chain.last().unwrap();
        let child = parent
            .delegate(
                &ids[i],
                claims(&ids[i + 1], scope, TokenChannel::named(channel), depth),
            )
            .unwrap();
        chain.push(child);
    }
    chain
}

/// Trusted issuers (the root) and revocation floors (none).
pub struct Trust {
    pub trusted: HashSet<NodeId>,
    pub floors: HashMap<NodeId, u32>,
}

impl Trust {
    pub fn root_only() -> Self {
        Trust {
            trusted: HashSet::from([root().node_id()]),
            floors: HashMap::new(),
        }
    }

    /// A context for a call by `peer` on `channel` needing `required`, at `NOW`.
    pub fn ctx<'a>(
        &'a self,
        peer: &Identity,
        channel: &'a str,
        required: Scope,
    ) -> VerifyContext<'a> {
        VerifyContext::new(
            &self.trusted,
            &self.floors,
            key(peer),
            channel,
            required,
            NOW,
        )
    }
}

pub fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("golden")
}

pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn from_hex(text: &str) -> Vec<u8> {
    let clean: String = text.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    (0..clean.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&clean[i..i + 2], 16).unwrap())
        .collect()
}

/// Compares `text` with the checked-in `tests/golden/{file}` (or rewrites it when
/// `NET_MESH_UPDATE_GOLDEN` is set).
pub fn check_golden_text(file: &str, text: &str) {
    let path = golden_dir().join(file);
    if std::env::var_os("NET_MESH_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, format!("{text}\n")).unwrap();
    }
    let stored =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(text, stored.trim(), "golden vector {file} changed");
}

/// Compares `bytes` with the checked-in `tests/golden/{name}.hex`.
pub fn check_golden(name: &str, bytes: &[u8]) {
    check_golden_text(&format!("{name}.hex"), &to_hex(bytes));
}

/// Reads `tests/golden/{name}.hex`.
pub fn golden_bytes(name: &str) -> Vec<u8> {
    let path = golden_dir().join(format!("{name}.hex"));
    from_hex(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

/// Lowercase unpadded base32 (a second, independent encoder for building texts of bytes
/// that are not tokens).
pub fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut bits = String::new();
    for b in bytes {
        bits.push_str(&format!("{b:08b}"));
    }
    while !bits.len().is_multiple_of(5) {
        bits.push('0');
    }
    (0..bits.len())
        .step_by(5)
        .map(|i| ALPHABET[usize::from_str_radix(&bits[i..i + 5], 2).unwrap()] as char)
        .collect()
}
