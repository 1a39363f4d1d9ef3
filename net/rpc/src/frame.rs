//! Pure codec for nRPC frames (no I/O). The byte layout is documented in `docs/FORMAT.md`
//! section 5.4; `tests/format_doc.rs` checks that the constants here agree with that table.
//!
//! Every frame starts with the same 10-byte header:
//!
//! | offset | size | field                          |
//! |--------|------|--------------------------------|
//! | 0      | 1    | frame version (`FRAME_VERSION`) |
//! | 1      | 1    | dispatch value                 |
//! | 2      | 8    | call_id, u64 little-endian     |
//!
//! followed by a dispatch-specific body. The decoder is strict: every length is checked against
//! a named maximum before use, trailing bytes are an error, and unknown values are reported
//! precisely. All integers are little-endian.
#![deny(clippy::arithmetic_side_effects)]

use std::fmt;

/// Version byte carried in every frame.
pub const FRAME_VERSION: u8 = 3;
/// Offset of the version byte.
pub const OFF_VERSION: usize = 0;
/// Offset of the dispatch byte.
pub const OFF_DISPATCH: usize = 1;
/// Offset of the little-endian u64 call id.
pub const OFF_CALL_ID: usize = 2;
/// Size of the call id field.
pub const CALL_ID_LEN: usize = 8;
/// Length of the common frame header.
pub const HEADER_LEN: usize = 10;
/// Largest encoded frame (header + body) accepted or produced: 16 MiB + 4 KiB of headroom
/// for the call header.
pub const MAX_FRAME_LEN: usize = 16 * 1024 * 1024 + 4096;
/// Largest payload (the postcard-encoded message) a frame can carry.
pub const MAX_PAYLOAD_LEN: usize = 16 * 1024 * 1024;
/// Longest method name, in bytes (the length field is one byte).
pub const MAX_METHOD_LEN: usize = 255;
/// Longest RESPONSE_ERROR message, in bytes.
pub const MAX_ERROR_MESSAGE_LEN: usize = 4096;
/// Longest call metadata (opaque bytes the caller attaches, e.g. a storage node's channel name
/// and a chain of six 169-byte permission tokens).
pub const MAX_METADATA_LEN: usize = 1280;
/// Size of the call header that REQUEST and REQUEST_INIT carry, without the method and metadata
/// bytes: kind (1) + timeout_us (8) + trace_id (16) + span_id (8) + response_window (4) +
/// method_len (1) + metadata_len (2).
pub const CALL_HEADER_FIXED_LEN: usize = 40;
/// Largest frame that is not a data frame (REQUEST, RESPONSE, REQUEST_CHUNK, RESPONSE_CHUNK):
/// a REQUEST_INIT with the longest method and metadata, or a RESPONSE_ERROR with the longest
/// message. A longer frame of any other dispatch ends the session before it is buffered.
pub const MAX_CONTROL_FRAME_LEN: usize = {
    let init = HEADER_LEN + CALL_HEADER_FIXED_LEN + MAX_METHOD_LEN + MAX_METADATA_LEN;
    let error = HEADER_LEN + 4 + MAX_ERROR_MESSAGE_LEN;
    if init > error { init } else { error }
};
/// Bytes charged per received data frame on top of its length, for the bookkeeping that comes
/// with a queued message; window grants and budgets count `frame length + FRAME_CHARGE_OVERHEAD`.
pub const FRAME_CHARGE_OVERHEAD: usize = 64;

/// What one data frame of `frame_len` bytes costs against windows and budgets.
pub const fn charge(frame_len: usize) -> usize {
    frame_len.saturating_add(FRAME_CHARGE_OVERHEAD)
}

/// True for the dispatch values whose frames carry a payload (the only frames that may be longer
/// than [`MAX_CONTROL_FRAME_LEN`]).
pub const fn is_data_dispatch(value: u8) -> bool {
    matches!(
        value,
        dispatch::REQUEST | dispatch::RESPONSE | dispatch::REQUEST_CHUNK | dispatch::RESPONSE_CHUNK
    )
}

