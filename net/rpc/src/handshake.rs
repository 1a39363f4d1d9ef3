//! Session handshake: Noise `XX` (snow) in which each side proves its ed25519 identity by
//! signing the Noise handshake hash, its own Noise static key and its capability tags inside
//! its encrypted handshake payload (docs/FORMAT.md section 5.2).
//!
//! Message flow (each message on the wire is a u16 little-endian length + Noise message):
//! 1. initiator → responder: `e` (empty payload)
//! 2. responder → initiator: `e, ee, s, es` + responder [`HandshakePayload`]
//! 3. initiator → responder: `s, se` + initiator [`HandshakePayload`]
//!
//! A payload's signature covers `SIGNATURE_CONTEXT || role || h || noise_static || caps`, where
//! `h` is the handshake hash just before the message carrying it is written (both sides hold the
//! same `h` there), `noise_static` is the signer's own Noise static public key (just sent in the
//! same message, so the verifier checks it against the key Noise authenticated) and `caps` is the
//! encoded capability field. A signature is therefore bound to this session's ephemeral keys and
//! to the static key that the session's transport keys depend on; it cannot be replayed,
//! reflected or paired with another static key. The Noise static keys are fresh per session; the
//! ed25519 key is the identity.
//!
//! A pending handshake holds a fixed, small allocation: its messages have a fixed maximum size
//! ([`MAX_HANDSHAKE_MESSAGE_LEN`]) and are read into and written from fixed buffers; a longer
//! length prefix fails before anything is read. A dial pinned to a node id checks the
//! responder's proven id after message 2 and stops before message 3, so nothing of the
//! caller's identity reaches a node other than the one it meant to reach.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::{Signature, VerifyingKey};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::identity::{Identity, NodeId, verify_strict};

/// Noise protocol name.
pub const NOISE_PARAMS: &str = "Noise_XX_25519_AESGCM_BLAKE2s";
/// Noise prologue both sides must agree on.
pub const PROLOGUE: &[u8] = b"net-mesh nRPC v1";
/// Version of the handshake payload.
pub const HANDSHAKE_PAYLOAD_VERSION: u8 = 2;
/// Encoded payload size without capability tags: version (1) + ed25519 public key (32) +
/// signature (64) + capabilities length (2).
pub const HANDSHAKE_PAYLOAD_MIN_LEN: usize = 99;
/// Longest encoded capability field (the tags, without their u16 length).
pub const MAX_CAPABILITIES_LEN: usize = 512;
/// Longest encoded payload.
pub const HANDSHAKE_PAYLOAD_MAX_LEN: usize = HANDSHAKE_PAYLOAD_MIN_LEN + MAX_CAPABILITIES_LEN;
/// Longest capability tag.
pub const MAX_CAPABILITY_TAG_LEN: usize = 64;
/// Longest handshake message: message 2 carries `e` (32), encrypted `s` (32 + 16) and the
/// encrypted payload (payload + 16).
pub const MAX_HANDSHAKE_MESSAGE_LEN: usize = 32 + 48 + HANDSHAKE_PAYLOAD_MAX_LEN + 16;
/// Domain separation for the identity signature.
pub const SIGNATURE_CONTEXT: &[u8] = b"net-mesh handshake signature v2";
/// Role byte of the initiator in the signed message.
pub const ROLE_INITIATOR: u8 = 1;
/// Role byte of the responder in the signed message.
pub const ROLE_RESPONDER: u8 = 2;
/// Length of a Noise static (X25519) public key.
pub const NOISE_STATIC_LEN: usize = 32;

/// The capability tags a node announces at session start (docs/FORMAT.md section 5.2), e.g.
/// `dataforts.blob_tree_v3`. Canonical: sorted, no duplicates, each 1..=64 characters from
/// `[a-z0-9._-]`, at most [`MAX_CAPABILITIES_LEN`] bytes encoded.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Capabilities {
    /// The encoded field: per tag, a length byte and the tag's bytes, tags in ascending order.
    encoded: Arc<[u8]>,
}

/// A capability set that cannot be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapabilityError {
    /// A tag is empty, too long or has characters outside `[a-z0-9._-]`.
    #[error("invalid capability tag {0:?}: use 1..=64 characters from [a-z0-9._-]")]
    BadTag(String),
    /// The tags together exceed [`MAX_CAPABILITIES_LEN`] encoded bytes.
    #[error("capability tags take {0} bytes, more than {MAX_CAPABILITIES_LEN}")]
    TooLong(usize),
    /// Decoded tags are not in strictly ascending order (unsorted or duplicated).
    #[error("capability tags are not sorted and unique")]
    NotCanonical,
    /// A tag's length runs past the end of the field.
    #[error("capability field truncated")]
    Truncated,
}

