//! Permission tokens (docs/FORMAT.md section 5.5): 169-byte ed25519-signed grants that let a
//! subject node use a channel of a storage node with a set of rights for a time window, and
//! chains of them that pass a grant on (delegation) with narrowing rights.
//!
//! This module is pure: it encodes, decodes, mints, delegates and verifies tokens and chains
//! against a caller-supplied [`VerifyContext`]; it stores nothing (trusted issuers and
//! revocation floors are the caller's, e.g. the storage node's) and reads no clock (the caller
//! passes `now`).
//!
//! Layout (all integers little-endian), offsets named by the `OFF_*` constants:
//!
//! ```text
//! issuer public key 32 | subject public key 32 | scope u32 | channel hash u64 |
//! issuer generation u32 | not_before u64 | not_after u64 | delegation depth u8 | nonce u64 |
//! ed25519 signature 64
//! ```
//!
//! The signature is the issuer's, over [`SIGNATURE_DOMAIN`] followed by the first
//! [`SIGNED_LEN`] (105) bytes, verified with `verify_strict`. Decoding is strict: exactly
//! [`TOKEN_LEN`] bytes (the older 161-byte layout gets its own error), no unknown scope bits, a
//! wildcard token carries channel hash 0, `not_before <= not_after`, and the delegation depth is
//! at most [`MAX_DELEGATION_DEPTH`]. Decoding does not check the signature
//! ([`PermissionToken::verify_signature`] and [`verify`] do), so a token can be inspected even
//! when its signature is bad.

use std::fmt;

use ed25519_dalek::{Signature, VerifyingKey};

use crate::identity::{Identity, NodeId, verify_strict};

mod text;
mod verify;

pub use text::{
    CHAIN_SEPARATOR, ParseTokenError, TEXT_PREFIX, TOKEN_TEXT_LEN, chain_from_text, chain_to_text,
};
pub use verify::{
    ChainDecodeError, DEFAULT_SKEW_S, DelegationFault, SignatureCache, Verified, VerifyContext,
    VerifyError, Widened, decode_chain, encode_chain, verify, verify_cached, verify_encoded,
};

/// Size of an encoded token.
pub const TOKEN_LEN: usize = 169;
/// Size of the older layout (32-bit channel hash, no issuer generation), refused with
/// [`TokenDecodeError::LegacyLength`].
pub const LEGACY_TOKEN_LEN: usize = 161;
/// Offset of the issuer's ed25519 public key (32 bytes).
pub const OFF_ISSUER: usize = 0;
/// Offset of the subject's ed25519 public key (32 bytes).
pub const OFF_SUBJECT: usize = 32;
/// Offset of the scope bits (u32).
pub const OFF_SCOPE: usize = 64;
/// Offset of the channel hash (u64).
pub const OFF_CHANNEL_HASH: usize = 68;
/// Offset of the issuer generation (u32).
pub const OFF_ISSUER_GENERATION: usize = 76;
/// Offset of not_before, Unix seconds (u64).
pub const OFF_NOT_BEFORE: usize = 80;
/// Offset of not_after, Unix seconds (u64).
pub const OFF_NOT_AFTER: usize = 88;
/// Offset of the delegation depth (u8).
pub const OFF_DELEGATION_DEPTH: usize = 96;
/// Offset of the nonce (u64).
pub const OFF_NONCE: usize = 97;
/// Offset of the ed25519 signature (64 bytes).
pub const OFF_SIGNATURE: usize = 105;
/// Bytes covered by the signature (after [`SIGNATURE_DOMAIN`]): everything before it.
pub const SIGNED_LEN: usize = OFF_SIGNATURE;
/// Domain-separation prefix of the signed message, so a token signature can never be taken
/// for a handshake signature or any other message signed by the same identity.
pub const SIGNATURE_DOMAIN: &[u8] = b"net-mesh permission token v1\0";
/// BLAKE3 derive-key context of [`channel_hash`].
pub const CHANNEL_HASH_CONTEXT: &str = "net-mesh 2026 channel hash v1";
/// Most links in a chain. Six encoded tokens (1014 bytes) fit one call's metadata
/// (`frame::MAX_METADATA_LEN`, 1280), so a full chain travels with the call it authorizes.
pub const MAX_CHAIN_LEN: usize = 6;
/// Largest delegation depth a token may carry: a root of this depth can be delegated down to
/// a chain of [`MAX_CHAIN_LEN`] links.
pub const MAX_DELEGATION_DEPTH: u8 = 5;

