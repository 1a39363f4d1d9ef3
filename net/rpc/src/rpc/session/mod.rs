//! One session: its shared state (call tables, outbox, budgets, buffer pool) and its three
//! tasks — the sealer (encrypts queued frames in batches), the writer (writes sealed batches,
//! each write bounded by the stall timeout) and the reader (admits, reassembles and dispatches
//! frames, and runs the idle and stall timers). Each session keeps its own call tables, so a
//! frame can only ever reach a call that was opened on the same authenticated session.
//!
//! Teardown: `SessionShared::close` fires the session token; every task selects on it and
//! ends, dropping its half of the socket (the writer sets `SO_LINGER 0` first when bytes were
//! left unwritten, so the kernel frees the socket at once), the outbox is emptied and its budget
//! returned, every call fails with `Disconnected` and every handler's token fires. Nothing a
//! peer does — including never reading — keeps a task or a buffer of a closed session alive.
//!
//! * `buffers`: received frames kept whole, and the pool of large buffers;
//! * `tasks`: the sealer and the writer, how the tasks start and are counted, the liveness
//!   timers.

mod buffers;
mod tasks;

pub(crate) use buffers::{MessageList, NextMessage, POOL_MIN_CAPACITY, Payload, SparePool};
pub(crate) use tasks::{Liveness, TaskGuard, spawn_tasks};

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::budget::{Reclaim, RecvBudget, RecvWindow, Reservation, SendBudget, SendWindow};
pub(crate) use super::outbox::SendCharge;
use super::outbox::{ChunkAddress, OutItem, Outbox, Outgoing, PushError};
use super::server::{CallControl, ReqEvent, Router};
use super::{Config, Metrics, RpcError};
use crate::frame::{ErrorKind, Frame, FrameError};
use crate::handshake::{HandshakeError, PeerIdentity};
use crate::transport::TransportError;