fn valid_tag(tag: &[u8]) -> bool {
    (1..=MAX_CAPABILITY_TAG_LEN).contains(&tag.len())
        && tag
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

impl Capabilities {
    /// A capability set from tags (sorted and deduplicated here).
    pub fn new<I, S>(tags: I) -> Result<Self, CapabilityError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut tags: Vec<String> = tags.into_iter().map(|t| t.as_ref().to_string()).collect();
        tags.sort();
        tags.dedup();
        let mut encoded = Vec::new();
        for tag in &tags {
            if !valid_tag(tag.as_bytes()) {
                return Err(CapabilityError::BadTag(tag.clone()));
            }
            encoded
                .push(u8::try_from(tag.len()).map_err(|_| CapabilityError::BadTag(tag.clone()))?);
            encoded.extend_from_slice(tag.as_bytes());
        }
        if encoded.len() > MAX_CAPABILITIES_LEN {
            return Err(CapabilityError::TooLong(encoded.len()));
        }
        Ok(Capabilities {
            encoded: encoded.into(),
        })
    }

    /// Strict decoder of the encoded field (canonical order, valid tags, bounded length).
    pub fn decode(bytes: &[u8]) -> Result<Self, CapabilityError> {
        if bytes.len() > MAX_CAPABILITIES_LEN {
            return Err(CapabilityError::TooLong(bytes.len()));
        }
        let mut rest = bytes;
        let mut previous: Option<&[u8]> = None;
        while let Some((&len, tail)) = rest.split_first() {
            let (tag, tail) = tail
                .split_at_checked(usize::from(len))
                .ok_or(CapabilityError::Truncated)?;
            if !valid_tag(tag) {
                return Err(CapabilityError::BadTag(
                    String::from_utf8_lossy(tag).into_owned(),
                ));
            }
            if previous.is_some_and(|p| p >= tag) {
                return Err(CapabilityError::NotCanonical);
            }
            previous = Some(tag);
            rest = tail;
        }
        Ok(Capabilities {
            encoded: bytes.into(),
        })
    }

    /// The encoded field (without its u16 length).
    pub fn encoded(&self) -> &[u8] {
        &self.encoded
    }

    /// The tags, in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        let mut rest: &[u8] = &self.encoded;
        std::iter::from_fn(move || {
            let (&len, tail) = rest.split_first()?;
            let (tag, tail) = tail.split_at_checked(usize::from(len))?;
            rest = tail;
            std::str::from_utf8(tag).ok()
        })
    }

    /// True when `tag` is announced.
    pub fn contains(&self, tag: &str) -> bool {
        self.iter().any(|t| t == tag)
    }

    /// True when no tag is announced.
    pub fn is_empty(&self) -> bool {
        self.encoded.is_empty()
    }
}

impl fmt::Debug for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// The authenticated peer of a session. Only a completed handshake creates one (no public
/// fields or constructors), so any `PeerIdentity` a handler or hook sees was proven on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerIdentity {
    node_id: NodeId,
    public_key: [u8; 32],
    capabilities: Capabilities,
}

impl PeerIdentity {
    /// Node id derived from the proven public key.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The ed25519 key the peer proved possession of.
    pub fn public_key(&self) -> [u8; 32] {
        self.public_key
    }

    /// The capability tags the peer signed in its handshake.
    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// A peer for the dispatcher fuzz harness, which runs a session without a handshake.
    pub(crate) fn for_harness() -> Self {
        let key = crate::identity::Identity::from_seed([0x66; 32]).public_key();
        PeerIdentity {
            node_id: NodeId::from_public_key(&key),
            public_key: key.to_bytes(),
            capabilities: Capabilities::default(),
        }
    }
}

/// The identity proof carried inside an encrypted handshake message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakePayload {
    /// ed25519 public key of the sender.
    pub public_key: [u8; 32],
    /// Signature over `SIGNATURE_CONTEXT || role || h || noise_static || caps`.
    pub signature: [u8; 64],
    /// The sender's capability tags.
    pub capabilities: Capabilities,
}

/// A handshake payload that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// Shorter than [`HANDSHAKE_PAYLOAD_MIN_LEN`], or not the length its fields announce.
    #[error("handshake payload is {0} bytes, not what its fields announce")]
    WrongLength(usize),
    /// Unknown version byte.
    #[error("unsupported handshake payload version {0}")]
    UnsupportedVersion(u8),
    /// The capability field is invalid.
    #[error("bad capability field: {0}")]
    Capabilities(#[from] CapabilityError),
}

