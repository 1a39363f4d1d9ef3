//! Decoding: a bounded cursor over a frame's bytes and [`Frame::decode`].
#![deny(clippy::arithmetic_side_effects)]

use super::{
    CALL_ID_LEN, CallHeader, CallKind, ErrorKind, FRAME_VERSION, Frame, FrameError, HEADER_LEN,
    MAX_ERROR_MESSAGE_LEN, MAX_FRAME_LEN, MAX_METADATA_LEN, MAX_PAYLOAD_LEN, Messages, OFF_CALL_ID,
    TraceContext, dispatch,
};

/// Bounded cursor: every read checks the remaining length, nothing indexes.
struct Cursor<'a> {
    rest: &'a [u8],
    dispatch: u8,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], FrameError> {
        let (head, tail) = self.rest.split_at_checked(n).ok_or(FrameError::Truncated {
            dispatch: self.dispatch,
            field,
        })?;
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], FrameError> {
        let bytes = self.take(N, field)?;
        <[u8; N]>::try_from(bytes).map_err(|_| FrameError::Truncated {
            dispatch: self.dispatch,
            field,
        })
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, FrameError> {
        Ok(u8::from_le_bytes(self.array::<1>(field)?))
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, FrameError> {
        Ok(u16::from_le_bytes(self.array::<2>(field)?))
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, FrameError> {
        Ok(u32::from_le_bytes(self.array::<4>(field)?))
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, FrameError> {
        Ok(u64::from_le_bytes(self.array::<8>(field)?))
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }

    fn finish(&self) -> Result<(), FrameError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(FrameError::TrailingBytes {
                dispatch: self.dispatch,
                extra: self.rest.len(),
            })
        }
    }

    fn payload(&mut self) -> Result<&'a [u8], FrameError> {
        let payload = self.rest();
        if payload.len() > MAX_PAYLOAD_LEN {
            return Err(FrameError::PayloadTooLong { len: payload.len() });
        }
        Ok(payload)
    }

    fn messages(&mut self) -> Result<Messages<'a>, FrameError> {
        let dispatch = self.dispatch;
        Messages::parse(self.rest()).map_err(|e| match e {
            FrameError::Truncated { field, .. } => FrameError::Truncated { dispatch, field },
            other => other,
        })
    }

    fn call_header(&mut self, streaming_init: bool) -> Result<CallHeader<'a>, FrameError> {
        let kind_byte = self.u8("kind")?;
        let kind = CallKind::from_u8(kind_byte)
            .filter(|kind| kind.streams_requests() == streaming_init)
            .ok_or(FrameError::BadCallKind {
                dispatch: self.dispatch,
                kind: kind_byte,
            })?;
        let timeout_us = self.u64("timeout_us")?;
        let trace_id = self.array::<16>("trace_id")?;
        let span_id = self.array::<8>("span_id")?;
        let response_window = self.u32("response_window")?;
        let method_len = usize::from(self.u8("method_len")?);
        let metadata_len = usize::from(self.u16("metadata_len")?);
        if method_len == 0 {
            return Err(FrameError::BadMethod("empty"));
        }
        if metadata_len > MAX_METADATA_LEN {
            return Err(FrameError::MetadataTooLong { len: metadata_len });
        }
        let method = std::str::from_utf8(self.take(method_len, "method")?)
            .map_err(|_| FrameError::BadMethod("not UTF-8"))?;
        let metadata = self.take(metadata_len, "metadata")?;
        Ok(CallHeader {
            kind,
            timeout_us,
            trace: TraceContext { trace_id, span_id },
            response_window,
            method,
            metadata,
        })
    }
}

/// Reads the call id of a frame whose header is at least present (used to address error
/// replies to frames that failed to decode further).
pub fn peek_call_id(bytes: &[u8]) -> Option<u64> {
    let raw = bytes.get(OFF_CALL_ID..OFF_CALL_ID.checked_add(CALL_ID_LEN)?)?;
    Some(u64::from_le_bytes(<[u8; 8]>::try_from(raw).ok()?))
}

