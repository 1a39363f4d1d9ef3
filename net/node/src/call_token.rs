//! The permission-token chain a call carries in its nRPC metadata (docs/FORMAT.md §5.6), and
//! the node's trust in token issuers.
//!
//! Metadata layout: one version byte, [`METADATA_VERSION`] (`0x01`), then the chain's binary
//! form (§5.5: 1..=[`MAX_CHAIN_LEN`] tokens of [`TOKEN_LEN`] bytes, root first). Empty metadata
//! means "no token". Anything else — another version byte, a length that is not whole tokens,
//! too many links, a malformed token — is a refusal with its own reason, never a panic.
//!
//! Channels do not exist on the node yet: every call acts on channel [`CHANNEL`] (`default`),
//! so a token must be valid on `default` (or on every channel).

use std::collections::{HashMap, HashSet};
use std::time::{SystemTime, UNIX_EPOCH};

use net_mesh_rpc::NodeId;
use net_mesh_rpc::frame::MAX_METADATA_LEN;
use net_mesh_rpc::token::{
    DEFAULT_SKEW_S, MAX_CHAIN_LEN, PermissionToken, Scope, TOKEN_LEN, Verified, VerifyContext,
    VerifyError, decode_chain, encode_chain, verify,
};

use crate::proto::Role;

/// The version byte that opens token metadata.
pub const METADATA_VERSION: u8 = 0x01;
/// The channel every call acts on until the node has channels.
pub const CHANNEL: &str = "default";
/// The longest token metadata: the version byte and a full chain.
pub const MAX_TOKEN_METADATA_LEN: usize = 1 + MAX_CHAIN_LEN * TOKEN_LEN;

const _: () = assert!(MAX_TOKEN_METADATA_LEN <= MAX_METADATA_LEN);

/// The call metadata that carries `chain`: [`METADATA_VERSION`], then the tokens root first.
pub fn encode_metadata(chain: &[PermissionToken]) -> Vec<u8> {
    let mut out = Vec::with_capacity(chain.len().saturating_mul(TOKEN_LEN).saturating_add(1));
    out.push(METADATA_VERSION);
    out.extend_from_slice(&encode_chain(chain));
    out
}

/// Why a call's token did not authorize it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    /// The metadata opens with a version byte this node does not know.
    #[error(
        "metadata_version: token metadata version {version}; this node reads version {METADATA_VERSION}"
    )]
    MetadataVersion {
        /// The byte found.
        version: u8,
    },
    /// The chain does not decode or does not verify.
    #[error("{}: {}", .0.reason(), .0)]
    Verify(#[from] VerifyError),
}

impl TokenRefusal {
    /// A short stable label for metrics: `metadata_version`, or the [`VerifyError`]'s own.
    pub fn reason(&self) -> &'static str {
        match self {
            TokenRefusal::MetadataVersion { .. } => "metadata_version",
            TokenRefusal::Verify(e) => e.reason(),
        }
    }
}

/// Decodes token metadata: `Ok(None)` when the call carries none (empty metadata).
pub fn decode_metadata(metadata: &[u8]) -> Result<Option<Vec<PermissionToken>>, TokenRefusal> {
    let Some((&version, chain)) = metadata.split_first() else {
        return Ok(None);
    };
    if version != METADATA_VERSION {
        return Err(TokenRefusal::MetadataVersion { version });
    }
    let chain = decode_chain(chain).map_err(VerifyError::from)?;
    Ok(Some(chain))
}

/// The right a token must hold for a method of `role`, given the rights `granted` by the
/// chain's last link: as in the allow file, a higher right covers the ones below it (admin
/// covers write and read, write covers read). Returns the lowest such right the token holds,
/// or the role's own right when it holds none (verification then refuses it as
/// `MissingScope`).
pub fn required_scope(role: Role, granted: Scope) -> Scope {
    let ladder = [
        (Role::Read, Scope::READ),
        (Role::Write, Scope::WRITE),
        (Role::Admin, Scope::ADMIN),
    ];
    let own = ladder
        .iter()
        .find(|(r, _)| *r == role)
        .map_or(Scope::ADMIN, |(_, s)| *s);
    ladder
        .iter()
        .filter(|(r, _)| *r >= role)
        .map(|(_, s)| *s)
        .find(|s| granted.contains(*s))
        .unwrap_or(own)
}

/// Whom the node takes tokens from, and how far it lets their clocks drift.
#[derive(Debug, Clone)]
pub struct TokenTrust {
    trusted_issuers: HashSet<NodeId>,
    /// Revocation floors; none are kept yet (every generation is accepted).
    generation_floors: HashMap<NodeId, u32>,
    skew_s: u64,
}

impl TokenTrust {
    /// Trusts only `own` (the node's identity), with [`DEFAULT_SKEW_S`].
    pub fn only(own: NodeId) -> TokenTrust {
        TokenTrust {
            trusted_issuers: HashSet::from([own]),
            generation_floors: HashMap::new(),
            skew_s: DEFAULT_SKEW_S,
        }
    }

    /// Also trusts chains rooted at `issuer`.
    pub fn trust(&mut self, issuer: NodeId) {
        self.trusted_issuers.insert(issuer);
    }

    /// Sets the clock tolerance at both ends of a token's window.
    pub fn set_skew(&mut self, skew_s: u64) {
        self.skew_s = skew_s;
    }

    /// The issuers whose chains the node accepts.
    pub fn trusted_issuers(&self) -> &HashSet<NodeId> {
        &self.trusted_issuers
    }

    /// The clock tolerance, seconds.
    pub fn skew_s(&self) -> u64 {
        self.skew_s
    }