/// Dispatch values (byte 1 of every frame).
pub mod dispatch {
    /// Unary or server-streaming request: call header + one payload.
    pub const REQUEST: u8 = 0x01;
    /// Unary or client-streaming response: one payload.
    pub const RESPONSE: u8 = 0x02;
    /// Messages of a streamed response: seq of the first + a message list ([`super::Messages`]).
    pub const RESPONSE_CHUNK: u8 = 0x03;
    /// End of a streamed response.
    pub const RESPONSE_END: u8 = 0x04;
    /// Terminal error for a call: kind + message.
    pub const RESPONSE_ERROR: u8 = 0x05;
    /// Caller → server: return window bytes for RESPONSE_CHUNK frames.
    pub const RESPONSE_WINDOW_GRANT: u8 = 0x06;
    /// Opens a client-streaming or duplex call: call header, no payload.
    pub const REQUEST_INIT: u8 = 0x10;
    /// Messages of a streamed request: seq of the first + a message list ([`super::Messages`]).
    pub const REQUEST_CHUNK: u8 = 0x11;
    /// End of a streamed request.
    pub const REQUEST_END: u8 = 0x12;
    /// Caller → server: abandon the call.
    pub const REQUEST_CANCEL: u8 = 0x13;
    /// Server → caller: grant (first) or return (later) window bytes for REQUEST_CHUNK frames.
    pub const REQUEST_WINDOW_GRANT: u8 = 0x14;
}

/// The four call kinds, as carried in the call header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallKind {
    /// One request, one response.
    Unary = 1,
    /// One request, a stream of responses.
    ServerStreaming = 2,
    /// A stream of requests, one response.
    ClientStreaming = 3,
    /// A stream of requests, a stream of responses.
    Duplex = 4,
}

impl CallKind {
    fn from_u8(value: u8) -> Option<Self> {
        match value {
            1 => Some(Self::Unary),
            2 => Some(Self::ServerStreaming),
            3 => Some(Self::ClientStreaming),
            4 => Some(Self::Duplex),
            _ => None,
        }
    }

    /// True for kinds opened with REQUEST_INIT (the request side is a stream).
    pub fn streams_requests(self) -> bool {
        matches!(self, Self::ClientStreaming | Self::Duplex)
    }

    /// True for kinds answered with RESPONSE_CHUNK / RESPONSE_END.
    pub fn streams_responses(self) -> bool {
        matches!(self, Self::ServerStreaming | Self::Duplex)
    }
}

/// Structured error kind carried by RESPONSE_ERROR (u16 on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request was malformed for the method (application-level).
    InvalidArgument,
    /// The requested thing does not exist.
    NotFound,
    /// The authenticated peer may not do this.
    PermissionDenied,
    /// A limit was exceeded.
    ResourceExhausted,
    /// The handler failed for an internal reason.
    Internal,
    /// The service is not available right now.
    Unavailable,
    /// Stored or received data is damaged or missing (a hash or chain mismatch, a lost object).
    DataLoss,
    /// The request was refused by a rule of the service without changing anything (a conflict,
    /// something already in use).
    FailedPrecondition,
    /// The handler panicked; the server kept serving.
    HandlerPanic,
    /// The call was cancelled by either side.
    Cancelled,
    /// The call's deadline passed.
    DeadlineExceeded,
    /// No handler is registered for the method (or not for this call kind).
    UnknownMethod,
    /// The frame's dispatch value is not one this version knows.
    UnknownDispatch,
    /// The peer broke the nRPC protocol for this call (seq gap, duplicate REQUEST_INIT, ...).
    ProtocolViolation,
    /// A payload could not be decoded into the expected message type.
    Decode,
    /// The session carrying the call was lost. Never sent on the wire; produced locally.
    Disconnected,
    /// A kind code this version does not know (kept so decoding stays total).
    Other(u16),
}

impl ErrorKind {
    /// Wire code of this kind.
    pub fn code(self) -> u16 {
        match self {
            Self::InvalidArgument => 1,
            Self::NotFound => 2,
            Self::PermissionDenied => 3,
            Self::ResourceExhausted => 4,
            Self::Internal => 5,
            Self::Unavailable => 6,
            Self::DataLoss => 7,
            Self::FailedPrecondition => 8,
            Self::HandlerPanic => 16,
            Self::Cancelled => 17,
            Self::DeadlineExceeded => 18,
            Self::UnknownMethod => 19,
            Self::UnknownDispatch => 20,
            Self::ProtocolViolation => 21,
            Self::Decode => 22,
            Self::Disconnected => 23,
            Self::Other(code) => code,
        }
    }

