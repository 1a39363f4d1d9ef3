//! nRPC: typed unary, server-streaming, client-streaming and duplex calls multiplexed over one
//! authenticated encrypted session, with byte windows in both directions, byte budgets per call,
//! session and endpoint, an authorization hook, cancellation and deadlines.
//!
//! * [`endpoint`]: dials (optionally pinned to a node id) and accepts sessions; the accept loop
//!   with its handshake slots, session caps and file-descriptor back-off.
//! * [`session`]: one session's sealer, writer and reader tasks, its outbox and liveness timers.
//! * `dispatch`: admission of every incoming frame (before any buffer for it exists) and the
//!   dispatcher keyed by (session, call_id).
//! * `budget`: receive reservations, send budgets and the per-call windows.
//! * `outbox`: outgoing frames waiting for the sealer (small ones in shared stream buffers).
//! * `queue`: the per-call event queue the reader fills and wakes once per batch.
//! * [`server`]: handler traits, [`RpcContext`], the router and its authorization hook, the
//!   request stream and response sink handed to handlers, and the task that runs one handler.
//! * [`client`]: the caller side (`call_unary`, `call_server_streaming`, `call_client_streaming`,
//!   `call_duplex`).
//!
//! **Flow control counts bytes.** Every data frame is charged `frame length +
//! FRAME_CHARGE_OVERHEAD` (docs/FORMAT.md §5.4). The receiver of a stream chooses its window for
//! the call (at most [`Config::call_window`], reserved from its session and endpoint receive
//! budgets before it is announced) and returns window bytes as its consumer takes messages; a
//! sender that goes past what it was granted is a protocol violation that ends the session,
//! detected from the frame's head before the frame is buffered. Unary requests and responses are
//! charged to the same budgets when they arrive and refused (`ResourceExhausted`) without being
//! buffered when the budget is spent. Outgoing data waits for the per-call, per-session and
//! endpoint send budgets, so a peer that stops reading holds at most those bytes until the write
//! stall timeout ends its session.
//!
//! **Cancellation.** A caller cancels with REQUEST_CANCEL (dropping a call handle does it). A
//! handler cancels its call by returning `Err(RpcError::cancelled(..))` (or any error): the
//! caller gets RESPONSE_ERROR with that kind and its stream or response fails with it. A
//! cancelled or expired call keeps its place in `max_concurrent_calls` until its handler has
//! actually returned (or was dropped after [`Config::cancel_grace`]).

mod budget;
pub mod client;
pub(crate) mod dispatch;
pub mod endpoint;
mod outbox;
mod queue;
pub mod raw;
pub mod server;
pub mod session;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use crate::frame::{ErrorKind, TraceContext};
pub use client::{
    CallOptions, ClientStreamCall, DuplexCall, DuplexReceiver, DuplexSender, RequestWindow,
    ResponseStream,
};
pub use endpoint::{Endpoint, raise_fd_limit};
pub use raw::{Encoded, RawBytes};
pub use server::{
    Authorize, Chunk, Denied, RequestStreamTyped, ResponseSink, Router, RpcClientStreamingHandler,
    RpcContext, RpcDuplexHandler, RpcServerStreamingHandler, RpcUnaryHandler,
};
pub use session::{Session, SessionError};

/// Default per-call receive window, in charged bytes: one maximum message plus 64 KiB, so any
/// message the frame format allows fits a full window.
pub const DEFAULT_CALL_WINDOW: u32 = 16 * 1024 * 1024 + 64 * 1024;

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

/// Decodes one whole message (docs/FORMAT.md §5): postcard, nothing after it, and written as
/// postcard writes it (see [`written_as_decoded`]).
pub(crate) fn decode_message<T: serde::de::DeserializeOwned + serde::Serialize>(
    bytes: &[u8],
) -> Result<T, RpcError> {
    let (message, rest) = postcard::take_from_bytes(bytes)
        .map_err(|e| RpcError::new(ErrorKind::Decode, format!("decode: {e}")))?;
    if !rest.is_empty() {
        return Err(RpcError::new(
            ErrorKind::Decode,
            format!("decode: {} bytes after the message", rest.len()),
        ));
    }
    if !written_as_decoded(&message, bytes) {
        return Err(RpcError::new(
            ErrorKind::Decode,
            "decode: not the message's own encoding (e.g. an over-long varint)",
        ));
    }
    Ok(message)
}