impl<'a> Frame<'a> {
    /// Decodes exactly one frame from `bytes` (no length prefix; the transport supplies it).
    pub fn decode(bytes: &'a [u8]) -> Result<Self, FrameError> {
        if bytes.len() > MAX_FRAME_LEN {
            return Err(FrameError::TooLong { len: bytes.len() });
        }
        if bytes.len() < HEADER_LEN {
            return Err(FrameError::TooShort { len: bytes.len() });
        }
        let mut cur = Cursor {
            rest: bytes,
            dispatch: 0,
        };
        let version = cur.u8("version")?;
        if version != FRAME_VERSION {
            return Err(FrameError::UnsupportedVersion(version));
        }
        let dispatch_byte = cur.u8("dispatch")?;
        cur.dispatch = dispatch_byte;
        let call_id = cur.u64("call_id")?;
        let frame = match dispatch_byte {
            dispatch::REQUEST => {
                let header = cur.call_header(false)?;
                let payload = cur.payload()?;
                Frame::Request {
                    call_id,
                    header,
                    payload,
                }
            }
            dispatch::REQUEST_INIT => {
                let header = cur.call_header(true)?;
                Frame::RequestInit { call_id, header }
            }
            dispatch::REQUEST_CHUNK => {
                let seq = cur.u64("seq")?;
                let messages = cur.messages()?;
                Frame::RequestChunk {
                    call_id,
                    seq,
                    messages,
                }
            }
            dispatch::REQUEST_END => Frame::RequestEnd { call_id },
            dispatch::REQUEST_CANCEL => {
                let reason = ErrorKind::from_code(cur.u16("reason")?);
                Frame::RequestCancel { call_id, reason }
            }
            dispatch::REQUEST_WINDOW_GRANT => {
                let credits = cur.u32("credits")?;
                if credits == 0 {
                    return Err(FrameError::ZeroCredit);
                }
                Frame::RequestWindowGrant { call_id, credits }
            }
            dispatch::RESPONSE => {
                let payload = cur.payload()?;
                Frame::Response { call_id, payload }
            }
            dispatch::RESPONSE_CHUNK => {
                let seq = cur.u64("seq")?;
                let messages = cur.messages()?;
                Frame::ResponseChunk {
                    call_id,
                    seq,
                    messages,
                }
            }
            dispatch::RESPONSE_END => Frame::ResponseEnd { call_id },
            dispatch::RESPONSE_ERROR => {
                let kind = ErrorKind::from_code(cur.u16("kind")?);
                let len = usize::from(cur.u16("message_len")?);
                if len > MAX_ERROR_MESSAGE_LEN {
                    return Err(FrameError::BadErrorMessage("too long"));
                }
                let message = std::str::from_utf8(cur.take(len, "message")?)
                    .map_err(|_| FrameError::BadErrorMessage("not UTF-8"))?;
                Frame::ResponseError {
                    call_id,
                    kind,
                    message,
                }
            }
            dispatch::RESPONSE_WINDOW_GRANT => {
                let credits = cur.u32("credits")?;
                if credits == 0 {
                    return Err(FrameError::ZeroCredit);
                }
                Frame::ResponseWindowGrant { call_id, credits }
            }
            other => {
                return Err(FrameError::UnknownDispatch {
                    dispatch: other,
                    call_id,
                });
            }
        };
        cur.finish()?;
        Ok(frame)
    }

    /// The call this frame belongs to.
    pub fn call_id(&self) -> u64 {
        match *self {
            Frame::Request { call_id, .. }
            | Frame::RequestInit { call_id, .. }
            | Frame::RequestChunk { call_id, .. }
            | Frame::RequestEnd { call_id }
            | Frame::RequestCancel { call_id, .. }
            | Frame::RequestWindowGrant { call_id, .. }
            | Frame::Response { call_id, .. }
            | Frame::ResponseChunk { call_id, .. }
            | Frame::ResponseEnd { call_id }
            | Frame::ResponseError { call_id, .. }
            | Frame::ResponseWindowGrant { call_id, .. } => call_id,
        }
    }

    /// The dispatch byte of this frame.
    pub fn dispatch(&self) -> u8 {
        match self {
            Frame::Request { .. } => dispatch::REQUEST,
            Frame::RequestInit { .. } => dispatch::REQUEST_INIT,
            Frame::RequestChunk { .. } => dispatch::REQUEST_CHUNK,
            Frame::RequestEnd { .. } => dispatch::REQUEST_END,
            Frame::RequestCancel { .. } => dispatch::REQUEST_CANCEL,
            Frame::RequestWindowGrant { .. } => dispatch::REQUEST_WINDOW_GRANT,
            Frame::Response { .. } => dispatch::RESPONSE,
            Frame::ResponseChunk { .. } => dispatch::RESPONSE_CHUNK,
            Frame::ResponseEnd { .. } => dispatch::RESPONSE_END,
            Frame::ResponseError { .. } => dispatch::RESPONSE_ERROR,
            Frame::ResponseWindowGrant { .. } => dispatch::RESPONSE_WINDOW_GRANT,
        }
    }
}