    /// Kind for a wire code; unknown codes map to [`ErrorKind::Other`].
    pub fn from_code(code: u16) -> Self {
        match code {
            1 => Self::InvalidArgument,
            2 => Self::NotFound,
            3 => Self::PermissionDenied,
            4 => Self::ResourceExhausted,
            5 => Self::Internal,
            6 => Self::Unavailable,
            7 => Self::DataLoss,
            8 => Self::FailedPrecondition,
            16 => Self::HandlerPanic,
            17 => Self::Cancelled,
            18 => Self::DeadlineExceeded,
            19 => Self::UnknownMethod,
            20 => Self::UnknownDispatch,
            21 => Self::ProtocolViolation,
            22 => Self::Decode,
            23 => Self::Disconnected,
            other => Self::Other(other),
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Other(code) => write!(f, "Other({code})"),
            kind => fmt::Debug::fmt(kind, f),
        }
    }
}

/// W3C-style trace context: all-zero means "none".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TraceContext {
    /// 16-byte trace id.
    pub trace_id: [u8; 16],
    /// 8-byte parent span id.
    pub span_id: [u8; 8],
}

impl TraceContext {
    /// True when no trace context was supplied.
    pub fn is_empty(&self) -> bool {
        self.trace_id == [0; 16] && self.span_id == [0; 8]
    }
}

/// The call header carried by REQUEST and REQUEST_INIT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallHeader<'a> {
    /// What kind of call this opens.
    pub kind: CallKind,
    /// Relative deadline in microseconds from receipt; 0 means none.
    pub timeout_us: u64,
    /// Trace context of the caller.
    pub trace: TraceContext,
    /// The caller's receive window for RESPONSE_CHUNK frames, in charged bytes (0 for kinds
    /// with one response).
    pub response_window: u32,
    /// Method name, 1..=255 bytes of UTF-8.
    pub method: &'a str,
    /// Opaque call metadata (e.g. a permission token), at most [`MAX_METADATA_LEN`] bytes;
    /// empty when none.
    pub metadata: &'a [u8],
}

/// One decoded nRPC frame, borrowing its payload from the input buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// Unary or server-streaming request.
    Request {
        call_id: u64,
        header: CallHeader<'a>,
        payload: &'a [u8],
    },
    /// Opens a client-streaming or duplex call.
    RequestInit {
        call_id: u64,
        header: CallHeader<'a>,
    },
    /// Streamed request messages, the first with sequence number `seq`.
    RequestChunk {
        call_id: u64,
        seq: u64,
        messages: Messages<'a>,
    },
    /// End of the request stream.
    RequestEnd { call_id: u64 },
    /// The caller abandons the call; `reason` is `Cancelled` or `DeadlineExceeded`.
    RequestCancel { call_id: u64, reason: ErrorKind },
    /// Server grants (first) or returns request window bytes.
    RequestWindowGrant { call_id: u64, credits: u32 },
    /// Single response.
    Response { call_id: u64, payload: &'a [u8] },
    /// Streamed response messages, the first with sequence number `seq`.
    ResponseChunk {
        call_id: u64,
        seq: u64,
        messages: Messages<'a>,
    },
    /// End of the response stream.
    ResponseEnd { call_id: u64 },
    /// Terminal error.
    ResponseError {
        call_id: u64,
        kind: ErrorKind,
        message: &'a str,
    },
    /// Caller returns response window bytes.
    ResponseWindowGrant { call_id: u64, credits: u32 },
}