/// Whether encoding `message` again gives `bytes`: postcard reads a varint with more bytes than
/// it needs, which would give one message several encodings. The encoding may go on past
/// `bytes` (fields added at a message's end, which a decoder fills in when an older peer's
/// message ends before them); every byte of `bytes` must match. Compares as it encodes:
/// nothing is allocated.
pub fn written_as_decoded<T: serde::Serialize>(message: &T, bytes: &[u8]) -> bool {
    postcard::serialize_with_flavor(message, Matches { rest: bytes }).is_ok()
}

/// A postcard output that checks each byte written against `rest` instead of keeping it.
struct Matches<'a> {
    rest: &'a [u8],
}

impl postcard::ser_flavors::Flavor for Matches<'_> {
    type Output = ();

    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.try_extend(&[byte])
    }

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        let n = data.len().min(self.rest.len());
        let (expected, after) = self.rest.split_at(n);
        if data.get(..n) != Some(expected) {
            return Err(postcard::Error::SerializeBufferFull);
        }
        self.rest = after;
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(postcard::Error::SerializeBufferFull)
        }
    }
}

/// Tunables for an [`Endpoint`]. Budgets are in bytes; receive budgets count charged bytes
/// (frame length + `FRAME_CHARGE_OVERHEAD` per data frame).
///
/// What a peer can make this endpoint hold: per session at most `session_recv_budget` received
/// and `session_send_budget` (+ [`CONTROL_QUEUE_MAX`]) queued to send, all sessions together at
/// most the two node budgets; beyond the budgets each session holds its read slab (256 KiB),
/// a few spare stream buffers (≤ 1 MiB) and the batch being written; the slab and spares are
/// released after a quiet tick. Budgets are claimed first
/// come, first served, so keep `max_sessions_per_addr` × the session budgets well below the
/// node budgets: then one source address cannot claim everything.
#[derive(Debug, Clone)]
pub struct Config {
    /// Largest receive window this side grants one call (streamed requests it serves, streamed
    /// responses it receives as a caller). A message whose charge exceeds the window the
    /// receiver granted fails at the sender with `ResourceExhausted`.
    pub call_window: u32,
    /// When the budgets cannot cover a full [`Config::call_window`], a call gets what is left
    /// down to this; below it the call is refused with `ResourceExhausted`.
    pub min_call_window: u32,
    /// Bytes one session may hold received and not yet consumed: reserved call windows, unary
    /// requests being served, unary responses not yet taken.
    pub session_recv_budget: usize,
    /// The same, for all of this endpoint's sessions together.
    pub node_recv_budget: usize,
    /// Of `node_recv_budget`, what all sessions with one peer (one authenticated identity)
    /// together may hold, so a peer holding idle windows on many sessions cannot leave nothing
    /// for the others.
    pub peer_recv_budget: usize,
    /// Outgoing bytes one call may have queued and not yet written. A message whose charge is
    /// larger fails at once with `ResourceExhausted` (as one over the session's or node's).
    pub call_send_budget: usize,
    /// Outgoing bytes one session may have queued and not yet written. Control frames (grants,
    /// cancels, error replies) are not budgeted but capped at [`CONTROL_QUEUE_MAX`] per session;
    /// a peer that makes us queue more without reading them is disconnected.
    pub session_send_budget: usize,
    /// Outgoing bytes all of this endpoint's sessions together may have queued and not written.
    pub node_send_budget: usize,
    /// Of `node_send_budget`, what all sessions with one peer (one authenticated identity)
    /// together may hold, so a peer that reads slowly on many sessions cannot leave nothing
    /// for the others.
    pub peer_send_budget: usize,
    /// Most calls a peer may have running on one session; more get `ResourceExhausted`. A
    /// cancelled or expired call counts until its handler has finished.
    pub max_concurrent_calls: usize,
    /// Handshake must finish within this.
    pub handshake_timeout: Duration,
    /// A write that makes no progress for this long, or a frame (or Noise message) that stops
    /// arriving midway for this long, ends the session (`SessionError::Stalled`). Also the
    /// socket's `TCP_USER_TIMEOUT` (unacknowledged data).
    pub stall_timeout: Duration,
    /// A session with no call open in either direction and nothing received for this long is
    /// closed (`SessionError::Idle`); `None` keeps idle sessions.
    pub idle_timeout: Option<Duration>,
    /// TCP keepalive: probes start after this much silence (then every third of it, 3 probes);
    /// `None` leaves keepalive off.
    pub keepalive: Option<Duration>,
    /// After a handler's token fires, how long it may run to observe it before being dropped.
    pub cancel_grace: Duration,
    /// Most established sessions [`Endpoint::serve`] keeps at once; clamped to what the process's
    /// file-descriptor limit allows (see [`raise_fd_limit`]).
    pub max_sessions: usize,
    /// Most handshakes in progress in [`Endpoint::serve`] (its own slot pool, separate from
    /// established sessions); a connection beyond it is closed at once.
    pub max_handshakes: usize,
    /// Most handshakes plus sessions from one source address (IPv4 address, or IPv6 /64) in
    /// [`Endpoint::serve`].
    pub max_sessions_per_addr: usize,
    /// Most established sessions one authenticated identity may hold in [`Endpoint::serve`].
    pub max_sessions_per_identity: usize,
    /// Whether [`Endpoint::serve`] raises the process's soft file-descriptor limit to its hard
    /// limit before it starts.
    pub raise_fd_limit: bool,
    /// TCP congestion control for this endpoint's sessions (Linux `TCP_CONGESTION`, e.g.
    /// `"reno"`); `None` keeps the system default. A name the kernel refuses is logged and
    /// the default kept. Why it can matter: with BBR, the default on some hosts, large
    /// messages over loopback were retransmitted ~1% of segments (paced sends leave from
    /// several CPUs and arrive reordered), which cost a third of the bulk throughput
    /// (net/rpc/BENCHMARKS.md).
    pub tcp_congestion: Option<String>,
    /// Capability tags this endpoint announces in its handshake (docs/FORMAT.md §5.2).
    pub capabilities: crate::handshake::Capabilities,
}

