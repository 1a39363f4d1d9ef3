//! nRPC: typed unary, server-streaming, client-streaming and duplex calls multiplexed over one
//! authenticated encrypted session, with credit windows in both directions, cancellation and
//! deadlines.
//!
//! * [`session`]: the endpoint, the session's reader/writer tasks and the frame dispatcher keyed
//!   by (session, call_id).
//! * [`server`]: handler traits, [`RpcContext`], the request stream and response sink handed to
//!   handlers, and the task that runs one handler (panics → `HandlerPanic`).
//! * [`client`]: the caller side (`call_unary`, `call_server_streaming`, `call_client_streaming`,
//!   `call_duplex`).
//!
//! Flow control: credits count messages. A receiver grants its initial window (default
//! [`DEFAULT_WINDOW`]) and re-grants as its consumer takes messages (half a window at a time), so
//! at most one window of messages per call is ever queued at the receiver; a sender over its
//! credit is a protocol violation that ends the session.

pub mod client;
pub mod raw;
pub mod server;
pub mod session;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use crate::frame::{ErrorKind, TraceContext};
pub use client::{
    CallOptions, ClientStreamCall, DuplexCall, DuplexReceiver, DuplexSender, ResponseStream,
};
pub use raw::RawBytes;
pub use server::{
    Chunk, RequestStreamTyped, ResponseSink, Router, RpcClientStreamingHandler, RpcContext,
    RpcDuplexHandler, RpcServerStreamingHandler, RpcUnaryHandler,
};
pub use session::{Endpoint, Session, SessionError};

/// Default initial credit window (messages) in both directions.
pub const DEFAULT_WINDOW: u32 = 32;
/// Largest window a peer may grant or request; more is a protocol violation.
pub const MAX_WINDOW: u32 = 1 << 16;

/// A typed call error, carried on the wire as RESPONSE_ERROR kind + message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct RpcError {
    /// Structured kind.
    pub kind: ErrorKind,
    /// Human-readable detail (truncated to the frame maximum on the wire).
    pub message: String,
}

impl RpcError {
    /// An error of `kind` with a message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        RpcError {
            kind,
            message: message.into(),
        }
    }

    /// `Cancelled`.
    pub fn cancelled(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Cancelled, message)
    }

    /// `DeadlineExceeded`.
    pub fn deadline() -> Self {
        Self::new(ErrorKind::DeadlineExceeded, "deadline exceeded")
    }

    /// `Disconnected`.
    pub fn disconnected() -> Self {
        Self::new(ErrorKind::Disconnected, "session lost")
    }
}

pub(crate) fn encode_message<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, RpcError> {
    postcard::to_stdvec(value).map_err(|e| RpcError::new(ErrorKind::Decode, format!("encode: {e}")))
}

pub(crate) fn decode_message<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, RpcError> {
    postcard::from_bytes(bytes)
        .map_err(|e| RpcError::new(ErrorKind::Decode, format!("decode: {e}")))
}

/// Tunables for an [`Endpoint`].
#[derive(Debug, Clone)]
pub struct Config {
    /// Initial credit window this side grants for streamed requests it serves and for streamed
    /// responses it receives as a caller (unless a call overrides it).
    pub window: u32,
    /// Most concurrent calls a peer may have open on one session; more get `ResourceExhausted`.
    pub max_concurrent_calls: usize,
    /// Handshake must finish within this.
    pub handshake_timeout: Duration,
    /// After a handler's token fires, how long it may run to observe it before being dropped.
    pub cancel_grace: Duration,
    /// Outgoing frames queued but not yet written; a peer that stops reading past this is
    /// disconnected.
    pub max_queued_frames: usize,
    /// Most sessions [`Endpoint::serve`] keeps at once, handshakes in progress included; a
    /// connection beyond it is closed at once and counted in `sessions_refused`.
    pub max_sessions: usize,
    /// TCP congestion control for this endpoint's sessions (Linux `TCP_CONGESTION`, e.g.
    /// `"reno"`); `None` keeps the system default. A name the kernel refuses is logged and
    /// the default kept. Why it can matter: with BBR, the default on some hosts, large
    /// messages over loopback were retransmitted ~1% of segments (paced sends leave from
    /// several CPUs and arrive reordered), which cost a third of the bulk throughput
    /// (net/BENCHMARKS.md).
    pub tcp_congestion: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            window: DEFAULT_WINDOW,
            max_concurrent_calls: 1024,
            handshake_timeout: Duration::from_secs(10),
            cancel_grace: Duration::from_secs(1),
            max_queued_frames: 1 << 16,
            max_sessions: 4096,
            tcp_congestion: None,
        }
    }
}

/// Counters for everything a peer can do wrong (and a few things that go right).
#[derive(Debug, Default)]
pub struct Metrics {
    /// Sessions whose handshake completed.
    pub sessions_opened: AtomicU64,
    /// Sessions that ended for any reason.
    pub sessions_closed: AtomicU64,
    /// Handshakes that failed.
    pub handshake_failures: AtomicU64,
    /// Connections `serve` closed unhandshaken because `max_sessions` were open.
    pub sessions_refused: AtomicU64,
    /// Frames that failed to decode (session dropped).
    pub malformed_frames: AtomicU64,
    /// Frame length prefixes above the maximum (session dropped).
    pub oversized_frames: AtomicU64,
    /// Other transport failures (bad MAC, truncation, socket errors).
    pub transport_errors: AtomicU64,
    /// Frames with an unknown dispatch value (answered with `UnknownDispatch`).
    pub unknown_dispatch: AtomicU64,
    /// Per-call protocol violations (seq gap/duplicate, duplicate REQUEST_INIT, ...).
    pub protocol_violations: AtomicU64,
    /// Sends beyond granted credit (session dropped).
    pub credit_violations: AtomicU64,
    /// Frames for calls that are not open on that session (ignored).
    pub stray_frames: AtomicU64,
    /// Handler panics turned into `HandlerPanic`.
    pub handler_panics: AtomicU64,
    /// Handler tasks currently running (a gauge, not a counter).
    pub active_handlers: AtomicU64,
    /// Highest number of messages ever queued for one call at this side's receivers.
    pub max_call_queue_depth: AtomicU64,
}

impl Metrics {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn observe_depth(&self, depth: usize) {
        let depth = u64::try_from(depth).unwrap_or(u64::MAX);
        self.max_call_queue_depth
            .fetch_max(depth, Ordering::Relaxed);
    }

    /// Reads one counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// A fresh call id from the OS random number generator (never sequential, never 0).
pub(crate) fn random_call_id() -> Result<u64, RpcError> {
    loop {
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes)
            .map_err(|e| RpcError::new(ErrorKind::Internal, format!("OS RNG failed: {e}")))?;
        let id = u64::from_le_bytes(bytes);
        if id != 0 {
            return Ok(id);
        }
    }
}