impl HandshakePayload {
    /// Encodes into `out` (at least [`HANDSHAKE_PAYLOAD_MAX_LEN`] bytes); returns the length.
    pub fn encode_into(&self, out: &mut [u8]) -> usize {
        let caps = self.capabilities.encoded();
        let caps_len = u16::try_from(caps.len()).unwrap_or(u16::MAX);
        let parts: [&[u8]; 5] = [
            &[HANDSHAKE_PAYLOAD_VERSION],
            &self.public_key,
            &self.signature,
            &caps_len.to_le_bytes(),
            caps,
        ];
        let mut at = 0usize;
        for part in parts {
            let end = at.saturating_add(part.len());
            if let Some(dst) = out.get_mut(at..end) {
                dst.copy_from_slice(part);
            }
            at = end;
        }
        at.min(out.len())
    }

    /// Encodes into a fresh vector.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![0u8; HANDSHAKE_PAYLOAD_MAX_LEN];
        let n = self.encode_into(&mut out);
        out.truncate(n);
        out
    }

    /// Strict decoder: known version, exact length, canonical capability field.
    pub fn decode(bytes: &[u8]) -> Result<Self, PayloadError> {
        let wrong = || PayloadError::WrongLength(bytes.len());
        let (version, rest) = bytes.split_first().ok_or_else(wrong)?;
        if *version != HANDSHAKE_PAYLOAD_VERSION {
            return Err(PayloadError::UnsupportedVersion(*version));
        }
        let (key, rest) = rest.split_first_chunk::<32>().ok_or_else(wrong)?;
        let (sig, rest) = rest.split_first_chunk::<64>().ok_or_else(wrong)?;
        let (caps_len, caps) = rest.split_first_chunk::<2>().ok_or_else(wrong)?;
        if caps.len() != usize::from(u16::from_le_bytes(*caps_len)) {
            return Err(wrong());
        }
        Ok(HandshakePayload {
            public_key: *key,
            signature: *sig,
            capabilities: Capabilities::decode(caps)?,
        })
    }

    /// Builds the payload proving `identity` for `role` over handshake hash `h`, bound to the
    /// signer's Noise static public key `noise_static` and to `capabilities`.
    pub fn sign(
        identity: &Identity,
        role: u8,
        h: &[u8],
        noise_static: &[u8],
        capabilities: &Capabilities,
    ) -> Self {
        let signature = identity.sign(&signed_message(role, h, noise_static, capabilities));
        HandshakePayload {
            public_key: identity.public_key().to_bytes(),
            signature: signature.to_bytes(),
            capabilities: capabilities.clone(),
        }
    }

    /// Verifies the payload for `role` over `h` and the sender's Noise static key
    /// `noise_static` (as Noise authenticated it), returning the proven node id.
    pub fn verify(
        &self,
        role: u8,
        h: &[u8],
        noise_static: &[u8],
    ) -> Result<NodeId, HandshakeError> {
        let key =
            VerifyingKey::from_bytes(&self.public_key).map_err(|_| HandshakeError::BadPublicKey)?;
        let signature = Signature::from_bytes(&self.signature);
        let message = signed_message(role, h, noise_static, &self.capabilities);
        if !verify_strict(&key, &message, &signature) {
            return Err(HandshakeError::BadSignature);
        }
        Ok(NodeId::from_public_key(&key))
    }

    /// Verifies and turns the payload into the session's authenticated peer.
    fn into_peer(
        self,
        role: u8,
        h: &[u8],
        noise_static: &[u8],
    ) -> Result<PeerIdentity, HandshakeError> {
        let node_id = self.verify(role, h, noise_static)?;
        Ok(PeerIdentity {
            node_id,
            public_key: self.public_key,
            capabilities: self.capabilities,
        })
    }
}