    /// Checks `metadata`'s chain for a call of `role` by the session peer whose ed25519 key is
    /// `peer_public_key`, on [`CHANNEL`], at `now_unix_s`. `Ok(None)`: no token.
    pub fn check(
        &self,
        metadata: &[u8],
        peer_public_key: [u8; 32],
        role: Role,
        now_unix_s: u64,
    ) -> Result<Option<Verified>, TokenRefusal> {
        let Some(chain) = decode_metadata(metadata)? else {
            return Ok(None);
        };
        let granted = chain.last().map_or(Scope::NONE, |t| t.claims().scope);
        let ctx = VerifyContext {
            trusted_issuers: &self.trusted_issuers,
            generation_floors: &self.generation_floors,
            now_unix_s,
            skew_s: self.skew_s,
            peer_public_key,
            channel: CHANNEL,
            required: required_scope(role, granted),
        };
        Ok(Some(verify(&chain, &ctx)?))
    }
}

/// The node's clock, Unix seconds (0 before 1970).
pub fn now_unix_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use net_mesh_rpc::Identity;
    use net_mesh_rpc::token::{TokenChannel, TokenClaims};

    fn token(issuer: &Identity, subject: &Identity, scope: Scope) -> PermissionToken {
        PermissionToken::mint(
            issuer,
            TokenClaims {
                subject: subject.public_key().to_bytes(),
                scope,
                channel: TokenChannel::named(CHANNEL),
                issuer_generation: 0,
                not_before: 1_000,
                not_after: 2_000,
                delegation_depth: 0,
                nonce: 7,
            },
        )
        .unwrap()
    }

    #[test]
    fn higher_rights_cover_lower_roles_and_nothing_covers_a_higher_role() {
        assert_eq!(required_scope(Role::Read, Scope::WRITE), Scope::WRITE);
        assert_eq!(
            required_scope(Role::Read, Scope::READ | Scope::WRITE),
            Scope::READ
        );
        assert_eq!(required_scope(Role::Read, Scope::ADMIN), Scope::ADMIN);
        assert_eq!(required_scope(Role::Write, Scope::READ), Scope::WRITE);
        assert_eq!(required_scope(Role::Admin, Scope::WRITE), Scope::ADMIN);
        assert_eq!(required_scope(Role::Write, Scope::DELEGATE), Scope::WRITE);
    }

    #[test]
    fn metadata_round_trips_and_bad_metadata_has_its_own_reason() {
        let node = Identity::generate_ephemeral().unwrap();
        let peer = Identity::generate_ephemeral().unwrap();
        let chain = vec![token(&node, &peer, Scope::READ)];
        let metadata = encode_metadata(&chain);
        assert_eq!(metadata.len(), 1 + TOKEN_LEN);
        assert_eq!(metadata.first(), Some(&METADATA_VERSION));
        assert_eq!(decode_metadata(&metadata).unwrap(), Some(chain.clone()));
        assert_eq!(decode_metadata(&[]).unwrap(), None);

        let reason = |bytes: &[u8]| decode_metadata(bytes).unwrap_err().reason();
        let mut other_version = metadata.clone();
        other_version[0] = 2;
        assert_eq!(reason(&other_version), "metadata_version");
        assert_eq!(reason(&metadata[1..]), "metadata_version");
        assert_eq!(reason(&[METADATA_VERSION]), "empty_chain");
        assert_eq!(reason(&metadata[..100]), "length");
        let mut seven = vec![METADATA_VERSION];
        for _ in 0..MAX_CHAIN_LEN + 1 {
            seven.extend_from_slice(&chain[0].encode());
        }
        assert_eq!(reason(&seven), "chain_too_long");
        let mut bad_scope = metadata.clone();
        bad_scope[1 + net_mesh_rpc::token::OFF_SCOPE] = 0x80;
        assert_eq!(reason(&bad_scope), "malformed");
    }

    #[test]
    fn the_peer_key_the_role_and_the_clock_decide() {
        let node = Identity::generate_ephemeral().unwrap();
        let peer = Identity::generate_ephemeral().unwrap();
        let other = Identity::generate_ephemeral().unwrap();
        let trust = TokenTrust::only(node.node_id());
        let key = peer.public_key().to_bytes();
        let writer = encode_metadata(&[token(&node, &peer, Scope::WRITE)]);
        let reason = |r: Result<Option<Verified>, TokenRefusal>| r.unwrap_err().reason();

        assert!(
            trust
                .check(&writer, key, Role::Read, 1_500)
                .unwrap()
                .is_some()
        );
        assert!(
            trust
                .check(&writer, key, Role::Write, 1_500)
                .unwrap()
                .is_some()
        );
        assert_eq!(
            reason(trust.check(&writer, key, Role::Admin, 1_500)),
            "missing_scope"
        );
        assert_eq!(
            reason(trust.check(&writer, key, Role::Write, 2_000 + DEFAULT_SKEW_S + 1)),
            "expired"
        );
        assert!(
            trust
                .check(&writer, key, Role::Write, 2_000 + DEFAULT_SKEW_S)
                .is_ok()
        );
        assert_eq!(
            reason(trust.check(&writer, other.public_key().to_bytes(), Role::Write, 1_500)),
            "wrong_subject"
        );
        let foreign = encode_metadata(&[token(&other, &peer, Scope::WRITE)]);
        assert_eq!(
            reason(trust.check(&foreign, key, Role::Write, 1_500)),
            "untrusted_issuer"
        );
        let mut trusting = trust.clone();
        trusting.trust(other.node_id());
        assert!(trusting.check(&foreign, key, Role::Write, 1_500).is_ok());
        assert_eq!(trust.check(&[], key, Role::Write, 1_500).unwrap(), None);
    }
}
