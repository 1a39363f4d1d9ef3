//! One session: its shared state (call tables, outbox, budgets, buffer pool) and its three
//! tasks — the sealer (encrypts queued frames in batches), the writer (writes sealed batches,
//! each write bounded by the stall timeout) and the reader (admits, reassembles and dispatches
//! frames, and runs the idle and stall timers). Each session keeps its own call tables, so a
//! frame can only ever reach a call that was opened on the same authenticated session.
//!
//! Teardown: [`SessionShared::close`] fires the session token; every task selects on it and
//! ends, dropping its half of the socket (the writer sets `SO_LINGER 0` first when bytes were
//! left unwritten, so the kernel frees the socket at once), the outbox is emptied and its budget
//! returned, every call fails with `Disconnected` and every handler's token fires. Nothing a
//! peer does — including never reading — keeps a task or a buffer of a closed session alive.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::budget::{Reclaim, RecvBudget, RecvWindow, Reservation, SendBudget, SendWindow};
pub(crate) use super::outbox::SendCharge;
use super::outbox::{ChunkAddress, OutItem, Outbox, Outgoing, PushError};
use super::raw::{RawBytes, SharedFrame};
use super::server::{CallControl, ReqEvent, Router};
use super::{Config, Metrics, RpcError};
use crate::frame::{ErrorKind, Frame, FrameError};
use crate::handshake::{HandshakeError, PeerIdentity};
use crate::transport::{FrameReceiver, FrameSender, SealedBatch, TransportError};

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

/// A received frame kept whole, with the offset where its payload starts (saves a copy), and
/// the receive bytes it holds when it was charged on its own (unary requests and responses).
#[derive(Debug)]
pub(crate) struct Payload {
    frame: Vec<u8>,
    start: usize,
    reservation: Option<Reservation>,
}

impl Payload {
    /// `payload` must be the tail of `frame` (true for every payload-carrying frame).
    pub(crate) fn tail_of(frame: Vec<u8>, payload_len: usize) -> Self {
        let start = frame.len().saturating_sub(payload_len);
        Payload {
            frame,
            start,
            reservation: None,
        }
    }

    pub(crate) fn with_reservation(mut self, reservation: Option<Reservation>) -> Self {
        self.reservation = reservation;
        self
    }

    /// The payload without its reservation, and the reservation.
    pub(crate) fn split_reservation(mut self) -> (Self, Option<Reservation>) {
        let reservation = self.reservation.take();
        (self, reservation)
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        self.frame.get(self.start..).unwrap_or_default()
    }

    /// The whole frame buffer and the payload's offset in it.
    pub(crate) fn into_parts(self) -> (Vec<u8>, usize) {
        (self.frame, self.start)
    }

    /// Hands the buffer back to the session's pool.
    pub(crate) fn recycle(self, shared: &SessionShared) {
        shared.recycle(self.frame);
    }
}

/// The messages of a received chunk frame (already checked by the decoder), taken in order.
/// The frame's charge goes back to its window once the last one is taken.
#[derive(Debug)]
pub(crate) struct MessageList {
    /// The frame; `start` is where the next message's length prefix begins.
    payload: Payload,
    /// The frame, once shared by the raw messages taken from it (`payload.frame` is then empty).
    frame: Option<Arc<SharedFrame>>,
    left: u32,
}

/// The next message of a [`MessageList`].
pub(crate) enum NextMessage<'a> {
    /// A message before the last: its bytes in the frame.
    Inner(&'a [u8]),
    /// A message before the last, as a view of the shared frame.
    Shared(RawBytes),
    /// The last message: the frame, its offset in it, and the frame's charge.
    Last(Payload, usize),
    /// The last message as a view of the shared frame, and the frame's charge.
    LastShared(RawBytes, usize),
    /// The list did not hold another message (cannot happen for a list the decoder checked).
    Malformed(usize),
}

impl MessageList {
    /// `payload` holds the message list of a chunk frame that holds `count` messages.
    pub(crate) fn new(payload: Payload, count: u32) -> Self {
        MessageList {
            payload,
            frame: None,
            left: count,
        }
    }