/// Why a frame could not be decoded or encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Fewer bytes than the common header.
    #[error("frame of {len} bytes is shorter than the {HEADER_LEN}-byte header")]
    TooShort { len: usize },
    /// More bytes than [`MAX_FRAME_LEN`].
    #[error("frame of {len} bytes exceeds the maximum of {MAX_FRAME_LEN}")]
    TooLong { len: usize },
    /// The version byte is not [`FRAME_VERSION`].
    #[error("unsupported frame version {0}")]
    UnsupportedVersion(u8),
    /// The dispatch byte is unknown; the call id is reported so a typed reply can be sent.
    #[error("unknown dispatch value {dispatch:#04x} for call {call_id:#018x}")]
    UnknownDispatch { dispatch: u8, call_id: u64 },
    /// A field ran past the end of the frame.
    #[error("frame dispatch {dispatch:#04x} truncated in field {field}")]
    Truncated { dispatch: u8, field: &'static str },
    /// Bytes after the last field.
    #[error("frame dispatch {dispatch:#04x} has {extra} trailing bytes")]
    TrailingBytes { dispatch: u8, extra: usize },
    /// The call kind byte is unknown or not allowed for this dispatch.
    #[error("call kind {kind} not valid for dispatch {dispatch:#04x}")]
    BadCallKind { dispatch: u8, kind: u8 },
    /// Method name empty, too long or not UTF-8.
    #[error("invalid method name: {0}")]
    BadMethod(&'static str),
    /// Call metadata longer than [`MAX_METADATA_LEN`].
    #[error("call metadata of {len} bytes exceeds the maximum of {MAX_METADATA_LEN}")]
    MetadataTooLong { len: usize },
    /// RESPONSE_ERROR message too long or not UTF-8.
    #[error("invalid error message: {0}")]
    BadErrorMessage(&'static str),
    /// A WINDOW_GRANT of zero credits.
    #[error("window grant of zero credits")]
    ZeroCredit,
    /// The payload exceeds [`MAX_PAYLOAD_LEN`].
    #[error("payload of {len} bytes exceeds the maximum of {MAX_PAYLOAD_LEN}")]
    PayloadTooLong { len: usize },
    /// A chunk frame that carries no message.
    #[error("chunk frame without a message")]
    EmptyChunk,
}

/// Size of the length that precedes each message of a chunk frame (u32 LE).
pub const MESSAGE_LEN_PREFIX: usize = 4;

/// The messages of a REQUEST_CHUNK or RESPONSE_CHUNK: one or more, each `u32 LE length ||
/// message` (at most [`MAX_PAYLOAD_LEN`]), filling the rest of the frame exactly. Built only by
/// [`Messages::parse`], so a value always holds a well-formed list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Messages<'a> {
    bytes: &'a [u8],
    count: u32,
}

impl<'a> Messages<'a> {
    /// Checks a message list (see the type docs).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, FrameError> {
        let mut rest = bytes;
        let mut count = 0u32;
        while !rest.is_empty() {
            let (_, tail) = split_message(rest).ok_or(FrameError::Truncated {
                dispatch: 0,
                field: "message",
            })?;
            rest = tail;
            count = count.saturating_add(1);
        }
        if count == 0 {
            return Err(FrameError::EmptyChunk);
        }
        Ok(Messages { bytes, count })
    }

    /// The encoded list.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// How many messages the list holds (at least one).
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The messages, in order.
    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + use<'a> {
        let mut rest = self.bytes;
        std::iter::from_fn(move || {
            let (message, tail) = split_message(rest)?;
            rest = tail;
            Some(message)
        })
    }
}

/// Splits the first message off a message list: `(message, rest)`; `None` when the list is
/// empty or its first length is too large or runs past the end.
pub fn split_message(list: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = list.split_first_chunk::<MESSAGE_LEN_PREFIX>()?;
    let len = usize::try_from(u32::from_le_bytes(*len)).ok()?;
    if len > MAX_PAYLOAD_LEN {
        return None;
    }
    rest.split_at_checked(len)
}