/// Control bytes (grants, cancels, error replies, ends) one session may have queued and not yet
/// written; a peer that provokes more while not reading is disconnected.
pub const CONTROL_QUEUE_MAX: usize = 256 * 1024;

impl Default for Config {
    fn default() -> Self {
        Config {
            call_window: DEFAULT_CALL_WINDOW,
            min_call_window: 256 * 1024,
            session_recv_budget: 64 * 1024 * 1024,
            node_recv_budget: 512 * 1024 * 1024,
            peer_recv_budget: 256 * 1024 * 1024,
            call_send_budget: DEFAULT_CALL_WINDOW as usize,
            session_send_budget: 32 * 1024 * 1024,
            node_send_budget: 256 * 1024 * 1024,
            peer_send_budget: 128 * 1024 * 1024,
            max_concurrent_calls: 1024,
            handshake_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(30),
            idle_timeout: Some(Duration::from_secs(300)),
            keepalive: Some(Duration::from_secs(30)),
            cancel_grace: Duration::from_secs(1),
            max_sessions: endpoint::default_max_sessions(),
            max_handshakes: 256,
            max_sessions_per_addr: 32,
            max_sessions_per_identity: 16,
            raise_fd_limit: true,
            tcp_congestion: None,
            capabilities: crate::handshake::Capabilities::default(),
        }
    }
}

