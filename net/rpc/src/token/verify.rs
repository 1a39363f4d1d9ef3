//! Chains of tokens and their verification.
//!
//! A chain is root first. Link 0 is signed by an issuer the verifier trusts; every later link
//! is signed by the subject of the link before it and narrows it ([`check_delegation`]): the
//! parent holds `delegate`, the depth drops strictly, the scope is a subset, the validity
//! window lies inside the parent's, and the channel is the parent's (or one channel of a
//! wildcard parent). The last link's subject must be the session's authenticated peer, and the
//! last link must cover the call's channel, its required rights and the clock (within the
//! skew). Any link whose issuer generation is below that issuer's floor is revoked.
//!
//! Checks run cheapest first, so an untrusted or malformed chain costs no signature
//! verification: structure, trust, links, revocation, the last link against the call, and
//! only then the signatures (each link's, root first). Every refusal is its own
//! [`VerifyError`] variant.
//!
//! The binary form of a chain (e.g. in call metadata) is its tokens' encodings concatenated,
//! 1..=[`MAX_CHAIN_LEN`] of them.
//!
//! A verifier that sees the same chain on call after call may keep a [`SignatureCache`]
//! ([`verify_cached`]): a chain's signatures depend on its bytes alone, so once every signature
//! of those exact bytes (named by their BLAKE3 digest) has verified, later calls skip the
//! ed25519 checks — and only those: trust, links, revocation, subject, channel, scope and the
//! clock are checked on every call.

use std::collections::{HashMap, HashSet};

use super::{
    LEGACY_TOKEN_LEN, MAX_CHAIN_LEN, PermissionToken, Scope, TOKEN_LEN, TokenChannel, TokenClaims,
    TokenDecodeError, channel_hash,
};
use crate::identity::NodeId;

/// Default tolerance between the verifier's clock and the token's validity window.
pub const DEFAULT_SKEW_S: u64 = 60;

/// What a call must be authorized for, and the verifier's trust.
#[derive(Debug, Clone, Copy)]
pub struct VerifyContext<'a> {
    /// Node ids whose tokens may start a chain.
    pub trusted_issuers: &'a HashSet<NodeId>,
    /// Revocation floors: an issuer's tokens with a lower issuer generation are refused.
    pub generation_floors: &'a HashMap<NodeId, u32>,
    /// The verifier's clock, Unix seconds.
    pub now_unix_s: u64,
    /// Clock tolerance at both ends of the validity window, seconds.
    pub skew_s: u64,
    /// The ed25519 public key of the session's authenticated peer
    /// (`PeerIdentity::public_key`); never a key carried in a payload.
    pub peer_public_key: [u8; 32],
    /// The channel the call acts on.
    pub channel: &'a str,
    /// The rights the call needs.
    pub required: Scope,
}

impl<'a> VerifyContext<'a> {
    /// A context with the default skew ([`DEFAULT_SKEW_S`]).
    pub fn new(
        trusted_issuers: &'a HashSet<NodeId>,
        generation_floors: &'a HashMap<NodeId, u32>,
        peer_public_key: [u8; 32],
        channel: &'a str,
        required: Scope,
        now_unix_s: u64,
    ) -> Self {
        VerifyContext {
            trusted_issuers,
            generation_floors,
            now_unix_s,
            skew_s: DEFAULT_SKEW_S,
            peer_public_key,
            channel,
            required,
        }
    }
}

/// What a verified chain grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// The trusted issuer at the root.
    pub root_issuer: NodeId,
    /// The rights of the last link (a superset of the required ones).
    pub scope: Scope,
    /// The channel of the last link.
    pub channel: TokenChannel,
    /// When the last link expires (Unix seconds, before the skew).
    pub not_after: u64,
    /// Links in the chain.
    pub links: usize,
}

/// How a delegated token fails to narrow its parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DelegationFault {
    /// The parent does not hold `delegate`.
    #[error("the parent token does not grant delegate")]
    NotPermitted,
    /// The depth does not drop strictly below the parent's.
    #[error("delegation depth {depth} is not below the parent's {parent_depth}")]
    OverDeep {
        /// The parent's depth.
        parent_depth: u8,
        /// The delegated token's depth.
        depth: u8,
    },
    /// The delegated token grants more than its parent.
    #[error("the delegated token widens the parent's {0}")]
    Widened(Widened),
}

/// What a delegation widened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Widened {
    /// A right the parent does not have.
    #[error("scope")]
    Scope,
    /// Validity starting before or ending after the parent's.
    #[error("validity window")]
    Validity,
    /// Another channel, or the wildcard under a one-channel parent.
    #[error("channel")]
    Channel,
}