    /// Takes the next message; with `share`, a frame of several messages is shared by them as
    /// [`RawBytes`] views (see [`NextMessage`]). After a `Last…` or `Malformed` the list is
    /// empty and must not be used again (the caller drops it).
    pub(crate) fn next(&mut self, share: Option<&Arc<SessionShared>>) -> NextMessage<'_> {
        let charge = crate::frame::charge(match &self.frame {
            Some(frame) => frame.bytes().len(),
            None => self.payload.frame.len(),
        });
        let frame: &[u8] = match &self.frame {
            Some(frame) => frame.bytes(),
            None => &self.payload.frame,
        };
        let start = self.payload.start;
        let Some((message, tail)) =
            crate::frame::split_message(frame.get(start..).unwrap_or_default())
        else {
            self.left = 0;
            return NextMessage::Malformed(charge);
        };
        let at = start.saturating_add(crate::frame::MESSAGE_LEN_PREFIX);
        let end = at.saturating_add(message.len());
        let last = self.left <= 1 || tail.is_empty();
        self.left = if last { 0 } else { self.left.saturating_sub(1) };
        self.payload.start = end;
        if let Some(shared) = share
            && (self.frame.is_some() || !last)
        {
            let frame = match &self.frame {
                Some(frame) => frame.clone(),
                None => {
                    let frame = SharedFrame::new(std::mem::take(&mut self.payload.frame), shared);
                    self.frame = Some(frame.clone());
                    frame
                }
            };
            let raw = RawBytes::in_frame(frame, at, end);
            return if last {
                NextMessage::LastShared(raw, charge)
            } else {
                NextMessage::Shared(raw)
            };
        }
        if last {
            let payload = Payload {
                frame: std::mem::take(&mut self.payload.frame),
                start: at,
                reservation: None,
            };
            return NextMessage::Last(payload, charge);
        }
        NextMessage::Inner(self.payload.frame.get(at..end).unwrap_or_default())
    }

    /// Messages not yet taken.
    pub(crate) fn left(&self) -> usize {
        self.left as usize
    }
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

/// Recycled large buffers (avoids a fresh, page-faulting allocation per message); their
/// capacity is reserved from the session's receive budget, so pooling never exceeds it, and
/// given back whenever a window or message needs those bytes ([`Reclaim`]).
#[derive(Debug, Default)]
struct BufferPool {
    buffers: Vec<(Vec<u8>, Reservation)>,
    bytes: usize,
}

/// Which of the pooled buffers (by capacity) suits a frame of `len` bytes: one that holds it
/// without growing and holds at most twice `len`. (A smaller one would be replaced anyway:
/// the receiver allocates a large frame's buffer afresh rather than grow one.)
fn fitting(mut capacities: impl Iterator<Item = usize>, len: usize) -> Option<usize> {
    let most = len.saturating_mul(2);
    capacities.position(|capacity| (len..=most).contains(&capacity))
}

impl BufferPool {
    /// The pooled buffer that [`fits`](fitting) a frame of `len` bytes, if one does. On a miss
    /// the largest pooled buffer is dropped (its reservation with it), so a pool that an earlier
    /// frame size filled makes room for the current size instead of missing until it idles.
    fn take_fitting(&mut self, len: usize) -> Option<Vec<u8>> {
        let hit = fitting(self.buffers.iter().map(|(b, _)| b.capacity()), len);
        let largest = || {
            let by_capacity = self.buffers.iter().enumerate();
            by_capacity
                .max_by_key(|(_, (b, _))| b.capacity())
                .map(|(at, _)| at)
        };
        let at = hit.or_else(largest)?;
        let (buf, _reservation) = self.buffers.swap_remove(at);
        self.bytes = self.bytes.saturating_sub(buf.capacity());
        // On a miss `buf` is the largest buffer: dropped here, with its reservation.
        hit.map(|_| buf)
    }
}

/// A session's [`BufferPool`], shared with the endpoint's budgets so they can take it back.
#[derive(Debug, Default)]
pub(crate) struct SparePool(Mutex<BufferPool>);

impl Reclaim for SparePool {
    fn reclaim(&self) -> usize {
        let drained = std::mem::take(&mut *lock(&self.0));
        drained.bytes
    }
}