/// Counters for everything a peer can do wrong (and a few things that go right), plus gauges
/// of what is held right now.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Sessions whose handshake completed.
    pub sessions_opened: AtomicU64,
    /// Sessions that ended for any reason.
    pub sessions_closed: AtomicU64,
    /// Handshakes that failed.
    pub handshake_failures: AtomicU64,
    /// Connections `serve` closed unhandshaken because all handshake slots were taken.
    pub handshakes_refused: AtomicU64,
    /// Connections `serve` closed because `max_sessions` were open.
    pub sessions_refused: AtomicU64,
    /// Connections `serve` closed because their source address had `max_sessions_per_addr`.
    pub sessions_refused_addr: AtomicU64,
    /// Sessions `serve` closed after the handshake because the identity had
    /// `max_sessions_per_identity`.
    pub sessions_refused_identity: AtomicU64,
    /// Sessions refused at the start because the endpoint's receive budget could not hold
    /// even their fixed buffers.
    pub sessions_refused_memory: AtomicU64,
    /// `accept` errors (each one backs off; `EMFILE`/`ENFILE` back off longer).
    pub accept_errors: AtomicU64,
    /// Sessions closed by the idle timeout.
    pub idle_closes: AtomicU64,
    /// Sessions closed because a write or an incoming frame made no progress.
    pub stalled_closes: AtomicU64,
    /// Frames that failed to decode (session dropped).
    pub malformed_frames: AtomicU64,
    /// Frame length prefixes above the maximum, and control frames above theirs (session
    /// dropped).
    pub oversized_frames: AtomicU64,
    /// Other transport failures (bad MAC, truncation, socket errors).
    pub transport_errors: AtomicU64,
    /// Frames with an unknown dispatch value (answered with `UnknownDispatch`).
    pub unknown_dispatch: AtomicU64,
    /// Per-call protocol violations (seq gap/duplicate, duplicate REQUEST_INIT, ...).
    pub protocol_violations: AtomicU64,
    /// Sends beyond granted window bytes, or grants beyond what was sent (session dropped).
    pub credit_violations: AtomicU64,
    /// Frames for calls that are not open on that session (ignored; data frames among them
    /// are read past without being buffered).
    pub stray_frames: AtomicU64,
    /// Calls or messages refused with `ResourceExhausted` because a budget was spent.
    pub budget_refusals: AtomicU64,
    /// Calls refused by the router's authorization hook.
    pub authorization_refusals: AtomicU64,
    /// Sessions closed because the peer let our control queue overflow.
    pub send_queue_overflows: AtomicU64,
    /// Handler panics turned into `HandlerPanic`.
    pub handler_panics: AtomicU64,
    /// Calls this side served that ended at their deadline (answered `DeadlineExceeded`),
    /// whether the handler was waiting for send budget, running, or done with its answer
    /// waiting for room.
    pub deadlines_exceeded: AtomicU64,
    /// Handler tasks currently running (gauge).
    pub active_handlers: AtomicU64,
    /// Established sessions currently open (gauge).
    pub open_sessions: AtomicU64,
    /// Handshakes currently in progress in `serve` (gauge).
    pub pending_handshakes: AtomicU64,
    /// Session tasks (sealer, writer, reader) currently alive (gauge).
    pub session_tasks: AtomicU64,
    /// Receive bytes currently reserved across all sessions (gauge).
    pub recv_bytes_held: AtomicU64,
    /// Highest `recv_bytes_held` seen.
    pub recv_bytes_peak: AtomicU64,
    /// Outgoing data bytes currently queued and not written, all sessions (gauge; it may lag
    /// the level by up to 64 KiB; it is written as 0 whenever the level reaches 0).
    pub send_bytes_queued: AtomicU64,
    /// Highest level of outgoing data bytes queued seen (the exact level, not the lagging
    /// `send_bytes_queued`).
    pub send_bytes_peak: AtomicU64,
}

impl Metrics {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn gauge_up(gauge: &AtomicU64) {
        gauge.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn gauge_down(gauge: &AtomicU64) {
        let _ = gauge.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
            Some(v.saturating_sub(1))
        });
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn a_message_decodes_only_from_its_own_encoding() {
        let map = BTreeMap::from([(1u8, 10u8), (2, 20)]);
        let bytes = postcard::to_allocvec(&map).unwrap();
        assert_eq!(bytes, [2, 1, 10, 2, 20]);
        assert_eq!(decode_message::<BTreeMap<u8, u8>>(&bytes).unwrap(), map);
        // Postcard reads each of these; each has a shorter or ordered encoding.
        for other in [
            &[0x82, 0, 1, 10, 2, 20][..], // the count in two bytes
            &[2, 2, 20, 1, 10],           // keys out of order
            &[2, 1, 10, 1, 10],           // a key twice (one entry)
        ] {
            let err = decode_message::<BTreeMap<u8, u8>>(other).unwrap_err();
            assert_eq!(err.kind, ErrorKind::Decode, "{other:?}");
        }
        // An encoding may go on past the bytes (a trailing field an older peer's message
        // ends before); the bytes there must still match.
        assert!(written_as_decoded(&(7u8, 300u32), &[7]));
        assert!(written_as_decoded(&(7u8, 300u32), &[7, 0xac]));
        assert!(!written_as_decoded(&(7u8, 300u32), &[7, 0xad]));
        assert!(!written_as_decoded(&7u8, &[7, 0]));
    }
}