/// Checks that `child` may follow `parent` in a chain (apart from who signed it).
pub(super) fn check_delegation(
    parent: &TokenClaims,
    child: &TokenClaims,
) -> Result<(), DelegationFault> {
    if !parent.scope.contains(Scope::DELEGATE) {
        return Err(DelegationFault::NotPermitted);
    }
    if child.delegation_depth >= parent.delegation_depth {
        return Err(DelegationFault::OverDeep {
            parent_depth: parent.delegation_depth,
            depth: child.delegation_depth,
        });
    }
    if !parent.scope.contains(child.scope) {
        return Err(DelegationFault::Widened(Widened::Scope));
    }
    if child.not_before < parent.not_before || child.not_after > parent.not_after {
        return Err(DelegationFault::Widened(Widened::Validity));
    }
    if !child.channel.within(parent.channel) {
        return Err(DelegationFault::Widened(Widened::Channel));
    }
    Ok(())
}

/// Bytes that are not a chain of tokens of this version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainDecodeError {
    /// No bytes.
    #[error("an empty token chain")]
    Empty,
    /// A whole number of 161-byte tokens: the older layout.
    #[error(
        "{len} bytes of {LEGACY_TOKEN_LEN}-byte tokens: the older token layout is no longer \
         accepted; reissue them"
    )]
    LegacyLength {
        /// The length given.
        len: usize,
    },
    /// Not a whole number of [`TOKEN_LEN`]-byte tokens.
    #[error("a token chain is a whole number of {TOKEN_LEN}-byte tokens, got {len} bytes")]
    Length {
        /// The length given.
        len: usize,
    },
    /// More than [`MAX_CHAIN_LEN`] tokens.
    #[error("a token chain of {links} links; at most {MAX_CHAIN_LEN}")]
    TooLong {
        /// Links given.
        links: usize,
    },
    /// A token of the chain is malformed.
    #[error("token {link} of the chain: {error}")]
    Token {
        /// Index of the token, root = 0.
        link: usize,
        /// Why it is malformed.
        error: TokenDecodeError,
    },
}

/// Decodes the binary form of a chain (module docs).
pub fn decode_chain(bytes: &[u8]) -> Result<Vec<PermissionToken>, ChainDecodeError> {
    let len = bytes.len();
    if len == 0 {
        return Err(ChainDecodeError::Empty);
    }
    if !len.is_multiple_of(TOKEN_LEN) {
        return Err(if len.is_multiple_of(LEGACY_TOKEN_LEN) {
            ChainDecodeError::LegacyLength { len }
        } else {
            ChainDecodeError::Length { len }
        });
    }
    let links = len / TOKEN_LEN;
    if links > MAX_CHAIN_LEN {
        return Err(ChainDecodeError::TooLong { links });
    }
    bytes
        .chunks_exact(TOKEN_LEN)
        .enumerate()
        .map(|(link, bytes)| {
            PermissionToken::decode(bytes).map_err(|error| ChainDecodeError::Token { link, error })
        })
        .collect()
}

/// The binary form of a chain: the encodings concatenated, root first.
pub fn encode_chain(chain: &[PermissionToken]) -> Vec<u8> {
    let mut out = Vec::with_capacity(chain.len().saturating_mul(TOKEN_LEN));
    for token in chain {
        out.extend_from_slice(&token.encode());
    }
    out
}