/// Wire scope bit: read.
pub const SCOPE_BIT_READ: u32 = 1;
/// Wire scope bit: write.
pub const SCOPE_BIT_WRITE: u32 = 1 << 1;
/// Wire scope bit: admin.
pub const SCOPE_BIT_ADMIN: u32 = 1 << 2;
/// Wire scope bit: may delegate (mint narrower tokens for another subject).
pub const SCOPE_BIT_DELEGATE: u32 = 1 << 3;
/// Wire scope bit: valid on every channel (the channel hash field is then 0).
pub const SCOPE_BIT_ANY_CHANNEL: u32 = 1 << 4;
/// Every scope bit this version knows; a token with any other bit set is refused.
pub const SCOPE_KNOWN_BITS: u32 =
    SCOPE_BIT_READ | SCOPE_BIT_WRITE | SCOPE_BIT_ADMIN | SCOPE_BIT_DELEGATE | SCOPE_BIT_ANY_CHANNEL;

const _: () = assert!(OFF_SIGNATURE + 64 == TOKEN_LEN);
const _: () = assert!(MAX_CHAIN_LEN * TOKEN_LEN <= crate::frame::MAX_METADATA_LEN);
const _: () = assert!(MAX_DELEGATION_DEPTH as usize + 1 == MAX_CHAIN_LEN);

/// The rights a token grants (the wildcard-channel bit is not a right: it is
/// [`TokenChannel::Any`]). Rights are independent bits; which a method needs is the caller's
/// policy.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Scope(u32);

impl Scope {
    /// No rights.
    pub const NONE: Scope = Scope(0);
    /// Read.
    pub const READ: Scope = Scope(SCOPE_BIT_READ);
    /// Write.
    pub const WRITE: Scope = Scope(SCOPE_BIT_WRITE);
    /// Admin.
    pub const ADMIN: Scope = Scope(SCOPE_BIT_ADMIN);
    /// Delegate.
    pub const DELEGATE: Scope = Scope(SCOPE_BIT_DELEGATE);
    /// Every right.
    pub const ALL: Scope =
        Scope(SCOPE_BIT_READ | SCOPE_BIT_WRITE | SCOPE_BIT_ADMIN | SCOPE_BIT_DELEGATE);

    const NAMES: [(&'static str, Scope); 4] = [
        ("read", Scope::READ),
        ("write", Scope::WRITE),
        ("admin", Scope::ADMIN),
        ("delegate", Scope::DELEGATE),
    ];

    /// The wire bits.
    pub fn bits(self) -> u32 {
        self.0
    }

    /// The scope of these bits, or `None` if any bit is not a right.
    pub fn from_bits(bits: u32) -> Option<Scope> {
        (bits & !Scope::ALL.0 == 0).then_some(Scope(bits))
    }

    /// Whether every right of `other` is in `self`.
    pub fn contains(self, other: Scope) -> bool {
        self.0 & other.0 == other.0
    }

    /// The rights of both.
    pub fn union(self, other: Scope) -> Scope {
        Scope(self.0 | other.0)
    }

    /// Whether there are no rights.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl std::ops::BitOr for Scope {
    type Output = Scope;
    fn bitor(self, other: Scope) -> Scope {
        self.union(other)
    }
}

/// Prints `read,write` (rights in bit order), or `none`.
impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("none");
        }
        let mut first = true;
        for (name, right) in Scope::NAMES {
            if self.contains(right) {
                if !first {
                    f.write_str(",")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scope({self})")
    }
}

/// A scope list that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseScopeError {
    /// A name other than read, write, admin, delegate (or an empty item).
    #[error("unknown right {0:?}: use read, write, admin, delegate")]
    Unknown(String),
    /// The same right twice.
    #[error("right {0:?} listed twice")]
    Repeated(String),
}

/// Parses a comma-separated list of rights (`read,write`); `none` is the empty scope.
impl std::str::FromStr for Scope {
    type Err = ParseScopeError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "none" {
            return Ok(Scope::NONE);
        }
        let mut scope = Scope::NONE;
        for item in text.split(',') {
            let right = Scope::NAMES
                .iter()
                .find(|(name, _)| *name == item)
                .map(|(_, right)| *right)
                .ok_or_else(|| ParseScopeError::Unknown(item.to_string()))?;
            if scope.contains(right) {
                return Err(ParseScopeError::Repeated(item.to_string()));
            }
            scope = scope | right;
        }
        Ok(scope)
    }
}

/// The 64-bit hash of a channel name that tokens carry.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelHash(pub u64);

impl fmt::Display for ChannelHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for ChannelHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChannelHash({self})")
    }
}