/// Why a session ended (or could not start).
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The Noise handshake or identity proof failed (including a pinned dial that reached
    /// another node).
    #[error("handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    /// The encrypted transport failed (includes oversized frames).
    #[error("transport failed: {0}")]
    Transport(#[from] TransportError),
    /// The peer sent a frame that does not decode.
    #[error("malformed frame: {0}")]
    Malformed(#[from] FrameError),
    /// A frame that carries no payload announced more than [`crate::frame::MAX_CONTROL_FRAME_LEN`].
    #[error("peer announced a {len}-byte control frame")]
    ControlFrameTooLarge { len: usize },
    /// The peer sent more bytes than its window for the call allowed.
    #[error("peer exceeded its window on call {call_id:#018x}")]
    CreditExceeded { call_id: u64 },
    /// The peer returned more window bytes than were ever sent.
    #[error("peer returned more window than was used on call {call_id:#018x}")]
    WindowOverflow { call_id: u64 },
    /// The peer stopped reading while its control queue was full.
    #[error("peer is not reading; {0} control bytes queued")]
    SendQueueOverflow(usize),
    /// A write made no progress, or an incoming frame stopped midway, for the stall timeout.
    #[error("no progress for {0:?}")]
    Stalled(Duration),
    /// Nothing happened on the session for the idle timeout.
    #[error("idle for {0:?}")]
    Idle(Duration),
    /// The endpoint had no room for the session (its fixed buffers or a session cap).
    #[error("session refused: {0}")]
    Refused(&'static str),
    /// Connecting failed.
    #[error("connect failed: {0}")]
    Connect(std::io::Error),
    /// The peer closed the connection.
    #[error("peer closed the session")]
    PeerClosed,
    /// This side closed the session.
    #[error("session closed locally")]
    LocalClose,
}

/// What the dispatcher hands a caller.
#[derive(Debug)]
pub(crate) enum CallEvent {
    Response(Payload),
    Chunk(MessageList),
    End,
    Error(RpcError),
}

/// Caller-side state of one open call, as seen by the dispatcher.
#[derive(Debug)]
pub(crate) struct CallerSlot {
    pub(crate) events: super::queue::Sender<CallEvent>,
    pub(crate) shared: Arc<CallShared>,
    pub(crate) next_seq: u64,
    /// Our receive window for streamed responses.
    pub(crate) window: Option<Arc<RecvWindow>>,
}

/// State a caller's call handle shares with the dispatcher.
#[derive(Debug)]
pub(crate) struct CallShared {
    /// The window the server granted for REQUEST_CHUNK frames.
    pub(crate) request_window: SendWindow,
    /// This call's share of the session's send budget.
    pub(crate) send_budget: Arc<Semaphore>,
    /// Terminal error set when the dispatcher ends the call.
    pub(crate) terminal: OnceLock<RpcError>,
}

impl CallShared {
    /// Ends the call for its senders.
    pub(crate) fn close(&self) {
        self.request_window.close();
        self.send_budget.close();
    }
}

/// Server-side state of one open call.
#[derive(Debug)]
pub(crate) struct ServerCall {
    pub(crate) requests: Option<super::queue::Sender<ReqEvent>>,
    pub(crate) next_seq: u64,
    /// Our receive window for streamed requests.
    pub(crate) window: Option<Arc<RecvWindow>>,
    /// The window the caller granted for RESPONSE_CHUNK frames.
    pub(crate) response_window: Arc<SendWindow>,
    pub(crate) control: Arc<CallControl>,
}

/// State shared by a session's tasks and all its call handles.
pub(crate) struct SessionShared {
    pub(crate) peer: PeerIdentity,
    pub(crate) config: Arc<Config>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) router: Arc<Router>,
    outbox: Outbox,
    pub(crate) recv: Arc<RecvBudget>,
    pub(crate) send: SendBudget,
    pub(crate) calls: Mutex<HashMap<u64, CallerSlot>>,
    pub(crate) served: Mutex<HashMap<u64, ServerCall>>,
    /// Handler tasks of this session that have not finished (cancelled ones included).
    pub(crate) live_handlers: AtomicUsize,
    /// Frames read from the peer so far (see [`Session::frames_received`]).
    pub(crate) frames_received: AtomicU64,
    pub(crate) closed: CancellationToken,
    end: OnceLock<Arc<SessionError>>,
    buffers: Arc<SparePool>,
    /// Session tasks still running; `tasks_done` fires when the last one ends.
    tasks: AtomicUsize,
    tasks_done: CancellationToken,
}

impl std::fmt::Debug for SessionShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionShared")
            .field("peer", &self.peer.node_id())
            .finish_non_exhaustive()
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means another task panicked mid-update of a map of channels; the
    // maps stay structurally valid, so keep going.
    m.lock().unwrap_or_else(|poison| poison.into_inner())
}

impl SessionShared {
    pub(crate) fn new(
        peer: PeerIdentity,
        config: Arc<Config>,
        metrics: Arc<Metrics>,
        router: Arc<Router>,
        node: Arc<super::budget::NodeBudgets>,
    ) -> Arc<Self> {
        let closed = CancellationToken::new();
        let buffers = Arc::new(SparePool::default());
        let spares: std::sync::Weak<SparePool> = Arc::downgrade(&buffers);
        node.register_spares(spares);
        let peer_budgets = node.peer(peer.node_id());
        Arc::new(SessionShared {
            peer,
            recv: RecvBudget::new(
                config.session_recv_budget,
                peer_budgets.clone(),
                node.clone(),
            ),
            send: SendBudget::new(
                config.session_send_budget,
                config.call_send_budget,
                peer_budgets,
                node,
                closed.clone(),
            ),
            config,
            metrics,
            router,
            outbox: Outbox::default(),
            calls: Mutex::new(HashMap::new()),
            served: Mutex::new(HashMap::new()),
            live_handlers: AtomicUsize::new(0),
            frames_received: AtomicU64::new(0),
            closed,
            end: OnceLock::new(),
            buffers,
            tasks: AtomicUsize::new(0),
            tasks_done: CancellationToken::new(),
        })
    }

    /// Resolves once every task of the session has ended (its socket and buffers are freed).
    pub(crate) async fn tasks_ended(&self) {
        self.tasks_done.cancelled().await;
    }

    pub(crate) fn calls(&self) -> MutexGuard<'_, HashMap<u64, CallerSlot>> {
        lock(&self.calls)
    }

    pub(crate) fn served(&self) -> MutexGuard<'_, HashMap<u64, ServerCall>> {
        lock(&self.served)
    }

    /// Reserves receive bytes for a call's window or a unary message (see
    /// [`RecvBudget::reserve_reclaiming`]: pooled buffers give theirs back first).
    pub(crate) fn reserve_recv(&self, want: usize, min: usize) -> Option<Reservation> {
        self.recv.reserve_reclaiming(want, min, &*self.buffers)
    }

    /// Frees every pooled buffer and spare stream buffer.
    pub(crate) fn drain_pool(&self) {
        self.buffers.reclaim();
        self.outbox.drain_spares();
    }

    /// Queues a control frame (no payload) for the writer. Control frames are not budgeted but
    /// capped per session: a peer that lets them pile up without reading is disconnected.
    pub(crate) fn send_frame(&self, frame: &Frame<'_>) -> Result<(), RpcError> {
        let bytes = frame
            .to_vec()
            .map_err(|e| RpcError::new(ErrorKind::InvalidArgument, format!("frame: {e}")))?;
        self.enqueue_control(bytes)
    }

    /// Queues an encoded control frame (see [`SessionShared::send_frame`]).
    pub(crate) fn enqueue_control(&self, bytes: Vec<u8>) -> Result<(), RpcError> {
        self.push(Outgoing::Borrowed(&bytes), None)
    }

    /// Queues a frame; data frames hold `charge` of send budget until written, control frames
    /// (`None`) count against [`CONTROL_QUEUE_MAX`].
    fn push(&self, frame: Outgoing<'_>, charge: Option<SendCharge>) -> Result<(), RpcError> {
        let pushed = self.outbox.push(frame, charge);
        self.pushed(pushed)
    }

    /// Settles the outcome of an outbox push: budget of refused frames returned, a peer that
    /// let the control queue overflow disconnected.
    fn pushed(&self, pushed: Result<(), PushError>) -> Result<(), RpcError> {
        match pushed {
            Ok(()) => Ok(()),
            Err(PushError::Closed(charge)) => {
                if let Some(charge) = charge {
                    self.release_send(charge);
                }
                Err(self.closed_error())
            }
            Err(PushError::ControlOverflow(queued)) => {
                Metrics::bump(&self.metrics.send_queue_overflows);
                self.close(SessionError::SendQueueOverflow(queued));
                Err(RpcError::disconnected())
            }
            Err(PushError::Encode(charge, error)) => {
                self.release_send(charge);
                Err(error)
            }
        }
    }

    /// The length and charge of the chunk frame that would carry `item`, without encoding it.
    pub(crate) fn measure_chunk<T: serde::Serialize + ?Sized>(
        item: &T,
    ) -> Result<(usize, usize), RpcError> {
        let size = postcard::experimental::serialized_size(item)
            .map_err(|e| RpcError::new(ErrorKind::Decode, format!("encode: {e}")))?;
        if size > crate::frame::MAX_PAYLOAD_LEN {
            return Err(RpcError::new(
                ErrorKind::InvalidArgument,
                format!(
                    "frame: payload of {size} bytes exceeds the maximum of {}",
                    crate::frame::MAX_PAYLOAD_LEN
                ),
            ));
        }
        let frame_len = crate::frame::CHUNK_PAYLOAD_OFFSET.saturating_add(size);
        Ok((frame_len, crate::frame::charge(frame_len)))
    }

    /// Queues `item` as a chunk message (measured with [`SessionShared::measure_chunk`]),
    /// holding `charge` bytes of send budget (taken with [`SessionShared::reserve_send_bytes`]
    /// from `budget` and the session's) until written: a small one is serialized straight into
    /// the outbox, appended to the call's chunk frame queued last when it can be, a large one
    /// into `scratch` and handed over whole as a frame of its own. Returns `true` when the
    /// message was appended: it then costs [`crate::frame::APPENDED_MESSAGE_SAVING`] less of
    /// the peer's window than the `charge` reserved for it, which the caller gives back.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn send_chunk<T: serde::Serialize + ?Sized>(
        &self,
        request: bool,
        call_id: u64,
        seq: u64,
        item: &T,
        frame_len: usize,
        budget: &Arc<Semaphore>,
        charge: usize,
        scratch: &mut Vec<u8>,
        size_hint: &mut usize,
    ) -> Result<bool, RpcError> {
        if frame_len < crate::transport::IN_PLACE_MIN {
            let chunk = ChunkAddress {
                request,
                call_id,
                seq,
            };
            return match self
                .outbox
                .push_chunk(chunk, item, frame_len, budget, charge)
            {
                Ok(appended) => Ok(appended),
                Err(e) => self.pushed(Err(e)).map(|()| false),
            };
        }
        match self.encode_chunk(request, call_id, seq, item, scratch, size_hint) {
            Ok(_) => self
                .enqueue_scratch(
                    scratch,
                    SendCharge {
                        call: Some(budget.clone()),
                        bytes: charge,
                    },
                )
                .map(|()| false),
            Err(e) => {
                self.release_send_bytes(Some(budget), charge);
                Err(e)
            }
        }
    }

    /// Takes `bytes` of send budget for a data frame (waits while it is spent).
    pub(crate) async fn reserve_send(
        &self,
        call: Option<&Arc<Semaphore>>,
        bytes: usize,
    ) -> Result<SendCharge, RpcError> {
        self.reserve_send_bytes(call.map(|c| &**c), bytes).await?;
        Ok(SendCharge {
            call: call.cloned(),
            bytes,
        })
    }

    /// [`SessionShared::reserve_send`] without the charge: the caller hands `bytes` and the
    /// call's budget to [`SessionShared::send_chunk`] (which, for a small chunk, merges them
    /// into the charge of the frames before it without cloning the budget's `Arc`).
    pub(crate) async fn reserve_send_bytes(
        &self,
        call: Option<&Semaphore>,
        bytes: usize,
    ) -> Result<(), RpcError> {
        match self.send.acquire(call, bytes).await {
            Ok(()) => Ok(()),
            Err(super::budget::SendBudgetError::TooLarge { limit }) => Err(RpcError::new(
                ErrorKind::ResourceExhausted,
                format!("a {bytes}-byte message exceeds the {limit}-byte send budget"),
            )),
            Err(super::budget::SendBudgetError::Closed) => Err(self.closed_error()),
        }
    }

    /// [`SessionShared::reserve_send_bytes`] when every budget has room right now (never
    /// waits): `false` when the caller must wait or fail, and nothing is held then.
    pub(crate) fn try_reserve_send_bytes(&self, call: Option<&Semaphore>, bytes: usize) -> bool {
        self.send.try_acquire(call, bytes)
    }

    /// Returns send budget that will not be used.
    pub(crate) fn release_send(&self, charge: SendCharge) {
        self.send.release(charge.call.as_deref(), charge.bytes);
    }

    /// Returns send budget taken with [`SessionShared::reserve_send_bytes`] that will not be
    /// used.
    pub(crate) fn release_send_bytes(&self, call: Option<&Semaphore>, bytes: usize) {
        self.send.release(call, bytes);
    }

    /// Queues `bytes` (a data frame holding `charge`, or a control frame) like
    /// [`SessionShared::enqueue_data`] / [`SessionShared::enqueue_control`], for a caller that
    /// holds the `served` lock: a control-queue overflow is returned, not acted on (closing the
    /// session takes that lock, which would never return on this thread); the caller settles
    /// it with [`SessionShared::settle_overflow`] once it let go.
    pub(crate) fn enqueue_holding_served(
        &self,
        bytes: Vec<u8>,
        charge: Option<SendCharge>,
    ) -> Result<(), PushError> {
        match self.outbox.push(Outgoing::Owned(bytes), charge) {
            Err(overflow @ PushError::ControlOverflow(_)) => Err(overflow),
            other => {
                let _ = self.pushed(other);
                Ok(())
            }
        }
    }

    /// Settles what [`SessionShared::enqueue_holding_served`] returned (the peer let the
    /// control queue overflow: disconnected). Not with the `served` lock held.
    pub(crate) fn settle_overflow(&self, overflow: PushError) {
        let _ = self.pushed(Err(overflow));
    }

    /// Queues a data frame holding `charge` of send budget (returned once it is written).
    pub(crate) fn enqueue_data(&self, bytes: Vec<u8>, charge: SendCharge) -> Result<(), RpcError> {
        self.push(Outgoing::Owned(bytes), Some(charge))
    }

    /// Queues the data frame encoded in `scratch` (see [`SessionShared::encode_chunk`]): a small
    /// one is copied and `scratch` kept for the next message, a large one handed over.
    pub(crate) fn enqueue_scratch(
        &self,
        scratch: &mut Vec<u8>,
        charge: SendCharge,
    ) -> Result<(), RpcError> {
        let result = if scratch.len() < crate::transport::IN_PLACE_MIN {
            self.push(Outgoing::Borrowed(scratch), Some(charge))
        } else {
            self.push(Outgoing::Owned(std::mem::take(scratch)), Some(charge))
        };
        scratch.clear();
        result
    }

    fn closed_error(&self) -> RpcError {
        RpcError::disconnected()
    }

    /// Encodes a message into a chunk frame in `scratch` (replaced by a pooled buffer of the
    /// last size when it was handed over) and returns the frame's charge.
    pub(crate) fn encode_chunk<T: serde::Serialize + ?Sized>(
        &self,
        request: bool,
        call_id: u64,
        seq: u64,
        item: &T,
        scratch: &mut Vec<u8>,
        size_hint: &mut usize,
    ) -> Result<usize, RpcError> {
        let want = crate::frame::CHUNK_PAYLOAD_OFFSET.saturating_add(*size_hint);
        let mut buf = std::mem::take(scratch);
        if buf.capacity() == 0 {
            buf = self.take_buffer(want);
        }
        buf.clear();
        buf.reserve(want);
        crate::frame::begin_chunk(&mut buf, request, call_id, seq);
        let buf = postcard::to_extend(item, buf)
            .map_err(|e| RpcError::new(ErrorKind::Decode, format!("encode: {e}")))?;
        let mut buf = buf;
        crate::frame::finish_chunk(&mut buf)
            .map_err(|e| RpcError::new(ErrorKind::InvalidArgument, format!("frame: {e}")))?;
        *size_hint = buf.len().saturating_sub(crate::frame::CHUNK_PAYLOAD_OFFSET);
        let charge = crate::frame::charge(buf.len());
        *scratch = buf;
        Ok(charge)
    }

    /// Best-effort error reply for a call.
    pub(crate) fn send_error(&self, call_id: u64, error: &RpcError) {
        let _ = self.send_frame(&error_frame(call_id, error));
    }

    /// True once [`SessionShared::close`] has begun (it sets the end reason first, then fires
    /// `closed`): one atomic load, for per-frame checks (`CancellationToken::is_cancelled`
    /// takes a lock).
    pub(crate) fn is_closed(&self) -> bool {
        self.end.get().is_some()
    }

    /// Ends the session with `error` (first reason wins): fires the token, empties the outbox
    /// (returning its budget), fails every open call and cancels every handler.
    pub(crate) fn close(&self, error: SessionError) {
        if self.end.set(Arc::new(error)).is_ok() {
            if let Some(end) = self.end.get() {
                tracing::debug!(peer = %self.peer.node_id(), reason = %end, "nRPC session closed");
            }
            Metrics::bump(&self.metrics.sessions_closed);
            Metrics::gauge_down(&self.metrics.open_sessions);
        }
        self.closed.cancel();
        self.send.close();
        for item in self.outbox.close() {
            self.release_item(item);
        }
        let calls: Vec<CallerSlot> = self.calls().drain().map(|(_, slot)| slot).collect();
        for slot in calls {
            let _ = slot.shared.terminal.set(RpcError::disconnected());
            slot.shared.close();
        }
        let served: Vec<ServerCall> = self.served().drain().map(|(_, call)| call).collect();
        for call in served {
            call.response_window.close();
            call.control.cancel(ErrorKind::Disconnected);
        }
        self.drain_pool();
    }

    /// Why the session ended, if it has.
    pub(crate) fn end_reason(&self) -> Option<Arc<SessionError>> {
        self.end.get().cloned()
    }

    /// True when no call is open in either direction and no handler is running.
    fn is_quiet(&self) -> bool {
        self.live_handlers.load(Ordering::Acquire) == 0
            && self.calls().is_empty()
            && self.served().is_empty()
            && self.outbox.is_empty()
    }

    /// Drops every queued frame as if it had been written (the dispatcher fuzz harness plays a
    /// peer that reads everything).
    pub(crate) fn discard_outbox(&self) {
        while let Some(items) = self.outbox.take_batch() {
            for item in items {
                self.release_item(item);
            }
        }
    }

    /// Returns the send budget a queued item holds.
    fn release_item(&self, item: OutItem) {
        match item {
            OutItem::Stream { charges, .. } => {
                for charge in charges {
                    self.release_send(charge);
                }
            }
            OutItem::Owned { charge, .. } => {
                if let Some(charge) = charge {
                    self.release_send(charge);
                }
            }
        }
    }
}