fn signed_message(role: u8, h: &[u8], noise_static: &[u8], caps: &Capabilities) -> Vec<u8> {
    let caps = caps.encoded();
    let caps_len = u16::try_from(caps.len()).unwrap_or(u16::MAX);
    let mut msg = Vec::with_capacity(
        SIGNATURE_CONTEXT
            .len()
            .saturating_add(1 + h.len() + noise_static.len() + 2 + caps.len()),
    );
    msg.extend_from_slice(SIGNATURE_CONTEXT);
    msg.push(role);
    msg.extend_from_slice(h);
    msg.extend_from_slice(noise_static);
    msg.extend_from_slice(&caps_len.to_le_bytes());
    msg.extend_from_slice(caps);
    msg
}

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// Socket error.
    #[error("handshake I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer did not finish within the handshake timeout.
    #[error("handshake timed out")]
    Timeout,
    /// Noise rejected a message (bad MAC, wrong prologue, ...).
    #[error("noise error: {0}")]
    Noise(#[from] snow::Error),
    /// A message's length prefix exceeds [`MAX_HANDSHAKE_MESSAGE_LEN`].
    #[error("handshake message of {0} bytes exceeds the maximum of {MAX_HANDSHAKE_MESSAGE_LEN}")]
    MessageTooLarge(usize),
    /// The identity payload was malformed.
    #[error("bad handshake payload: {0}")]
    Payload(#[from] PayloadError),
    /// The payload's public key is not a valid ed25519 point.
    #[error("handshake public key is invalid")]
    BadPublicKey,
    /// The identity signature did not verify.
    #[error("handshake identity signature does not verify")]
    BadSignature,
    /// A pinned dial reached a node other than the one it was pinned to; the handshake stopped
    /// before this side's identity was sent.
    #[error("expected node {expected}, but the responder proved to be {found}")]
    UnexpectedPeer {
        /// The node id the dial was pinned to.
        expected: NodeId,
        /// The node id the responder proved.
        found: NodeId,
    },
}

/// Completed handshake: the proven peer and the keys for the transport.
#[derive(Debug)]
pub struct Established {
    /// Who is on the other end.
    pub peer: PeerIdentity,
    /// Noise transport keys from the handshake's `Split()` (see `transport`).
    pub transport: crate::transport::SessionKeys,
}

fn builder() -> Result<snow::Builder<'static>, snow::Error> {
    let params = NOISE_PARAMS.parse()?;
    snow::Builder::new(params).prologue(PROLOGUE)
}

/// A fixed buffer for one handshake message plus its length prefix.
type MessageBuf = [u8; 2 + MAX_HANDSHAKE_MESSAGE_LEN];

async fn write_msg<W: AsyncWrite + Unpin>(
    w: &mut W,
    buf: &mut MessageBuf,
    len: usize,
) -> Result<(), HandshakeError> {
    let prefix = u16::try_from(len).map_err(|_| HandshakeError::MessageTooLarge(len))?;
    let (head, _) = buf.split_at_mut(2);
    head.copy_from_slice(&prefix.to_le_bytes());
    let out = buf
        .get(..len.saturating_add(2))
        .ok_or(HandshakeError::MessageTooLarge(len))?;
    w.write_all(out).await?;
    w.flush().await?;
    Ok(())
}

/// Reads one message into `buf` (after its 2-byte prefix slot); returns its length.
async fn read_msg<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut MessageBuf,
) -> Result<usize, HandshakeError> {
    let mut len = [0u8; 2];
    r.read_exact(&mut len).await?;
    let len = usize::from(u16::from_le_bytes(len));
    if len > MAX_HANDSHAKE_MESSAGE_LEN {
        return Err(HandshakeError::MessageTooLarge(len));
    }
    let msg = buf
        .get_mut(2..len.saturating_add(2))
        .ok_or(HandshakeError::MessageTooLarge(len))?;
    r.read_exact(msg).await?;
    Ok(len)
}

/// This side of a handshake: who it is and what it announces.
#[derive(Debug, Clone)]
pub struct Local<'a> {
    /// This side's identity.
    pub identity: &'a Identity,
    /// This side's capability tags.
    pub capabilities: Capabilities,
}

impl<'a> From<&'a Identity> for Local<'a> {
    /// An identity announcing no capability tags.
    fn from(identity: &'a Identity) -> Self {
        Local {
            identity,
            capabilities: Capabilities::default(),
        }
    }
}

/// Runs the initiator side with a timeout. With `expected = Some(id)` the handshake stops with
/// [`HandshakeError::UnexpectedPeer`] before message 3 (before anything of this side's identity
/// is sent) when the responder proves a different node id.
pub async fn initiate<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    local: Local<'_>,
    expected: Option<NodeId>,
    timeout: Duration,
) -> Result<Established, HandshakeError> {
    tokio::time::timeout(timeout, initiate_inner(stream, local, expected))
        .await
        .map_err(|_| HandshakeError::Timeout)?
}