/// The hash of channel `name`: the first 8 bytes of
/// `BLAKE3::derive_key(CHANNEL_HASH_CONTEXT, UTF-8 bytes of name)`, read as a little-endian
/// u64. Names are hashed as given (no case folding or normalization).
pub fn channel_hash(name: &str) -> ChannelHash {
    let digest = blake3::derive_key(CHANNEL_HASH_CONTEXT, name.as_bytes());
    let (first, _) = digest.split_first_chunk::<8>().unwrap_or((&[0; 8], &[]));
    ChannelHash(u64::from_le_bytes(*first))
}

/// Which channels a token is valid on.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum TokenChannel {
    /// Every channel (wire: scope bit [`SCOPE_BIT_ANY_CHANNEL`], channel hash 0).
    Any,
    /// The one channel with this hash.
    Named(ChannelHash),
}

impl TokenChannel {
    /// The channel named `name`.
    pub fn named(name: &str) -> Self {
        TokenChannel::Named(channel_hash(name))
    }

    /// Whether a token of this channel is valid on the channel with hash `hash`.
    pub fn covers(self, hash: ChannelHash) -> bool {
        match self {
            TokenChannel::Any => true,
            TokenChannel::Named(own) => own == hash,
        }
    }

    /// Whether `self` is `parent` or narrower (a wildcard may narrow to one channel; one
    /// channel may not widen to the wildcard or move to another channel).
    pub fn within(self, parent: TokenChannel) -> bool {
        match (parent, self) {
            (TokenChannel::Any, _) => true,
            (TokenChannel::Named(parent), TokenChannel::Named(own)) => parent == own,
            (TokenChannel::Named(_), TokenChannel::Any) => false,
        }
    }
}

/// What a token says, apart from who signed it and the signature.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct TokenClaims {
    /// The ed25519 public key of the node the token is for (the session peer that presents
    /// it must be this key).
    pub subject: [u8; 32],
    /// The rights granted.
    pub scope: Scope,
    /// The channel (or every channel) the rights are on.
    pub channel: TokenChannel,
    /// The issuer's generation when it signed; a verifier refuses tokens of an issuer below
    /// that issuer's revocation floor.
    pub issuer_generation: u32,
    /// Valid from (Unix seconds, inclusive).
    pub not_before: u64,
    /// Valid until (Unix seconds, inclusive).
    pub not_after: u64,
    /// How many further delegations may follow this token (each link strictly lower).
    pub delegation_depth: u8,
    /// Makes otherwise equal tokens distinct (e.g. from [`fresh_nonce`]).
    pub nonce: u64,
}

/// A nonce from the OS random number generator.
pub fn fresh_nonce() -> Result<u64, MintError> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| MintError::Rng(e.to_string()))?;
    Ok(u64::from_le_bytes(bytes))
}

/// A token: its claims, the issuer that signed them and the signature.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct PermissionToken {
    issuer: [u8; 32],
    claims: TokenClaims,
    signature: [u8; 64],
}

/// Bytes that are not a token of this version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenDecodeError {
    /// 161 bytes: the older layout (32-bit channel hash, no issuer generation); reissue it.
    #[error(
        "a {LEGACY_TOKEN_LEN}-byte token has the older layout (32-bit channel hash, no issuer \
         generation), which is no longer accepted; reissue it as a {TOKEN_LEN}-byte token"
    )]
    LegacyLength,
    /// Any other length than [`TOKEN_LEN`].
    #[error("a permission token is {TOKEN_LEN} bytes, got {len}")]
    Length {
        /// The length given.
        len: usize,
    },
    /// Scope bits this version does not know.
    #[error("unknown scope bits {bits:#010x}")]
    UnknownScopeBits {
        /// The unknown bits (known ones masked out).
        bits: u32,
    },
    /// The wildcard-channel bit with a nonzero channel hash (not canonical).
    #[error("a wildcard-channel token must carry channel hash 0, got {hash}")]
    WildcardWithChannelHash {
        /// The channel hash found.
        hash: ChannelHash,
    },
    /// `not_before` after `not_after`: never valid.
    #[error("not_before {not_before} is after not_after {not_after}")]
    InvertedValidity {
        /// not_before.
        not_before: u64,
        /// not_after.
        not_after: u64,
    },
    /// A delegation depth above [`MAX_DELEGATION_DEPTH`].
    #[error("delegation depth {depth} is above the maximum {MAX_DELEGATION_DEPTH}")]
    DelegationDepthTooLarge {
        /// The depth found.
        depth: u8,
    },
}

