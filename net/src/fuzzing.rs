//! Entry points for the fuzz targets in `net/fuzz/` (thin harnesses call these). Each takes
//! arbitrary bytes and must never panic.

use crate::frame::Frame;
use crate::handshake::HandshakePayload;

/// Decodes `data` as an nRPC frame; a successful decode must re-encode to the same bytes.
pub fn frame_decoder(data: &[u8]) {
    if let Ok(frame) = Frame::decode(data) {
        let reencoded = frame.to_vec();
        assert_eq!(reencoded.as_deref(), Ok(data), "frame did not round-trip");
    }
}

/// Decodes `data` as a handshake payload; a successful decode must re-encode to the same bytes
/// and signature verification must not panic.
pub fn handshake_payload_decoder(data: &[u8]) {
    if let Ok(payload) = HandshakePayload::decode(data) {
        assert_eq!(
            payload.encode().as_slice(),
            data,
            "payload did not round-trip"
        );
        let _ = payload.verify(crate::handshake::ROLE_INITIATOR, &[0u8; 32], &[0u8; 32]);
    }
}
