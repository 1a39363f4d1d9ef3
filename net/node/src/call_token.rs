//! What a call to the node carries in its nRPC metadata (docs/FORMAT.md §5.6) — the channel it
//! acts on and, optionally, a permission-token chain — and the node's trust in token issuers.
//!
//! Metadata layout: one version byte, [`METADATA_VERSION`] (`0x02`), the channel name's length
//! (one byte) and the name (a valid channel name, `check_channel_name`), then the chain's binary
//! form (§5.5: 0..=[`MAX_CHAIN_LEN`] tokens of [`TOKEN_LEN`] bytes, root first). Empty metadata
//! means channel [`DEFAULT_CHANNEL`] and no token. Anything else — another version byte, a
//! missing or invalid channel name, a length that is not whole tokens, too many links, a
//! malformed token — is a refusal with its own reason, never a panic.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

pub use net_mesh_engine::index::DEFAULT_CHANNEL;
use net_mesh_engine::index::{ChannelNameError, MAX_CHANNEL_NAME, check_channel_name};
use net_mesh_rpc::NodeId;
use net_mesh_rpc::frame::MAX_METADATA_LEN;
use net_mesh_rpc::token::{
    DEFAULT_SKEW_S, MAX_CHAIN_LEN, PermissionToken, Scope, SignatureCache, TOKEN_LEN, Verified,
    VerifyContext, VerifyError, decode_chain, encode_chain, verify_cached,
};

use crate::proto::Role;
use crate::revoke::Floors;

/// The version byte that opens call metadata.
pub const METADATA_VERSION: u8 = 0x02;
/// The longest call metadata: the version byte, the longest channel name with its length
/// byte, and a full chain.
pub const MAX_CALL_METADATA_LEN: usize = 2 + MAX_CHANNEL_NAME + MAX_CHAIN_LEN * TOKEN_LEN;

const _: () = assert!(MAX_CALL_METADATA_LEN <= MAX_METADATA_LEN);

/// What a call's metadata says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallMetadata {
    /// The channel the call acts on.
    pub channel: String,
    /// The token chain, root first; empty when the call carries none.
    pub chain: Vec<PermissionToken>,
}