/// Buffers below this capacity are not worth pooling.
pub(crate) const POOL_MIN_CAPACITY: usize = 16 * 1024;
/// Most bytes of buffer capacity kept per session.
const POOL_MAX_BYTES: usize = 32 * 1024 * 1024;
/// Most buffers kept per session.
const POOL_MAX_BUFFERS: usize = 32;

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

    /// A cleared buffer, recycled when one is available.
    pub(crate) fn take_buffer(&self, min_capacity: usize) -> Vec<u8> {
        if min_capacity >= POOL_MIN_CAPACITY {
            let mut pool = lock(&self.buffers.0);
            if let Some((mut buf, _reservation)) = pool.buffers.pop() {
                pool.bytes = pool.bytes.saturating_sub(buf.capacity());
                buf.clear();
                return buf;
            }
        }
        Vec::new()
    }

    /// A recycled buffer for a frame of `len` bytes, as it was left (contents and length), for
    /// the receiver to overwrite without zeroing it first; empty when no pooled buffer fits
    /// ([`fitting`]; the largest pooled buffer is then dropped, [`BufferPool::take_fitting`]).
    /// A frame's buffer may outlive its window and budget charge (a `RawBytes` or `Encoded`
    /// message its handler queues), so what a frame holds stays within twice its own size,
    /// whatever larger buffers earlier frames left in the pool.
    pub(crate) fn take_receive_buffer(&self, len: usize) -> Vec<u8> {
        lock(&self.buffers.0).take_fitting(len).unwrap_or_default()
    }

    /// Returns a large buffer to the pool (dropped when the pool or the budget is full).
    pub(crate) fn recycle(&self, buf: Vec<u8>) {
        let capacity = buf.capacity();
        if !(POOL_MIN_CAPACITY..=2 * crate::frame::MAX_FRAME_LEN).contains(&capacity)
            || self.is_closed()
        {
            return;
        }
        let mut pool = lock(&self.buffers.0);
        if pool.buffers.len() >= POOL_MAX_BUFFERS
            || pool.bytes.saturating_add(capacity) > POOL_MAX_BYTES
        {
            return;
        }
        if let Some(reservation) = self.recv.reserve(capacity, capacity) {
            pool.bytes = pool.bytes.saturating_add(capacity);
            pool.buffers.push((buf, reservation));
        }
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

/// Starts the three tasks of an established session.
pub(crate) fn spawn_tasks(
    shared: &Arc<SessionShared>,
    sender: FrameSender<OwnedWriteHalf>,
    receiver: FrameReceiver<OwnedReadHalf>,
) {
    let (sealer, write) = sender.into_parts();
    // Two sealed batches in flight: one being written, one ready.
    let (batch_tx, batch_rx) = mpsc::channel(2);
    Metrics::gauge_up(&shared.metrics.open_sessions);
    shared.tasks.store(3, Ordering::Release);
    for _ in 0..3 {
        Metrics::gauge_up(&shared.metrics.session_tasks);
    }
    tokio::spawn(seal_loop(shared.clone(), sealer, batch_tx));
    tokio::spawn(write_loop(shared.clone(), write, batch_rx));
    tokio::spawn(super::dispatch::read_loop(shared.clone(), receiver));
}

/// Counts a session task down when it ends, however it ends.
pub(crate) struct TaskGuard<'a>(pub(crate) &'a SessionShared);

impl Drop for TaskGuard<'_> {
    fn drop(&mut self) {
        Metrics::gauge_down(&self.0.metrics.session_tasks);
        if self.0.tasks.fetch_sub(1, Ordering::AcqRel) <= 1 {
            self.0.tasks_done.cancel();
        }
    }
}

/// A sealed batch and the send budget its data frames hold.
struct Batch {
    sealed: SealedBatch,
    charges: Vec<SendCharge>,
}