async fn initiate_inner<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    local: Local<'_>,
    expected: Option<NodeId>,
) -> Result<Established, HandshakeError> {
    let b = builder()?;
    let keypair = b.generate_keypair()?;
    let mut hs = b.local_private_key(&keypair.private)?.build_initiator()?;
    let mut wire: MessageBuf = [0; 2 + MAX_HANDSHAKE_MESSAGE_LEN];
    let mut plain = [0u8; HANDSHAKE_PAYLOAD_MAX_LEN];
    let n = hs.write_message(&[], wire.get_mut(2..).unwrap_or_default())?;
    write_msg(stream, &mut wire, n).await?;

    let len = read_msg(stream, &mut wire).await?;
    let h2 = hs.get_handshake_hash().to_vec();
    let n = hs.read_message(
        wire.get(2..len.saturating_add(2)).unwrap_or_default(),
        &mut plain,
    )?;
    let theirs = HandshakePayload::decode(plain.get(..n).unwrap_or_default())?;
    let remote_static = hs.get_remote_static().unwrap_or_default().to_vec();
    let peer = theirs.into_peer(ROLE_RESPONDER, &h2, &remote_static)?;
    if let Some(expected) = expected
        && expected != peer.node_id
    {
        return Err(HandshakeError::UnexpectedPeer {
            expected,
            found: peer.node_id,
        });
    }

    let h3 = hs.get_handshake_hash().to_vec();
    let ours = HandshakePayload::sign(
        local.identity,
        ROLE_INITIATOR,
        &h3,
        &keypair.public,
        &local.capabilities,
    );
    let payload_len = ours.encode_into(&mut plain);
    let n = hs.write_message(
        plain.get(..payload_len).unwrap_or_default(),
        wire.get_mut(2..).unwrap_or_default(),
    )?;
    write_msg(stream, &mut wire, n).await?;
    Ok(Established {
        peer,
        transport: transport_keys(&mut hs, true)?,
    })
}

/// The transport keys of a finished handshake (the Noise `Split()`).
fn transport_keys(
    hs: &mut snow::HandshakeState,
    initiator: bool,
) -> Result<crate::transport::SessionKeys, HandshakeError> {
    if !hs.is_handshake_finished() {
        return Err(snow::Error::State(snow::error::StateProblem::HandshakeNotFinished).into());
    }
    let (mut k1, mut k2) = hs.dangerously_get_raw_split();
    let keys = crate::transport::SessionKeys::from_split(initiator, &k1, &k2);
    k1.fill(0);
    k2.fill(0);
    Ok(keys?)
}

/// Runs the responder side with a timeout.
pub async fn respond<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    local: Local<'_>,
    timeout: Duration,
) -> Result<Established, HandshakeError> {
    tokio::time::timeout(timeout, respond_inner(stream, local))
        .await
        .map_err(|_| HandshakeError::Timeout)?
}

