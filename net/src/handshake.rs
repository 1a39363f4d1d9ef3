//! Session handshake: Noise `XX` (snow) in which each side proves its ed25519 identity by
//! signing the Noise handshake hash inside its encrypted handshake payload
//! (docs/FORMAT.md section 5.2).
//!
//! Message flow (each message on the wire is a u16 little-endian length + Noise message):
//! 1. initiator → responder: `e` (empty payload)
//! 2. responder → initiator: `e, ee, s, es` + responder [`HandshakePayload`]
//! 3. initiator → responder: `s, se` + initiator [`HandshakePayload`]
//!
//! A payload's signature covers `SIGNATURE_CONTEXT || role || h`, where `h` is the handshake
//! hash just before the message carrying it is written (both sides hold the same `h` there), so a
//! signature is bound to this session's ephemeral keys and cannot be replayed or reflected. The
//! Noise static keys are fresh per session; the ed25519 key is the identity.

use std::time::Duration;

use ed25519_dalek::{Signature, VerifyingKey};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::identity::{Identity, NodeId, verify_strict};

/// Noise protocol name.
pub const NOISE_PARAMS: &str = "Noise_XX_25519_AESGCM_BLAKE2s";
/// Noise prologue both sides must agree on.
pub const PROLOGUE: &[u8] = b"net-mesh nRPC v1";
/// Version of the handshake payload.
pub const HANDSHAKE_PAYLOAD_VERSION: u8 = 1;
/// Encoded payload size: version (1) + ed25519 public key (32) + signature (64).
pub const HANDSHAKE_PAYLOAD_LEN: usize = 97;
/// Domain separation for the identity signature.
pub const SIGNATURE_CONTEXT: &[u8] = b"net-mesh handshake signature v1";
/// Role byte of the initiator in the signed message.
pub const ROLE_INITIATOR: u8 = 1;
/// Role byte of the responder in the signed message.
pub const ROLE_RESPONDER: u8 = 2;
/// Largest Noise message (including its 16-byte tag).
pub const MAX_NOISE_MESSAGE_LEN: usize = 65535;

/// The authenticated peer of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerIdentity {
    /// Node id derived from the proven public key.
    pub node_id: NodeId,
    /// The ed25519 key the peer proved possession of.
    pub public_key: [u8; 32],
}

/// The identity proof carried inside an encrypted handshake message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakePayload {
    /// ed25519 public key of the sender.
    pub public_key: [u8; 32],
    /// Signature over `SIGNATURE_CONTEXT || role || handshake hash`.
    pub signature: [u8; 64],
}

/// A handshake payload that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// Not exactly [`HANDSHAKE_PAYLOAD_LEN`] bytes.
    #[error("handshake payload is {0} bytes, expected {HANDSHAKE_PAYLOAD_LEN}")]
    WrongLength(usize),
    /// Unknown version byte.
    #[error("unsupported handshake payload version {0}")]
    UnsupportedVersion(u8),
}

impl HandshakePayload {
    /// Encodes to the fixed 97-byte form.
    pub fn encode(&self) -> [u8; HANDSHAKE_PAYLOAD_LEN] {
        let mut out = [0u8; HANDSHAKE_PAYLOAD_LEN];
        let (version, rest) = out.split_at_mut(1);
        let (key, sig) = rest.split_at_mut(32);
        version.copy_from_slice(&[HANDSHAKE_PAYLOAD_VERSION]);
        key.copy_from_slice(&self.public_key);
        sig.copy_from_slice(&self.signature);
        out
    }

    /// Strict decoder: exact length, known version.
    pub fn decode(bytes: &[u8]) -> Result<Self, PayloadError> {
        let bytes: &[u8; HANDSHAKE_PAYLOAD_LEN] = bytes
            .try_into()
            .map_err(|_| PayloadError::WrongLength(bytes.len()))?;
        let (version, rest) = bytes.split_at(1);
        let (key, sig) = rest.split_at(32);
        if version != [HANDSHAKE_PAYLOAD_VERSION] {
            return Err(PayloadError::UnsupportedVersion(
                version.first().copied().unwrap_or(0),
            ));
        }
        Ok(HandshakePayload {
            public_key: key
                .try_into()
                .map_err(|_| PayloadError::WrongLength(bytes.len()))?,
            signature: sig
                .try_into()
                .map_err(|_| PayloadError::WrongLength(bytes.len()))?,
        })
    }

    /// Builds the payload proving `identity` for `role` over handshake hash `h`.
    pub fn sign(identity: &Identity, role: u8, h: &[u8]) -> Self {
        let signature = identity.sign(&signed_message(role, h));
        HandshakePayload {
            public_key: identity.public_key().to_bytes(),
            signature: signature.to_bytes(),
        }
    }

    /// Verifies the payload for `role` over `h`, returning the proven peer.
    pub fn verify(&self, role: u8, h: &[u8]) -> Result<PeerIdentity, HandshakeError> {
        let key =
            VerifyingKey::from_bytes(&self.public_key).map_err(|_| HandshakeError::BadPublicKey)?;
        let signature = Signature::from_bytes(&self.signature);
        if !verify_strict(&key, &signed_message(role, h), &signature) {
            return Err(HandshakeError::BadSignature);
        }
        Ok(PeerIdentity {
            node_id: NodeId::from_public_key(&key),
            public_key: self.public_key,
        })
    }
}