/// Seals queued frames in batches and hands them to the writer task, so encryption of one
/// batch overlaps the socket write of the previous one.
async fn seal_loop(
    shared: Arc<SessionShared>,
    mut sealer: FrameSender<()>,
    batches: mpsc::Sender<Batch>,
) {
    let _task = TaskGuard(&shared);
    loop {
        let frames = loop {
            if shared.is_closed() {
                return;
            }
            if let Some(frames) = shared.outbox.take_batch() {
                break frames;
            }
            tokio::select! {
                biased;
                _ = shared.closed.cancelled() => return,
                _ = shared.outbox.ready() => {}
            }
        };
        let mut charges = Vec::new();
        let mut result = Ok(());
        for item in frames {
            match item {
                OutItem::Stream {
                    stream,
                    charges: mut item_charges,
                    ..
                } => {
                    charges.append(&mut item_charges);
                    if result.is_ok() {
                        result = sealer.queue_stream_buf(stream);
                    }
                    shared.outbox.return_charge_list(item_charges);
                }
                OutItem::Owned { frame, charge } => {
                    if let Some(charge) = charge {
                        charges.push(charge);
                    }
                    if result.is_ok() {
                        result = sealer.queue_owned_frame(frame);
                    }
                }
            }
        }
        for buf in sealer.take_spent() {
            shared.recycle(buf);
        }
        let sealed = result.and_then(|()| sealer.take_sealed());
        if let Some(unused) = sealer.reuse_wire(shared.take_buffer(POOL_MIN_CAPACITY)) {
            shared.recycle(unused);
        }
        let sealed = match sealed {
            Ok(sealed) => sealed,
            Err(e) => {
                for charge in charges {
                    shared.release_send(charge);
                }
                shared.close(e.into());
                return;
            }
        };
        let batch = Batch { sealed, charges };
        let permit = tokio::select! {
            biased;
            _ = shared.closed.cancelled() => None,
            permit = batches.reserve() => permit.ok(),
        };
        match permit {
            Some(permit) => permit.send(batch),
            None => {
                for charge in batch.charges {
                    shared.release_send(charge);
                }
                return;
            }
        }
    }
}

/// Writes sealed batches in order, each write bounded by the stall timeout; returns send
/// budget as bytes go out. Ends as soon as the session closes, unwritten bytes and all.
async fn write_loop(
    shared: Arc<SessionShared>,
    mut writer: OwnedWriteHalf,
    mut batches: mpsc::Receiver<Batch>,
) {
    let _task = TaskGuard(&shared);
    let stall = shared.config.stall_timeout;
    let mut clean = true;
    loop {
        let batch = tokio::select! {
            biased;
            _ = shared.closed.cancelled() => None,
            batch = batches.recv() => batch,
        };
        let Some(Batch { sealed, charges }) = batch else {
            break;
        };
        let written = tokio::select! {
            biased;
            _ = shared.closed.cancelled() => None,
            written = sealed.write_to_within(&mut writer, Some(stall)) => Some(written),
        };
        for charge in charges {
            shared.release_send(charge);
        }
        match written {
            Some(Ok(spent)) => {
                for buf in spent.frames {
                    shared.recycle(buf);
                }
                for buf in spent.wire {
                    shared.outbox.return_stream_buffer(buf);
                }
            }
            Some(Err(e)) => {
                clean = false;
                if let TransportError::WriteStalled(after) = e {
                    Metrics::bump(&shared.metrics.stalled_closes);
                    shared.close(SessionError::Stalled(after));
                } else {
                    Metrics::bump(&shared.metrics.transport_errors);
                    shared.close(e.into());
                }
                break;
            }
            None => {
                clean = false;
                break;
            }
        }
    }
    // Batches still queued are dropped with their budget returned.
    batches.close();
    while let Ok(batch) = batches.try_recv() {
        clean = false;
        for charge in batch.charges {
            shared.release_send(charge);
        }
    }
    if !clean {
        // Unwritten bytes: reset instead of leaving them in the kernel for a peer that does
        // not read.
        let _ = socket2::SockRef::from(writer.as_ref()).set_linger(Some(Duration::ZERO));
    } else {
        let _ = tokio::time::timeout(stall, tokio::io::AsyncWriteExt::shutdown(&mut writer)).await;
    }
}

/// Liveness bookkeeping for the reader: when bytes last arrived, and when the session last
/// had anything going on.
pub(crate) struct Liveness {
    last_bytes: u64,
    last_bytes_at: Instant,
    last_busy_at: Instant,
    slab_released: bool,
}

impl Liveness {
    pub(crate) fn new() -> Self {
        let now = Instant::now();
        Liveness {
            last_bytes: 0,
            last_bytes_at: now,
            last_busy_at: now,
            slab_released: false,
        }
    }