/// Why a chain does not authorize a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// No token.
    #[error("no permission token")]
    EmptyChain,
    /// More than [`MAX_CHAIN_LEN`] links.
    #[error("a token chain of {links} links; at most {MAX_CHAIN_LEN}")]
    ChainTooLong {
        /// Links given.
        links: usize,
    },
    /// Bytes of the older 161-byte layout.
    #[error("{len} bytes of {LEGACY_TOKEN_LEN}-byte tokens: the older layout; reissue them")]
    LegacyLength {
        /// Bytes given.
        len: usize,
    },
    /// Bytes that are not whole tokens.
    #[error("a token chain is a whole number of {TOKEN_LEN}-byte tokens, got {len} bytes")]
    Length {
        /// Bytes given.
        len: usize,
    },
    /// A token of the chain is malformed.
    #[error("token {link} of the chain: {error}")]
    Malformed {
        /// Index of the token, root = 0.
        link: usize,
        /// Why it is malformed.
        error: TokenDecodeError,
    },
    /// The root's issuer is not trusted.
    #[error("the chain's root issuer {issuer} is not trusted")]
    UntrustedIssuer {
        /// The root's issuer.
        issuer: NodeId,
    },
    /// A link is not signed by the subject of the link before it.
    #[error("link {link} is not issued by the subject of link {}", link.saturating_sub(1))]
    BrokenChainLink {
        /// Index of the link.
        link: usize,
    },
    /// The parent of a link does not grant `delegate`.
    #[error("link {link} delegates a token that does not grant delegate")]
    DelegationNotPermitted {
        /// Index of the delegated link.
        link: usize,
    },
    /// A link's delegation depth does not drop strictly below its parent's.
    #[error("link {link} has delegation depth {depth}, not below its parent's {parent_depth}")]
    OverDeepDelegation {
        /// Index of the delegated link.
        link: usize,
        /// The parent's depth.
        parent_depth: u8,
        /// The link's depth.
        depth: u8,
    },
    /// A link grants more than its parent.
    #[error("link {link} widens its parent's {widened}")]
    WideningDelegation {
        /// Index of the delegated link.
        link: usize,
        /// What it widens.
        widened: Widened,
    },
    /// A link's issuer generation is below that issuer's revocation floor.
    #[error("link {link}: issuer {issuer} generation {generation} is revoked (floor {floor})")]
    RevokedGeneration {
        /// Index of the link.
        link: usize,
        /// Its issuer.
        issuer: NodeId,
        /// The link's issuer generation.
        generation: u32,
        /// The floor.
        floor: u32,
    },
    /// The last link is for another node than the session's peer.
    #[error("the token is for {subject}, not for this session's peer")]
    WrongSubject {
        /// The last link's subject.
        subject: NodeId,
    },
    /// The last link does not cover the call's channel.
    #[error("the token is not valid on this channel")]
    WrongChannel {
        /// The last link's channel.
        channel: TokenChannel,
    },
    /// The last link lacks a right the call needs.
    #[error("the call needs {required}; the token grants {granted}")]
    MissingScope {
        /// Rights the call needs.
        required: Scope,
        /// Rights the token grants.
        granted: Scope,
    },
    /// Before the last link's window (beyond the skew).
    #[error("the token is valid from {not_before}; now is {now}")]
    NotYetValid {
        /// The last link's not_before.
        not_before: u64,
        /// The verifier's clock.
        now: u64,
    },
    /// After the last link's window (beyond the skew).
    #[error("the token expired at {not_after}; now is {now}")]
    Expired {
        /// The last link's not_after.
        not_after: u64,
        /// The verifier's clock.
        now: u64,
    },
    /// A link's signature does not verify against its issuer key.
    #[error("link {link}: bad signature")]
    BadSignature {
        /// Index of the link.
        link: usize,
    },
}

impl VerifyError {
    /// A short stable label for metrics, one per variant.
    pub fn reason(&self) -> &'static str {
        match self {
            VerifyError::EmptyChain => "empty_chain",
            VerifyError::ChainTooLong { .. } => "chain_too_long",
            VerifyError::LegacyLength { .. } => "legacy_length",
            VerifyError::Length { .. } => "length",
            VerifyError::Malformed { .. } => "malformed",
            VerifyError::UntrustedIssuer { .. } => "untrusted_issuer",
            VerifyError::BrokenChainLink { .. } => "broken_chain_link",
            VerifyError::DelegationNotPermitted { .. } => "delegation_not_permitted",
            VerifyError::OverDeepDelegation { .. } => "over_deep_delegation",
            VerifyError::WideningDelegation { .. } => "widening_delegation",
            VerifyError::RevokedGeneration { .. } => "revoked_generation",
            VerifyError::WrongSubject { .. } => "wrong_subject",
            VerifyError::WrongChannel { .. } => "wrong_channel",
            VerifyError::MissingScope { .. } => "missing_scope",
            VerifyError::NotYetValid { .. } => "not_yet_valid",
            VerifyError::Expired { .. } => "expired",
            VerifyError::BadSignature { .. } => "bad_signature",
        }
    }
}

impl From<ChainDecodeError> for VerifyError {
    fn from(error: ChainDecodeError) -> Self {
        match error {
            ChainDecodeError::Empty => VerifyError::EmptyChain,
            ChainDecodeError::LegacyLength { len } => VerifyError::LegacyLength { len },
            ChainDecodeError::Length { len } => VerifyError::Length { len },
            ChainDecodeError::TooLong { links } => VerifyError::ChainTooLong { links },
            ChainDecodeError::Token { link, error } => VerifyError::Malformed { link, error },
        }
    }
}

/// Decodes the binary form of a chain and verifies it.
pub fn verify_encoded(bytes: &[u8], ctx: &VerifyContext<'_>) -> Result<Verified, VerifyError> {
    let chain = decode_chain(bytes)?;
    verify(&chain, ctx)
}