/// Appends `messages` to `out` as a message list (see [`Messages`]); lengths above
/// [`MAX_PAYLOAD_LEN`] are the caller's to avoid ([`Messages::parse`] rejects them).
pub fn encode_messages(messages: &[&[u8]], out: &mut Vec<u8>) {
    for message in messages {
        let len = u32::try_from(message.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(message);
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn list(messages: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_messages(messages, &mut out);
        out
    }

    #[test]
    fn every_frame_round_trips() {
        let one = list(&[b"x"]);
        let three = list(&[b"yz", b"", b"w"]);
        let header = CallHeader {
            kind: CallKind::Duplex,
            timeout_us: 5,
            trace: TraceContext {
                trace_id: [1; 16],
                span_id: [2; 8],
            },
            response_window: 9,
            method: "m",
            metadata: b"token",
        };
        let unary = CallHeader {
            kind: CallKind::Unary,
            ..header
        };
        let frames = [
            Frame::Request {
                call_id: 1,
                header: unary,
                payload: b"abc",
            },
            Frame::RequestInit { call_id: 2, header },
            Frame::RequestChunk {
                call_id: 3,
                seq: 4,
                messages: Messages::parse(&one).unwrap(),
            },
            Frame::RequestEnd { call_id: 5 },
            Frame::RequestCancel {
                call_id: 6,
                reason: ErrorKind::DeadlineExceeded,
            },
            Frame::RequestWindowGrant {
                call_id: 7,
                credits: 8,
            },
            Frame::Response {
                call_id: 9,
                payload: b"",
            },
            Frame::ResponseChunk {
                call_id: 10,
                seq: 11,
                messages: Messages::parse(&three).unwrap(),
            },
            Frame::ResponseEnd { call_id: 12 },
            Frame::ResponseError {
                call_id: 13,
                kind: ErrorKind::HandlerPanic,
                message: "boom",
            },
            Frame::ResponseWindowGrant {
                call_id: 14,
                credits: 15,
            },
        ];
        for frame in frames {
            let bytes = frame.to_vec().unwrap();
            assert_eq!(Frame::decode(&bytes).unwrap(), frame);
            assert_eq!(peek_call_id(&bytes), Some(frame.call_id()));
        }
    }

    #[test]
    fn chunk_head_matches_begin_and_finish_chunk() {
        for request in [true, false] {
            let mut out = Vec::new();
            begin_chunk(&mut out, request, 0x0102_0304_0506_0708, 99);
            out.extend_from_slice(b"abc");
            finish_chunk(&mut out).unwrap();
            let mut expected = chunk_head(request, 0x0102_0304_0506_0708, 99, 3).to_vec();
            expected.extend_from_slice(b"abc");
            assert_eq!(expected, out);
            let (Frame::RequestChunk { messages, .. } | Frame::ResponseChunk { messages, .. }) =
                Frame::decode(&out).unwrap()
            else {
                panic!("not a chunk frame");
            };
            assert_eq!(messages.iter().collect::<Vec<_>>(), [b"abc"]);
        }
    }

    /// A message list is one or more length-prefixed messages that fill it exactly.
    #[test]
    fn message_lists_are_checked_strictly() {
        let three = list(&[b"yz", b"", b"w"]);
        let parsed = Messages::parse(&three).unwrap();
        assert_eq!(parsed.count(), 3);
        let got: Vec<&[u8]> = parsed.iter().collect();
        assert_eq!(got, [&b"yz"[..], b"", b"w"]);
        assert_eq!(Messages::parse(&[]), Err(FrameError::EmptyChunk));
        for bad in [
            &three[..three.len() - 1],     // last message cut short
            &three[..2],                   // a length cut short
            &[5, 0, 0, 0, 1, 2][..],       // length past the end
            &[0xff, 0xff, 0xff, 0xff][..], // length above MAX_PAYLOAD_LEN
        ] {
            assert!(
                matches!(Messages::parse(bad), Err(FrameError::Truncated { .. })),
                "{bad:?}"
            );
        }
        // A truncated list in a frame names the frame's dispatch.
        let mut frame = Vec::new();
        begin_chunk(&mut frame, true, 1, 0);
        frame.extend_from_slice(b"abc");
        finish_chunk(&mut frame).unwrap();
        frame.pop();
        assert_eq!(
            Frame::decode(&frame),
            Err(FrameError::Truncated {
                dispatch: dispatch::REQUEST_CHUNK,
                field: "message"
            })
        );
        frame.truncate(CHUNK_PAYLOAD_OFFSET - MESSAGE_LEN_PREFIX);
        assert_eq!(Frame::decode(&frame), Err(FrameError::EmptyChunk));

        // Messages that each fit but together overflow a frame are refused by the encoder.
        let big = vec![0u8; MAX_PAYLOAD_LEN];
        let two = list(&[&big, &big]);
        let frame = Frame::RequestChunk {
            call_id: 1,
            seq: 0,
            messages: Messages::parse(&two).unwrap(),
        };
        assert!(matches!(frame.to_vec(), Err(FrameError::TooLong { .. })));
    }

    #[test]
    fn request_with_streaming_kind_is_rejected() {
        let header = CallHeader {
            kind: CallKind::Duplex,
            timeout_us: 0,
            trace: TraceContext::default(),
            response_window: 0,
            method: "m",
            metadata: b"",
        };
        let frame = Frame::Request {
            call_id: 1,
            header,
            payload: b"",
        };
        assert!(matches!(
            frame.to_vec(),
            Err(FrameError::BadCallKind { .. })
        ));
    }
}