/// RESPONSE_ERROR for `error`, its message cut to the frame maximum at a char boundary.
pub(crate) fn error_frame(call_id: u64, error: &RpcError) -> Frame<'_> {
    let mut message = error.message.as_str();
    while message.len() > crate::frame::MAX_ERROR_MESSAGE_LEN {
        let mut cut = crate::frame::MAX_ERROR_MESSAGE_LEN;
        while !message.is_char_boundary(cut) {
            cut = cut.saturating_sub(1);
        }
        message = message.get(..cut).unwrap_or_default();
    }
    Frame::ResponseError {
        call_id,
        kind: error.kind,
        message,
    }
}

/// One authenticated encrypted session; cheap to clone. Calls can be made in both directions.
/// The session runs until [`Session::close`], the peer disconnects, the peer breaks the
/// protocol, or a liveness timeout fires; dropping handles does not end it (call handles keep
/// working on their own).
#[derive(Clone)]
pub struct Session {
    pub(crate) shared: Arc<SessionShared>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("peer", &self.shared.peer.node_id())
            .finish()
    }
}

impl Session {
    /// The authenticated peer (the only identity any check may use).
    pub fn peer(&self) -> &PeerIdentity {
        &self.shared.peer
    }

    /// Closes the session; every open call fails with `Disconnected`.
    pub fn close(&self) {
        self.shared.close(SessionError::LocalClose);
    }