impl TokenDecodeError {
    /// A short stable label for metrics (one per variant).
    pub fn reason(&self) -> &'static str {
        match self {
            TokenDecodeError::LegacyLength => "legacy_length",
            TokenDecodeError::Length { .. } => "length",
            TokenDecodeError::UnknownScopeBits { .. } => "unknown_scope_bits",
            TokenDecodeError::WildcardWithChannelHash { .. } => "wildcard_with_channel_hash",
            TokenDecodeError::InvertedValidity { .. } => "inverted_validity",
            TokenDecodeError::DelegationDepthTooLarge { .. } => "delegation_depth_too_large",
        }
    }
}

/// A token that could not be minted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MintError {
    /// `not_before` after `not_after`.
    #[error("not_before {not_before} is after not_after {not_after}")]
    InvertedValidity {
        /// not_before.
        not_before: u64,
        /// not_after.
        not_after: u64,
    },
    /// A delegation depth above [`MAX_DELEGATION_DEPTH`].
    #[error("delegation depth {depth} is above the maximum {MAX_DELEGATION_DEPTH}")]
    DelegationDepthTooLarge {
        /// The depth asked for.
        depth: u8,
    },
    /// Only the subject of a token may delegate it.
    #[error("only the token's subject may delegate it")]
    NotTheSubject,
    /// The new token would not be a valid delegation of its parent.
    #[error("not a valid delegation of the parent token: {0}")]
    Delegation(DelegationFault),
    /// The OS random number generator failed.
    #[error("OS random number generator failed: {0}")]
    Rng(String),
}

/// The signature of a token does not verify against its issuer key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the token's signature does not verify against its issuer key")]
pub struct BadSignature;

fn field<const N: usize>(bytes: &[u8; TOKEN_LEN], offset: usize) -> [u8; N] {
    bytes
        .get(offset..offset.saturating_add(N))
        .and_then(|s| <[u8; N]>::try_from(s).ok())
        .unwrap_or([0; N])
}

fn put(out: &mut [u8; TOKEN_LEN], offset: usize, value: &[u8]) {
    if let Some(dst) = out.get_mut(offset..offset.saturating_add(value.len())) {
        dst.copy_from_slice(value);
    }
}

impl PermissionToken {
    /// Signs `claims` with `issuer` (a root token, or a delegated one when `issuer` holds a
    /// parent token for its key; see [`PermissionToken::delegate`] for the checked form).
    pub fn mint(issuer: &Identity, claims: TokenClaims) -> Result<Self, MintError> {
        if claims.not_before > claims.not_after {
            return Err(MintError::InvertedValidity {
                not_before: claims.not_before,
                not_after: claims.not_after,
            });
        }
        if claims.delegation_depth > MAX_DELEGATION_DEPTH {
            return Err(MintError::DelegationDepthTooLarge {
                depth: claims.delegation_depth,
            });
        }
        let mut token = PermissionToken {
            issuer: issuer.public_key().to_bytes(),
            claims,
            signature: [0; 64],
        };
        token.signature = issuer.sign(&token.signed_message()).to_bytes();
        Ok(token)
    }

    /// Mints a token for `claims.subject` signed by `holder`, the subject of `self`, after
    /// checking that it narrows `self` as a chain link must ([`DelegationFault`]).
    pub fn delegate(&self, holder: &Identity, claims: TokenClaims) -> Result<Self, MintError> {
        if holder.public_key().as_bytes() != &self.claims.subject {
            return Err(MintError::NotTheSubject);
        }
        verify::check_delegation(&self.claims, &claims).map_err(MintError::Delegation)?;
        Self::mint(holder, claims)
    }

    /// The issuer's ed25519 public key.
    pub fn issuer(&self) -> &[u8; 32] {
        &self.issuer
    }

    /// The node id of the issuer key.
    pub fn issuer_node_id(&self) -> NodeId {
        NodeId::from_public_key_bytes(&self.issuer)
    }

    /// The node id of the subject key.
    pub fn subject_node_id(&self) -> NodeId {
        NodeId::from_public_key_bytes(&self.claims.subject)
    }

    /// What the token says.
    pub fn claims(&self) -> &TokenClaims {
        &self.claims
    }

    /// The signature bytes.
    pub fn signature(&self) -> &[u8; 64] {
        &self.signature
    }