/// Verifies a chain (root first) for the call described by `ctx` (module docs).
pub fn verify(chain: &[PermissionToken], ctx: &VerifyContext<'_>) -> Result<Verified, VerifyError> {
    let verified = check_all_but_signatures(chain, ctx)?;
    check_signatures(chain)?;
    Ok(verified)
}

/// Chains whose every signature has verified, by the BLAKE3 digest of their binary form.
pub trait SignatureCache {
    /// Whether the chain with this digest verified before.
    fn contains(&self, digest: &[u8; 32]) -> bool;
    /// Remembers that the chain with this digest verified.
    fn insert(&self, digest: [u8; 32]);
}

/// [`verify`], skipping the signature checks of a chain `cache` holds, and adding a chain
/// whose signatures all verified to it. Every other check runs on every call.
pub fn verify_cached(
    chain: &[PermissionToken],
    ctx: &VerifyContext<'_>,
    cache: &dyn SignatureCache,
) -> Result<Verified, VerifyError> {
    let verified = check_all_but_signatures(chain, ctx)?;
    let digest = *blake3::hash(&encode_chain(chain)).as_bytes();
    if !cache.contains(&digest) {
        check_signatures(chain)?;
        cache.insert(digest);
    }
    Ok(verified)
}

fn check_signatures(chain: &[PermissionToken]) -> Result<(), VerifyError> {
    for (link, token) in chain.iter().enumerate() {
        token
            .verify_signature()
            .map_err(|_| VerifyError::BadSignature { link })?;
    }
    Ok(())
}

/// Every check of [`verify`] but the signatures, cheapest first.
fn check_all_but_signatures(
    chain: &[PermissionToken],
    ctx: &VerifyContext<'_>,
) -> Result<Verified, VerifyError> {
    let (root, last) = match (chain.first(), chain.last()) {
        (Some(root), Some(last)) => (root, last),
        _ => return Err(VerifyError::EmptyChain),
    };
    if chain.len() > MAX_CHAIN_LEN {
        return Err(VerifyError::ChainTooLong { links: chain.len() });
    }
    let root_issuer = root.issuer_node_id();
    if !ctx.trusted_issuers.contains(&root_issuer) {
        return Err(VerifyError::UntrustedIssuer {
            issuer: root_issuer,
        });
    }
    for (link, pair) in chain.windows(2).enumerate() {
        let link = link.saturating_add(1);
        let [parent, child] = pair else { continue };
        if child.issuer != parent.claims.subject {
            return Err(VerifyError::BrokenChainLink { link });
        }
        check_delegation(&parent.claims, &child.claims).map_err(|fault| match fault {
            DelegationFault::NotPermitted => VerifyError::DelegationNotPermitted { link },
            DelegationFault::OverDeep {
                parent_depth,
                depth,
            } => VerifyError::OverDeepDelegation {
                link,
                parent_depth,
                depth,
            },
            DelegationFault::Widened(widened) => VerifyError::WideningDelegation { link, widened },
        })?;
    }
    if !ctx.generation_floors.is_empty() {
        for (link, token) in chain.iter().enumerate() {
            let issuer = token.issuer_node_id();
            let generation = token.claims.issuer_generation;
            match ctx.generation_floors.get(&issuer) {
                Some(&floor) if generation < floor => {
                    return Err(VerifyError::RevokedGeneration {
                        link,
                        issuer,
                        generation,
                        floor,
                    });
                }
                _ => {}
            }
        }
    }
    let claims = &last.claims;
    if claims.subject != ctx.peer_public_key {
        return Err(VerifyError::WrongSubject {
            subject: last.subject_node_id(),
        });
    }
    if !claims.channel.covers(channel_hash(ctx.channel)) {
        return Err(VerifyError::WrongChannel {
            channel: claims.channel,
        });
    }
    if !claims.scope.contains(ctx.required) {
        return Err(VerifyError::MissingScope {
            required: ctx.required,
            granted: claims.scope,
        });
    }
    let now = ctx.now_unix_s;
    if now.saturating_add(ctx.skew_s) < claims.not_before {
        return Err(VerifyError::NotYetValid {
            not_before: claims.not_before,
            now,
        });
    }
    if now > claims.not_after.saturating_add(ctx.skew_s) {
        return Err(VerifyError::Expired {
            not_after: claims.not_after,
            now,
        });
    }
    Ok(Verified {
        root_issuer,
        scope: claims.scope,
        channel: claims.channel,
        not_after: claims.not_after,
        links: chain.len(),
    })
}
