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
//!
//! * `decode`: the bounded cursor and [`Frame::decode`];
//! * `encode`: [`Frame::encode`] and the helpers that build data frames in place.
#![deny(clippy::arithmetic_side_effects)]

use std::fmt;

mod decode;
mod encode;

pub use decode::peek_call_id;
pub use encode::{
    APPENDED_MESSAGE_SAVING, CHUNK_PAYLOAD_OFFSET, begin_chunk, begin_request, begin_response,
    chunk_head, finish_chunk, finish_payload,
};

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