async fn respond_inner<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    local: Local<'_>,
) -> Result<Established, HandshakeError> {
    let b = builder()?;
    let keypair = b.generate_keypair()?;
    let mut hs = b.local_private_key(&keypair.private)?.build_responder()?;
    let mut wire: MessageBuf = [0; 2 + MAX_HANDSHAKE_MESSAGE_LEN];
    let mut plain = [0u8; HANDSHAKE_PAYLOAD_MAX_LEN];
    let len = read_msg(stream, &mut wire).await?;
    let n = hs.read_message(
        wire.get(2..len.saturating_add(2)).unwrap_or_default(),
        &mut plain,
    )?;
    if n != 0 {
        return Err(PayloadError::WrongLength(n).into());
    }
    let h2 = hs.get_handshake_hash().to_vec();
    let ours = HandshakePayload::sign(
        local.identity,
        ROLE_RESPONDER,
        &h2,
        &keypair.public,
        &local.capabilities,
    );
    let payload_len = ours.encode_into(&mut plain);
    let n = hs.write_message(
        plain.get(..payload_len).unwrap_or_default(),
        wire.get_mut(2..).unwrap_or_default(),
    )?;
    write_msg(stream, &mut wire, n).await?;

    let len = read_msg(stream, &mut wire).await?;
    let h3 = hs.get_handshake_hash().to_vec();
    let n = hs.read_message(
        wire.get(2..len.saturating_add(2)).unwrap_or_default(),
        &mut plain,
    )?;
    let theirs = HandshakePayload::decode(plain.get(..n).unwrap_or_default())?;
    let remote_static = hs.get_remote_static().unwrap_or_default().to_vec();
    let peer = theirs.into_peer(ROLE_INITIATOR, &h3, &remote_static)?;
    Ok(Established {
        peer,
        transport: transport_keys(&mut hs, false)?,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn caps() -> Capabilities {
        Capabilities::new(["dataforts.blob_tree_v3", "a.b"]).unwrap()
    }

    #[test]
    fn payload_round_trips_and_is_strict() {
        let id = Identity::from_seed([3; 32]);
        let p = HandshakePayload::sign(&id, ROLE_INITIATOR, &[9; 32], &[5; 32], &caps());
        let bytes = p.encode();
        assert_eq!(HandshakePayload::decode(&bytes).unwrap(), p);
        assert_eq!(
            p.verify(ROLE_INITIATOR, &[9; 32], &[5; 32]).unwrap(),
            id.node_id()
        );
        for (role, h, s) in [
            (ROLE_RESPONDER, [9u8; 32], [5u8; 32]),
            (ROLE_INITIATOR, [8; 32], [5; 32]),
            (ROLE_INITIATOR, [9; 32], [6; 32]),
        ] {
            assert!(matches!(
                p.verify(role, &h, &s),
                Err(HandshakeError::BadSignature)
            ));
        }
        // Capabilities are signed: another set does not verify.
        let mut other = p.clone();
        other.capabilities = Capabilities::new(["a.b"]).unwrap();
        assert!(matches!(
            other.verify(ROLE_INITIATOR, &[9; 32], &[5; 32]),
            Err(HandshakeError::BadSignature)
        ));
        assert!(matches!(
            HandshakePayload::decode(&bytes[..bytes.len() - 1]),
            Err(PayloadError::WrongLength(_))
        ));
        let mut v1 = bytes.clone();
        v1[0] = 1;
        assert_eq!(
            HandshakePayload::decode(&v1),
            Err(PayloadError::UnsupportedVersion(1))
        );
    }

    #[test]
    fn capabilities_are_canonical() {
        let c = caps();
        assert_eq!(
            c.iter().collect::<Vec<_>>(),
            ["a.b", "dataforts.blob_tree_v3"]
        );
        assert!(c.contains("dataforts.blob_tree_v3"));
        assert_eq!(Capabilities::decode(c.encoded()).unwrap(), c);
        assert_eq!(
            Capabilities::decode(&[1, b'b', 1, b'a']),
            Err(CapabilityError::NotCanonical)
        );
        assert_eq!(
            Capabilities::decode(&[1, b'a', 1, b'a']),
            Err(CapabilityError::NotCanonical)
        );
        assert_eq!(
            Capabilities::decode(&[3, b'a']),
            Err(CapabilityError::Truncated)
        );
        assert!(matches!(
            Capabilities::new(["Upper"]),
            Err(CapabilityError::BadTag(_))
        ));
        let many: Vec<String> = (0..40).map(|i| format!("tag-number-{i:04}")).collect();
        assert!(matches!(
            Capabilities::new(&many),
            Err(CapabilityError::TooLong(_))
        ));
    }

    #[tokio::test]
    async fn both_sides_learn_each_others_identity_and_capabilities() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let ia = Identity::from_seed([1; 32]);
        let ib = Identity::from_seed([2; 32]);
        let (ca, cb) = (caps(), Capabilities::default());
        let t = Duration::from_secs(10);
        let la = Local {
            identity: &ia,
            capabilities: ca.clone(),
        };
        let lb = Local {
            identity: &ib,
            capabilities: cb,
        };
        let (ra, rb) = tokio::join!(
            initiate(&mut a, la, Some(ib.node_id()), t),
            respond(&mut b, lb, t)
        );
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        assert_eq!(ra.peer.node_id(), ib.node_id());
        assert!(ra.peer.capabilities().is_empty());
        assert_eq!(rb.peer.node_id(), ia.node_id());
        assert_eq!(rb.peer.capabilities(), &ca);
    }

    #[test]
    fn longest_message_fits_the_fixed_buffer() {
        let tags: Vec<String> = (0..8).map(|i| format!("{i}{}", "x".repeat(62))).collect();
        let caps = Capabilities::new(&tags).unwrap();
        assert_eq!(caps.encoded().len(), MAX_CAPABILITIES_LEN);
        let p = HandshakePayload::sign(
            &Identity::from_seed([1; 32]),
            ROLE_RESPONDER,
            &[0; 32],
            &[0; 32],
            &caps,
        );
        assert_eq!(p.encode().len(), HANDSHAKE_PAYLOAD_MAX_LEN);
    }
}