    /// The 169 bytes.
    pub fn encode(&self) -> [u8; TOKEN_LEN] {
        let mut out = [0u8; TOKEN_LEN];
        let c = &self.claims;
        let (scope, channel_hash) = match c.channel {
            TokenChannel::Any => (c.scope.bits() | SCOPE_BIT_ANY_CHANNEL, 0),
            TokenChannel::Named(hash) => (c.scope.bits(), hash.0),
        };
        put(&mut out, OFF_ISSUER, &self.issuer);
        put(&mut out, OFF_SUBJECT, &c.subject);
        put(&mut out, OFF_SCOPE, &scope.to_le_bytes());
        put(&mut out, OFF_CHANNEL_HASH, &channel_hash.to_le_bytes());
        put(
            &mut out,
            OFF_ISSUER_GENERATION,
            &c.issuer_generation.to_le_bytes(),
        );
        put(&mut out, OFF_NOT_BEFORE, &c.not_before.to_le_bytes());
        put(&mut out, OFF_NOT_AFTER, &c.not_after.to_le_bytes());
        put(&mut out, OFF_DELEGATION_DEPTH, &[c.delegation_depth]);
        put(&mut out, OFF_NONCE, &c.nonce.to_le_bytes());
        put(&mut out, OFF_SIGNATURE, &self.signature);
        out
    }

    /// Strict decoder (module docs); does not check the signature.
    pub fn decode(bytes: &[u8]) -> Result<Self, TokenDecodeError> {
        let bytes: &[u8; TOKEN_LEN] = match bytes.try_into() {
            Ok(bytes) => bytes,
            Err(_) if bytes.len() == LEGACY_TOKEN_LEN => {
                return Err(TokenDecodeError::LegacyLength);
            }
            Err(_) => return Err(TokenDecodeError::Length { len: bytes.len() }),
        };
        let scope_bits = u32::from_le_bytes(field(bytes, OFF_SCOPE));
        let unknown = scope_bits & !SCOPE_KNOWN_BITS;
        if unknown != 0 {
            return Err(TokenDecodeError::UnknownScopeBits { bits: unknown });
        }
        let hash = ChannelHash(u64::from_le_bytes(field(bytes, OFF_CHANNEL_HASH)));
        let channel = if scope_bits & SCOPE_BIT_ANY_CHANNEL == 0 {
            TokenChannel::Named(hash)
        } else if hash.0 == 0 {
            TokenChannel::Any
        } else {
            return Err(TokenDecodeError::WildcardWithChannelHash { hash });
        };
        let not_before = u64::from_le_bytes(field(bytes, OFF_NOT_BEFORE));
        let not_after = u64::from_le_bytes(field(bytes, OFF_NOT_AFTER));
        if not_before > not_after {
            return Err(TokenDecodeError::InvertedValidity {
                not_before,
                not_after,
            });
        }
        let [delegation_depth] = field(bytes, OFF_DELEGATION_DEPTH);
        if delegation_depth > MAX_DELEGATION_DEPTH {
            return Err(TokenDecodeError::DelegationDepthTooLarge {
                depth: delegation_depth,
            });
        }
        Ok(PermissionToken {
            issuer: field(bytes, OFF_ISSUER),
            claims: TokenClaims {
                subject: field(bytes, OFF_SUBJECT),
                scope: Scope(scope_bits & !SCOPE_BIT_ANY_CHANNEL),
                channel,
                issuer_generation: u32::from_le_bytes(field(bytes, OFF_ISSUER_GENERATION)),
                not_before,
                not_after,
                delegation_depth,
                nonce: u64::from_le_bytes(field(bytes, OFF_NONCE)),
            },
            signature: field(bytes, OFF_SIGNATURE),
        })
    }

    /// Checks the signature against the issuer key (strict ed25519: small-order keys and
    /// malleable signatures are refused).
    pub fn verify_signature(&self) -> Result<(), BadSignature> {
        let key = VerifyingKey::from_bytes(&self.issuer).map_err(|_| BadSignature)?;
        let signature = Signature::from_bytes(&self.signature);
        if verify_strict(&key, &self.signed_message(), &signature) {
            Ok(())
        } else {
            Err(BadSignature)
        }
    }

    /// [`SIGNATURE_DOMAIN`] followed by the first [`SIGNED_LEN`] bytes of the encoding.
    fn signed_message(&self) -> Vec<u8> {
        let encoded = self.encode();
        let mut message = Vec::with_capacity(SIGNATURE_DOMAIN.len().saturating_add(SIGNED_LEN));
        message.extend_from_slice(SIGNATURE_DOMAIN);
        message.extend_from_slice(encoded.get(..SIGNED_LEN).unwrap_or_default());
        message
    }
}