fn signed_message(role: u8, h: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(SIGNATURE_CONTEXT.len().saturating_add(1 + h.len()));
    msg.extend_from_slice(SIGNATURE_CONTEXT);
    msg.push(role);
    msg.extend_from_slice(h);
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
    /// The identity payload was malformed.
    #[error("bad handshake payload: {0}")]
    Payload(#[from] PayloadError),
    /// The payload's public key is not a valid ed25519 point.
    #[error("handshake public key is invalid")]
    BadPublicKey,
    /// The identity signature did not verify.
    #[error("handshake identity signature does not verify")]
    BadSignature,
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

async fn write_msg<W: AsyncWrite + Unpin>(w: &mut W, msg: &[u8]) -> Result<(), HandshakeError> {
    let len = u16::try_from(msg.len()).map_err(|_| snow::Error::Input)?;
    let mut out = Vec::with_capacity(msg.len().saturating_add(2));
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(msg);
    w.write_all(&out).await?;
    w.flush().await?;
    Ok(())
}

async fn read_msg<R: AsyncRead + Unpin>(r: &mut R) -> Result<Vec<u8>, HandshakeError> {
    let mut len = [0u8; 2];
    r.read_exact(&mut len).await?;
    let mut msg = vec![0u8; usize::from(u16::from_le_bytes(len))];
    r.read_exact(&mut msg).await?;
    Ok(msg)
}

/// Runs the initiator side with a timeout.
pub async fn initiate<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    identity: &Identity,
    timeout: Duration,
) -> Result<Established, HandshakeError> {
    tokio::time::timeout(timeout, initiate_inner(stream, identity))
        .await
        .map_err(|_| HandshakeError::Timeout)?
}

async fn initiate_inner<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    identity: &Identity,
) -> Result<Established, HandshakeError> {
    let b = builder()?;
    let keypair = b.generate_keypair()?;
    let mut hs = b.local_private_key(&keypair.private)?.build_initiator()?;
    let mut buf = vec![0u8; MAX_NOISE_MESSAGE_LEN];
    let n = hs.write_message(&[], &mut buf)?;
    write_msg(stream, buf.get(..n).unwrap_or_default()).await?;

    let msg2 = read_msg(stream).await?;
    let h2 = hs.get_handshake_hash().to_vec();
    let n = hs.read_message(&msg2, &mut buf)?;
    let theirs = HandshakePayload::decode(buf.get(..n).unwrap_or_default())?;
    let peer = theirs.verify(ROLE_RESPONDER, &h2)?;

    let h3 = hs.get_handshake_hash().to_vec();
    let ours = HandshakePayload::sign(identity, ROLE_INITIATOR, &h3).encode();
    let n = hs.write_message(&ours, &mut buf)?;
    write_msg(stream, buf.get(..n).unwrap_or_default()).await?;
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
    identity: &Identity,
    timeout: Duration,
) -> Result<Established, HandshakeError> {
    tokio::time::timeout(timeout, respond_inner(stream, identity))
        .await
        .map_err(|_| HandshakeError::Timeout)?
}

async fn respond_inner<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    identity: &Identity,
) -> Result<Established, HandshakeError> {
    let b = builder()?;
    let keypair = b.generate_keypair()?;
    let mut hs = b.local_private_key(&keypair.private)?.build_responder()?;
    let mut buf = vec![0u8; MAX_NOISE_MESSAGE_LEN];
    let msg1 = read_msg(stream).await?;
    let n = hs.read_message(&msg1, &mut buf)?;
    if n != 0 {
        return Err(PayloadError::WrongLength(n).into());
    }
    let h2 = hs.get_handshake_hash().to_vec();
    let ours = HandshakePayload::sign(identity, ROLE_RESPONDER, &h2).encode();
    let n = hs.write_message(&ours, &mut buf)?;
    write_msg(stream, buf.get(..n).unwrap_or_default()).await?;

    let msg3 = read_msg(stream).await?;
    let h3 = hs.get_handshake_hash().to_vec();
    let n = hs.read_message(&msg3, &mut buf)?;
    let theirs = HandshakePayload::decode(buf.get(..n).unwrap_or_default())?;
    let peer = theirs.verify(ROLE_INITIATOR, &h3)?;
    Ok(Established {
        peer,
        transport: transport_keys(&mut hs, false)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips_and_is_strict() {
        let id = Identity::from_seed([3; 32]);
        let p = HandshakePayload::sign(&id, ROLE_INITIATOR, &[9; 32]);
        let bytes = p.encode();
        assert_eq!(HandshakePayload::decode(&bytes).unwrap(), p);
        assert_eq!(
            p.verify(ROLE_INITIATOR, &[9; 32]).unwrap().node_id,
            id.node_id()
        );
        assert!(matches!(
            p.verify(ROLE_RESPONDER, &[9; 32]),
            Err(HandshakeError::BadSignature)
        ));
        assert!(matches!(
            p.verify(ROLE_INITIATOR, &[8; 32]),
            Err(HandshakeError::BadSignature)
        ));
        assert_eq!(
            HandshakePayload::decode(&bytes[..96]),
            Err(PayloadError::WrongLength(96))
        );
        let mut v2 = bytes;
        v2[0] = 2;
        assert_eq!(
            HandshakePayload::decode(&v2),
            Err(PayloadError::UnsupportedVersion(2))
        );
    }

    #[tokio::test]
    async fn both_sides_learn_each_others_identity() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let ia = Identity::from_seed([1; 32]);
        let ib = Identity::from_seed([2; 32]);
        let t = Duration::from_secs(10);
        let (ra, rb) = tokio::join!(initiate(&mut a, &ia, t), respond(&mut b, &ib, t));
        assert_eq!(ra.unwrap().peer.node_id, ib.node_id());
        assert_eq!(rb.unwrap().peer.node_id, ia.node_id());
    }
}