    /// Waits until the session has ended and returns why.
    pub async fn closed(&self) -> Arc<SessionError> {
        self.shared.closed.cancelled().await;
        self.end_reason()
            .unwrap_or_else(|| Arc::new(SessionError::LocalClose))
    }

    /// Why the session ended, if it has.
    pub fn end_reason(&self) -> Option<Arc<SessionError>> {
        self.shared.end_reason()
    }

    /// Whether `other` is a handle to this same session (not merely one to the same peer).
    pub fn same_as(&self, other: &Session) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// Number of calls this side currently serves for the peer (cancelled calls whose handler
    /// is still finishing are not included; see [`Session::running_handlers`]).
    pub fn served_calls(&self) -> usize {
        self.shared.served().len()
    }

    /// Handler tasks of this session that have not finished yet.
    pub fn running_handlers(&self) -> usize {
        self.shared.live_handlers.load(Ordering::Acquire)
    }

    /// Number of calls this side has open towards the peer.
    pub fn open_calls(&self) -> usize {
        self.shared.calls().len()
    }

    /// Frames read from the peer so far, of any kind. A caller sharing the session among many
    /// users can tell by it whether the peer sent anything at all while its own call waited
    /// (a silent peer is likely gone; one that answered others is alive and the failure was
    /// the call's own).
    pub fn frames_received(&self) -> u64 {
        self.shared.frames_received.load(Ordering::Acquire)
    }

    /// Receive bytes this session holds reserved (call windows, unary payloads, pooled
    /// buffers).
    pub fn recv_bytes_held(&self) -> usize {
        self.shared.recv.held()
    }
}
