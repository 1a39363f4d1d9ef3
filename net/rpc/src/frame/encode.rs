//! Encoding: [`Frame::encode`], and the helpers that build data frames in place.
#![deny(clippy::arithmetic_side_effects)]

use super::{
    CALL_HEADER_FIXED_LEN, CallHeader, FRAME_CHARGE_OVERHEAD, FRAME_VERSION, Frame, FrameError,
    HEADER_LEN, MAX_ERROR_MESSAGE_LEN, MAX_FRAME_LEN, MAX_METADATA_LEN, MAX_METHOD_LEN,
    MAX_PAYLOAD_LEN, MESSAGE_LEN_PREFIX, dispatch,
};

impl<'a> Frame<'a> {
    /// Appends the encoding of this frame to `out`. Fails (writing nothing) when a field
    /// exceeds its documented maximum, so the encoder never produces what the decoder rejects.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), FrameError> {
        self.validate()?;
        out.push(FRAME_VERSION);
        out.push(self.dispatch());
        out.extend_from_slice(&self.call_id().to_le_bytes());
        match *self {
            Frame::Request {
                header, payload, ..
            } => {
                encode_call_header(&header, out);
                out.extend_from_slice(payload);
            }
            Frame::RequestInit { header, .. } => encode_call_header(&header, out),
            Frame::RequestChunk { seq, messages, .. }
            | Frame::ResponseChunk { seq, messages, .. } => {
                out.extend_from_slice(&seq.to_le_bytes());
                out.extend_from_slice(messages.bytes());
            }
            Frame::Response { payload, .. } => out.extend_from_slice(payload),
            Frame::RequestEnd { .. } | Frame::ResponseEnd { .. } => {}
            Frame::RequestCancel { reason, .. } => {
                out.extend_from_slice(&reason.code().to_le_bytes())
            }
            Frame::RequestWindowGrant { credits, .. }
            | Frame::ResponseWindowGrant { credits, .. } => {
                out.extend_from_slice(&credits.to_le_bytes());
            }
            Frame::ResponseError { kind, message, .. } => {
                out.extend_from_slice(&kind.code().to_le_bytes());
                // validate() bounded the length to MAX_ERROR_MESSAGE_LEN (< u16::MAX).
                let len = u16::try_from(message.len()).unwrap_or(u16::MAX);
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(message.as_bytes());
            }
        }
        Ok(())
    }

    /// Encodes into a fresh vector.
    pub fn to_vec(&self) -> Result<Vec<u8>, FrameError> {
        let mut out = Vec::with_capacity(self.encoded_len_hint());
        self.encode(&mut out)?;
        Ok(out)
    }

    fn encoded_len_hint(&self) -> usize {
        let body = match self {
            Frame::Request {
                header, payload, ..
            } => CALL_HEADER_FIXED_LEN
                .saturating_add(header.method.len())
                .saturating_add(header.metadata.len())
                .saturating_add(payload.len()),
            Frame::RequestInit { header, .. } => CALL_HEADER_FIXED_LEN
                .saturating_add(header.method.len())
                .saturating_add(header.metadata.len()),
            Frame::RequestChunk { messages, .. } | Frame::ResponseChunk { messages, .. } => {
                messages.bytes().len().saturating_add(8)
            }
            Frame::Response { payload, .. } => payload.len(),
            Frame::ResponseError { message, .. } => message.len().saturating_add(4),
            _ => 4,
        };
        body.saturating_add(HEADER_LEN)
    }

    fn validate(&self) -> Result<(), FrameError> {
        match self {
            Frame::Request {
                header, payload, ..
            } => {
                validate_header(header, false)?;
                validate_payload(payload)
            }
            Frame::RequestInit { header, .. } => validate_header(header, true),
            // A `Messages` is well-formed by construction; the frame must still fit.
            Frame::RequestChunk { messages, .. } | Frame::ResponseChunk { messages, .. } => {
                let len = (HEADER_LEN + 8).saturating_add(messages.bytes().len());
                if len > MAX_FRAME_LEN {
                    Err(FrameError::TooLong { len })
                } else {
                    Ok(())
                }
            }
            Frame::Response { payload, .. } => validate_payload(payload),
            Frame::RequestWindowGrant { credits, .. }
            | Frame::ResponseWindowGrant { credits, .. } => {
                if *credits == 0 {
                    Err(FrameError::ZeroCredit)
                } else {
                    Ok(())
                }
            }
            Frame::ResponseError { message, .. } => {
                if message.len() > MAX_ERROR_MESSAGE_LEN {
                    Err(FrameError::BadErrorMessage("too long"))
                } else {
                    Ok(())
                }
            }
            Frame::RequestEnd { .. } | Frame::RequestCancel { .. } | Frame::ResponseEnd { .. } => {
                Ok(())
            }
        }
    }
}

/// Starts a REQUEST_CHUNK or RESPONSE_CHUNK of one message in `out` (header, seq and a
/// placeholder for the message's length); the caller appends the message directly (saving a
/// copy) and must then call [`finish_chunk`], which fills in the length.
pub fn begin_chunk(out: &mut Vec<u8>, request: bool, call_id: u64, seq: u64) {
    out.extend_from_slice(&chunk_head(request, call_id, seq, 0));
}

/// Length of the part of a one-message chunk frame before its message: header, seq and the
/// message's length.
pub const CHUNK_PAYLOAD_OFFSET: usize = HEADER_LEN + 8 + MESSAGE_LEN_PREFIX;