    /// The tick interval for a config: a fraction of the shortest timeout, within 10 ms..1 s.
    pub(crate) fn tick(config: &Config) -> Duration {
        let shortest = config
            .idle_timeout
            .map_or(config.stall_timeout, |idle| idle.min(config.stall_timeout));
        (shortest / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
    }

    /// Runs on every tick: ends a stalled or idle session, and releases idle buffers.
    pub(crate) fn check(
        &mut self,
        shared: &SessionShared,
        receiver: &mut FrameReceiver<OwnedReadHalf>,
    ) {
        let now = Instant::now();
        let bytes = receiver.bytes_read();
        if bytes != self.last_bytes {
            self.last_bytes = bytes;
            self.last_bytes_at = now;
            self.slab_released = false;
        }
        if !shared.is_quiet() {
            self.last_busy_at = now;
        }
        let silent = now.saturating_duration_since(self.last_bytes_at);
        let stall = shared.config.stall_timeout;
        if receiver.is_mid_frame() && silent >= stall {
            Metrics::bump(&shared.metrics.stalled_closes);
            shared.close(SessionError::Stalled(stall));
            return;
        }
        if let Some(idle) = shared.config.idle_timeout {
            let quiet = now.saturating_duration_since(self.last_busy_at).min(silent);
            if quiet >= idle {
                Metrics::bump(&shared.metrics.idle_closes);
                shared.close(SessionError::Idle(idle));
                return;
            }
        }
        // Nothing arrived for a whole tick: an idle session holds no receive buffers.
        if !self.slab_released && silent >= Self::tick(&shared.config) && !receiver.is_mid_frame() {
            self.slab_released = receiver.release_idle_slab();
            shared.drain_pool();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{BufferPool, MessageList, NextMessage, Payload, SessionShared, fitting};
    use crate::rpc::budget::{NodeBudgets, RecvBudget};
    use crate::rpc::raw::{RawBytes, decode_raw};
    use crate::rpc::{Config, Metrics};
    use std::sync::Arc;

    /// A session's shared state without a socket.
    fn shared() -> Arc<SessionShared> {
        let metrics = Arc::new(Metrics::default());
        let node = Arc::new(NodeBudgets::new(
            (1 << 20, 1 << 20),
            (1 << 20, 1 << 20),
            metrics.clone(),
        ));
        SessionShared::new(
            crate::handshake::PeerIdentity::for_harness(),
            Arc::new(Config::default()),
            metrics,
            Arc::new(crate::rpc::Router::new()),
            node,
        )
    }

    /// A received chunk frame of `messages` (postcard byte strings), in a 16 KiB buffer (the
    /// pool keeps buffers from that size).
    fn chunk_frame(messages: &[&[u8]]) -> (Vec<u8>, usize, u32) {
        let encoded: Vec<Vec<u8>> = messages
            .iter()
            .map(|m| postcard::to_stdvec(&RawBytes::from(*m)).unwrap())
            .collect();
        let slices: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
        let mut frame = Vec::with_capacity(16 * 1024);
        frame.extend_from_slice(&crate::frame::chunk_head(true, 1, 0, 0)[..18]);
        let head = frame.len();
        crate::frame::encode_messages(&slices, &mut frame);
        let list_len = frame.len() - head;
        (frame, list_len, messages.len() as u32)
    }

    /// Raw messages of a frame that carried several are views of it (no copy); the frame
    /// goes back to the pool only when the last view is dropped, and its charge is handed out
    /// with the last message. Typed takes of one frame read the same messages.
    #[test]
    fn raw_messages_of_one_frame_share_it_until_the_last_view_is_dropped() {
        let shared = shared();
        let messages: [&[u8]; 3] = [b"first", b"", b"third one"];
        let (frame, list_len, count) = chunk_frame(&messages);
        let charge = crate::frame::charge(frame.len());
        let mut list = MessageList::new(Payload::tail_of(frame, list_len), count);
        let mut views = Vec::new();
        for (i, want) in messages.iter().enumerate() {
            let (raw, got_charge) = match list.next(Some(&shared)) {
                NextMessage::Shared(raw) => (raw, None),
                NextMessage::LastShared(raw, charge) => (raw, Some(charge)),
                _ => panic!("message {i} is not a view of the shared frame"),
            };
            assert_eq!(got_charge, (i == 2).then_some(charge), "message {i}");
            let bytes: RawBytes = decode_raw(raw).unwrap();
            assert_eq!(bytes.as_slice(), *want);
            views.push(bytes);
        }
        assert_eq!(list.left(), 0);
        drop(list);
        let last = views.pop().unwrap();
        assert_eq!(last.clone().into_vec(), b"third one");
        drop(views);
        assert_eq!(shared.recv.held(), 0, "recycled while a view is alive");
        drop(last);
        assert_eq!(
            shared.recv.held(),
            16 * 1024,
            "the frame went back to the pool"
        );

        // Without sharing, messages before the last are read in place and the last takes the
        // frame over.
        let (frame, list_len, count) = chunk_frame(&messages);
        let mut list = MessageList::new(Payload::tail_of(frame, list_len), count);
        let mut got = Vec::new();
        for _ in 0..3 {
            match list.next(None) {
                NextMessage::Inner(bytes) => {
                    got.push(postcard::from_bytes::<Vec<u8>>(bytes).unwrap());
                }
                NextMessage::Last(payload, c) => {
                    assert_eq!(c, charge);
                    got.push(postcard::from_bytes::<Vec<u8>>(payload.bytes()).unwrap());
                }
                _ => panic!("unexpected take"),
            }
        }
        assert_eq!(got, messages.map(<[u8]>::to_vec));

        // A single-message frame is taken over whole even when sharing is offered.
        let (frame, list_len, count) = chunk_frame(&[b"alone"]);
        let mut list = MessageList::new(Payload::tail_of(frame, list_len), count);
        assert!(matches!(list.next(Some(&shared)), NextMessage::Last(..)));
    }

    /// A miss drops the largest pooled buffer and gives its reserved bytes back; a hit takes
    /// the fitting buffer.
    #[test]
    fn a_pool_that_misses_drops_its_largest_buffer() {
        let mib = 1 << 20;
        let node = Arc::new(NodeBudgets::new(
            (64 * mib, 64 * mib),
            (64 * mib, 64 * mib),
            Arc::new(crate::rpc::Metrics::default()),
        ));
        let peer = node.peer(crate::handshake::PeerIdentity::for_harness().node_id());
        let budget = RecvBudget::new(64 * mib, peer, node);
        let mut pool = BufferPool::default();
        for capacity in [16 * mib, 2 * mib, 16 * mib] {
            let reservation = budget.reserve(capacity, capacity).unwrap();
            pool.buffers
                .push((Vec::with_capacity(capacity), reservation));
            pool.bytes += capacity;
        }
        assert_eq!(budget.held(), 34 * mib);

        assert!(pool.take_fitting(mib / 2).is_none());
        assert_eq!((pool.buffers.len(), pool.bytes), (2, 18 * mib));
        assert_eq!(budget.held(), 18 * mib);

        let buf = pool.take_fitting(mib + mib / 2).unwrap();
        assert!(buf.capacity() >= 2 * mib && buf.capacity() < 3 * mib);
        assert_eq!((pool.buffers.len(), pool.bytes), (1, 16 * mib));
        assert_eq!(budget.held(), 16 * mib);

        assert!(pool.take_fitting(mib / 2).is_none());
        assert!(pool.take_fitting(mib / 2).is_none());
        assert_eq!((pool.buffers.len(), pool.bytes, budget.held()), (0, 0, 0));
    }

    /// A frame gets a pooled buffer that holds it and at most twice its size, never a larger
    /// one left by a bigger frame (a queued message would hold all of it) nor a smaller one.
    #[test]
    fn a_frame_takes_only_a_pooled_buffer_of_about_its_size() {
        let mib = 1 << 20;
        let pool = [32 * mib, mib / 2, mib + 100, 2 * mib];
        assert_eq!(fitting(pool.into_iter(), mib), Some(2));
        assert_eq!(fitting(pool.into_iter(), mib + 100), Some(2));
        assert_eq!(fitting(pool.into_iter(), mib + 101), Some(3));
        assert_eq!(fitting([32 * mib, mib / 2].into_iter(), mib), None);
        assert_eq!(fitting([32 * mib].into_iter(), 16 * mib), Some(0));
        assert_eq!(fitting(std::iter::empty(), mib), None);
    }
}