/// The metadata of a call on `channel` carrying `chain` (empty: no token). A call on
/// [`DEFAULT_CHANNEL`] without a token carries no metadata at all. `channel` must be a valid
/// channel name (the node refuses the call otherwise).
pub fn encode_metadata(channel: &str, chain: &[PermissionToken]) -> Vec<u8> {
    if channel == DEFAULT_CHANNEL && chain.is_empty() {
        return Vec::new();
    }
    let name = channel.as_bytes();
    let mut out = Vec::with_capacity(
        chain
            .len()
            .saturating_mul(TOKEN_LEN)
            .saturating_add(name.len())
            .saturating_add(2),
    );
    out.push(METADATA_VERSION);
    out.push(u8::try_from(name.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(name);
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
    /// The channel name is missing, cut short or not a valid name.
    #[error("channel: {0}")]
    Channel(#[from] ChannelNameError),
    /// The chain does not decode or does not verify.
    #[error("{}: {}", .0.reason(), .0)]
    Verify(#[from] VerifyError),
    /// The chain verified for the call's channel, but the method acts on the whole node
    /// ([`crate::proto::Method::acts_on_node`]) and the token is for one channel only.
    #[error(
        "wrong_channel: the method acts on the whole node, not on one channel: it needs a token \
         for every channel (`token mint --channel '*'`); this one is for one channel"
    )]
    OneChannel,
}

impl TokenRefusal {
    /// A short stable label for metrics: `metadata_version`, `channel`, or the
    /// [`VerifyError`]'s own.
    pub fn reason(&self) -> &'static str {
        match self {
            TokenRefusal::MetadataVersion { .. } => "metadata_version",
            TokenRefusal::Channel(_) => "channel",
            TokenRefusal::Verify(e) => e.reason(),
            TokenRefusal::OneChannel => "wrong_channel",
        }
    }
}

/// Decodes call metadata (module docs).
pub fn decode_metadata(metadata: &[u8]) -> Result<CallMetadata, TokenRefusal> {
    let (channel, chain) = split_metadata(metadata)?;
    let chain = if chain.is_empty() {
        Vec::new()
    } else {
        decode_chain(chain).map_err(VerifyError::from)?
    };
    Ok(CallMetadata { channel, chain })
}

/// The channel a call's metadata names, without decoding its tokens (a handler's view: the
/// authorization hook has decoded and checked the whole metadata before the call got here).
pub fn metadata_channel(metadata: &[u8]) -> Result<String, TokenRefusal> {
    split_metadata(metadata).map(|(channel, _)| channel)
}

/// The channel (checked) and the chain's bytes (not yet decoded).
fn split_metadata(metadata: &[u8]) -> Result<(String, &[u8]), TokenRefusal> {
    let Some((&version, rest)) = metadata.split_first() else {
        return Ok((DEFAULT_CHANNEL.to_string(), &[]));
    };
    if version != METADATA_VERSION {
        return Err(TokenRefusal::MetadataVersion { version });
    }
    let (name, chain) = rest
        .split_first()
        .and_then(|(&len, rest)| rest.split_at_checked(usize::from(len)))
        .ok_or_else(|| ChannelNameError {
            name: String::from_utf8_lossy(rest.get(1..).unwrap_or_default()).into_owned(),
        })?;
    let channel = String::from_utf8_lossy(name).into_owned();
    check_channel_name(&channel)?;
    Ok((channel, chain))
}

/// Fuzz harness of [`decode_metadata`]: any bytes decode to a value or a refusal, never a
/// panic, and an accepted value encodes to metadata that decodes to the same value.
pub fn fuzz_decode_metadata(data: &[u8]) {
    if let Ok(call) = decode_metadata(data) {
        let again = decode_metadata(&encode_metadata(&call.channel, &call.chain));
        assert_eq!(
            again.as_ref().ok(),
            Some(&call),
            "metadata did not round-trip"
        );
    }
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

/// Most chains [`VerifiedChains`] remembers; when full it forgets them all (a chain costs its
/// signature checks again on its next call). 32 bytes each.
pub const MAX_VERIFIED_CHAINS: usize = 4096;

/// Token chains whose every signature verified on this node, by the digest of their bytes, so
/// a client's next calls with the same chain skip the ed25519 checks (everything else is
/// checked on every call; `token::verify_cached`). Only a chain rooted at a trusted issuer
/// with valid signatures gets in, and the set is bounded.
#[derive(Debug, Default)]
pub struct VerifiedChains(Mutex<HashSet<[u8; 32]>>);

impl VerifiedChains {
    fn set(&self) -> std::sync::MutexGuard<'_, HashSet<[u8; 32]>> {
        // Inserting or clearing a set of digests cannot leave it invalid.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl SignatureCache for VerifiedChains {
    fn contains(&self, digest: &[u8; 32]) -> bool {
        self.set().contains(digest)
    }

    fn insert(&self, digest: [u8; 32]) {
        let mut set = self.set();
        if set.len() >= MAX_VERIFIED_CHAINS {
            set.clear();
        }
        set.insert(digest);
    }
}

/// Whom the node takes tokens from, and how far it lets their clocks drift.
#[derive(Debug, Clone)]
pub struct TokenTrust {
    trusted_issuers: HashSet<NodeId>,
    /// Chains whose signatures verified here.
    verified: Arc<VerifiedChains>,
    /// Revocation floors, shared with the node that persists them ([`crate::revoke`]).
    generation_floors: Floors,
    skew_s: u64,
}

impl TokenTrust {
    /// Trusts only `own` (the node's identity), with [`DEFAULT_SKEW_S`].
    pub fn only(own: NodeId) -> TokenTrust {
        TokenTrust {
            trusted_issuers: HashSet::from([own]),
            verified: Arc::default(),
            generation_floors: Floors::default(),
            skew_s: DEFAULT_SKEW_S,
        }
    }

    /// Also trusts chains rooted at `issuer`.
    pub fn trust(&mut self, issuer: NodeId) {
        self.trusted_issuers.insert(issuer);
    }

    /// Enforces `floors` (the node's revocation floors, which it may raise at any time).
    pub fn set_floors(&mut self, floors: Floors) {
        self.generation_floors = floors;
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

    /// Checks `chain` (non-empty) for a call of `role` on `channel` by the session peer whose
    /// ed25519 key is `peer_public_key`, at `now_unix_s`.
    pub fn check(
        &self,
        chain: &[PermissionToken],
        channel: &str,
        peer_public_key: [u8; 32],
        role: Role,
        now_unix_s: u64,
    ) -> Result<Verified, TokenRefusal> {
        let granted = chain.last().map_or(Scope::NONE, |t| t.claims().scope);
        // A writer only ever raises one entry, so a poisoned map is still a valid one.
        let floors = self
            .generation_floors
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let ctx = VerifyContext {
            trusted_issuers: &self.trusted_issuers,
            generation_floors: &floors,
            now_unix_s,
            skew_s: self.skew_s,
            peer_public_key,
            channel,
            required: required_scope(role, granted),
        };
        Ok(verify_cached(chain, &ctx, self.verified.as_ref())?)
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
                channel: TokenChannel::named(DEFAULT_CHANNEL),
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
        let metadata = encode_metadata("photos", &chain);
        assert_eq!(metadata.len(), 2 + 6 + TOKEN_LEN);
        assert_eq!(&metadata[..8], b"\x02\x06photos");
        let decoded = decode_metadata(&metadata).unwrap();
        assert_eq!(
            (decoded.channel.as_str(), decoded.chain),
            ("photos", chain.clone())
        );
        let plain = CallMetadata {
            channel: DEFAULT_CHANNEL.into(),
            chain: Vec::new(),
        };
        assert_eq!(encode_metadata(DEFAULT_CHANNEL, &[]), Vec::<u8>::new());
        assert_eq!(decode_metadata(&[]).unwrap(), plain);
        assert_eq!(decode_metadata(b"\x02\x07default").unwrap(), plain);
        assert_eq!(metadata_channel(&metadata).unwrap(), "photos");
        assert_eq!(metadata_channel(&[]).unwrap(), DEFAULT_CHANNEL);
        assert_eq!(
            metadata_channel(b"\x02\x01*").unwrap_err().reason(),
            "channel"
        );
        assert_eq!(
            metadata_channel(b"\x01").unwrap_err().reason(),
            "metadata_version"
        );
        let no_token = decode_metadata(&encode_metadata("photos", &[])).unwrap();
        assert_eq!(
            (no_token.channel.as_str(), no_token.chain.len()),
            ("photos", 0)
        );

        let reason = |bytes: &[u8]| decode_metadata(bytes).unwrap_err().reason();
        let mut other_version = metadata.clone();
        other_version[0] = 1;
        assert_eq!(reason(&other_version), "metadata_version");
        assert_eq!(reason(&metadata[1..]), "metadata_version");
        assert_eq!(reason(&[METADATA_VERSION]), "channel");
        assert_eq!(reason(b"\x02\x09photos"), "channel");
        assert_eq!(reason(b"\x02\x00"), "channel");
        assert_eq!(reason(b"\x02\x01*"), "channel");
        assert_eq!(reason(b"\x02\x02\xc3\x28"), "channel");
        assert_eq!(reason(&metadata[..100]), "length");
        let mut seven = encode_metadata("photos", &[]);
        for _ in 0..MAX_CHAIN_LEN + 1 {
            seven.extend_from_slice(&chain[0].encode());
        }
        assert_eq!(reason(&seven), "chain_too_long");
        let mut bad_scope = metadata.clone();
        bad_scope[8 + net_mesh_rpc::token::OFF_SCOPE] = 0x80;
        assert_eq!(reason(&bad_scope), "malformed");
    }

    #[test]
    fn verified_chains_stay_bounded() {
        let chains = VerifiedChains::default();
        for i in 0..MAX_VERIFIED_CHAINS {
            let mut digest = [0u8; 32];
            digest[..8].copy_from_slice(&(i as u64).to_le_bytes());
            chains.insert(digest);
        }
        assert_eq!(chains.set().len(), MAX_VERIFIED_CHAINS);
        assert!(chains.contains(&[0; 32]));
        chains.insert([0xff; 32]);
        assert_eq!(chains.set().len(), 1);
        assert!(!chains.contains(&[0; 32]) && chains.contains(&[0xff; 32]));
    }

    #[test]
    fn the_fuzz_harness_takes_any_bytes() {
        let node = Identity::generate_ephemeral().unwrap();
        let token = token(&node, &node, Scope::READ);
        let good = encode_metadata("photos", &[token]);
        fuzz_decode_metadata(&good);
        fuzz_decode_metadata(b"\x02\x07default");
        for cut in 0..good.len() {
            fuzz_decode_metadata(&good[..cut]);
        }
        for bit in 0..good.len() * 8 {
            let mut flipped = good.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            fuzz_decode_metadata(&flipped);
        }
    }

    #[test]
    fn the_peer_key_the_role_and_the_clock_decide() {
        let node = Identity::generate_ephemeral().unwrap();
        let peer = Identity::generate_ephemeral().unwrap();
        let other = Identity::generate_ephemeral().unwrap();
        let trust = TokenTrust::only(node.node_id());
        let key = peer.public_key().to_bytes();
        let writer = [token(&node, &peer, Scope::WRITE)];
        let reason = |r: Result<Verified, TokenRefusal>| r.unwrap_err().reason();

        assert!(
            trust
                .check(&writer, DEFAULT_CHANNEL, key, Role::Read, 1_500)
                .is_ok()
        );
        assert!(
            trust
                .check(&writer, DEFAULT_CHANNEL, key, Role::Write, 1_500)
                .is_ok()
        );
        assert_eq!(
            reason(trust.check(&writer, DEFAULT_CHANNEL, key, Role::Admin, 1_500)),
            "missing_scope"
        );
        assert_eq!(
            reason(trust.check(
                &writer,
                DEFAULT_CHANNEL,
                key,
                Role::Write,
                2_000 + DEFAULT_SKEW_S + 1
            )),
            "expired"
        );
        assert!(
            trust
                .check(
                    &writer,
                    DEFAULT_CHANNEL,
                    key,
                    Role::Write,
                    2_000 + DEFAULT_SKEW_S
                )
                .is_ok()
        );
        assert_eq!(
            reason(trust.check(
                &writer,
                DEFAULT_CHANNEL,
                other.public_key().to_bytes(),
                Role::Write,
                1_500
            )),
            "wrong_subject"
        );
        let foreign = [token(&other, &peer, Scope::WRITE)];
        assert_eq!(
            reason(trust.check(&foreign, DEFAULT_CHANNEL, key, Role::Write, 1_500)),
            "untrusted_issuer"
        );
        let mut trusting = trust.clone();
        trusting.trust(other.node_id());
        assert!(
            trusting
                .check(&foreign, DEFAULT_CHANNEL, key, Role::Write, 1_500)
                .is_ok()
        );
        assert_eq!(
            reason(trust.check(&writer, "photos", key, Role::Write, 1_500)),
            "wrong_channel"
        );
    }
}