/// What a message appended to a chunk frame already queued saves against the charge of a
/// chunk frame of its own: the header, seq and [`FRAME_CHARGE_OVERHEAD`], less its length
/// prefix. A sender reserves a message's window as a frame of its own and gives this back when
/// the message was appended.
pub const APPENDED_MESSAGE_SAVING: usize =
    CHUNK_PAYLOAD_OFFSET - MESSAGE_LEN_PREFIX + FRAME_CHARGE_OVERHEAD;

/// The first bytes of a one-message chunk frame whose message is `message_len` bytes long.
pub fn chunk_head(
    request: bool,
    call_id: u64,
    seq: u64,
    message_len: u32,
) -> [u8; CHUNK_PAYLOAD_OFFSET] {
    let mut out = [0u8; CHUNK_PAYLOAD_OFFSET];
    let dispatch = if request {
        dispatch::REQUEST_CHUNK
    } else {
        dispatch::RESPONSE_CHUNK
    };
    let parts: [&[u8]; 5] = [
        &[FRAME_VERSION],
        &[dispatch],
        &call_id.to_le_bytes(),
        &seq.to_le_bytes(),
        &message_len.to_le_bytes(),
    ];
    let mut rest: &mut [u8] = &mut out;
    for part in parts {
        let (head, tail) = rest.split_at_mut(part.len().min(rest.len()));
        head.copy_from_slice(part.get(..head.len()).unwrap_or_default());
        rest = tail;
    }
    out
}

/// Checks the message of a frame built with [`begin_chunk`] against the payload limit and
/// writes its length.
pub fn finish_chunk(frame: &mut [u8]) -> Result<(), FrameError> {
    let len = frame.len().saturating_sub(CHUNK_PAYLOAD_OFFSET);
    if len > MAX_PAYLOAD_LEN {
        return Err(FrameError::PayloadTooLong { len });
    }
    let slot = CHUNK_PAYLOAD_OFFSET.saturating_sub(MESSAGE_LEN_PREFIX)..CHUNK_PAYLOAD_OFFSET;
    let dst = frame.get_mut(slot).ok_or(FrameError::TooShort { len })?;
    dst.copy_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
    Ok(())
}

/// Starts a REQUEST frame in `out` (frame header and call header) and returns the payload's
/// offset; the caller appends the payload and checks it with [`finish_payload`].
pub fn begin_request(
    out: &mut Vec<u8>,
    call_id: u64,
    header: &CallHeader<'_>,
) -> Result<usize, FrameError> {
    validate_header(header, false)?;
    out.push(FRAME_VERSION);
    out.push(dispatch::REQUEST);
    out.extend_from_slice(&call_id.to_le_bytes());
    encode_call_header(header, out);
    Ok(out.len())
}

/// Starts a RESPONSE frame in `out` and returns the payload's offset (see [`begin_request`]).
pub fn begin_response(out: &mut Vec<u8>, call_id: u64) -> usize {
    out.push(FRAME_VERSION);
    out.push(dispatch::RESPONSE);
    out.extend_from_slice(&call_id.to_le_bytes());
    out.len()
}

/// Checks the payload (everything from `payload_offset`) of a frame built with
/// [`begin_request`] or [`begin_response`] against the payload limit.
pub fn finish_payload(frame: &[u8], payload_offset: usize) -> Result<(), FrameError> {
    validate_payload(frame.get(payload_offset..).unwrap_or_default())
}

fn validate_payload(payload: &[u8]) -> Result<(), FrameError> {
    if payload.len() > MAX_PAYLOAD_LEN {
        Err(FrameError::PayloadTooLong { len: payload.len() })
    } else {
        Ok(())
    }
}

fn validate_header(header: &CallHeader<'_>, streaming_init: bool) -> Result<(), FrameError> {
    if header.kind.streams_requests() != streaming_init {
        let dispatch = if streaming_init {
            dispatch::REQUEST_INIT
        } else {
            dispatch::REQUEST
        };
        return Err(FrameError::BadCallKind {
            dispatch,
            kind: header.kind as u8,
        });
    }
    if header.method.is_empty() {
        return Err(FrameError::BadMethod("empty"));
    }
    if header.method.len() > MAX_METHOD_LEN {
        return Err(FrameError::BadMethod("longer than 255 bytes"));
    }
    if header.metadata.len() > MAX_METADATA_LEN {
        return Err(FrameError::MetadataTooLong {
            len: header.metadata.len(),
        });
    }
    Ok(())
}

fn encode_call_header(header: &CallHeader<'_>, out: &mut Vec<u8>) {
    out.push(header.kind as u8);
    out.extend_from_slice(&header.timeout_us.to_le_bytes());
    out.extend_from_slice(&header.trace.trace_id);
    out.extend_from_slice(&header.trace.span_id);
    out.extend_from_slice(&header.response_window.to_le_bytes());
    // validate_header bounded the method to MAX_METHOD_LEN (= u8::MAX) and the metadata to
    // MAX_METADATA_LEN (< u16::MAX).
    out.push(u8::try_from(header.method.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(
        &u16::try_from(header.metadata.len())
            .unwrap_or(u16::MAX)
            .to_le_bytes(),
    );
    out.extend_from_slice(header.method.as_bytes());
    out.extend_from_slice(header.metadata);
}
