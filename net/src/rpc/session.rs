//! Sessions: the endpoint that dials and accepts, the per-session writer and reader tasks, and
//! the dispatcher that routes every frame by (session, call_id) to the per-call channel of the
//! call it belongs to. Each session keeps its own call tables, so a frame can only ever reach a
//! call that was opened on the same authenticated session.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::server::{CallControl, ReqEvent, Router};
use super::{Config, MAX_WINDOW, Metrics, RpcError};
use crate::frame::{ErrorKind, Frame, FrameError};
use crate::handshake::{self, HandshakeError, PeerIdentity};
use crate::identity::Identity;
use crate::transport::{self, FrameReceiver, FrameSender, SealedBatch, TransportError};

/// Why a session ended (or could not start).
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The Noise handshake or identity proof failed.
    #[error("handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    /// The encrypted transport failed (includes oversized frames).
    #[error("transport failed: {0}")]
    Transport(#[from] TransportError),
    /// The peer sent a frame that does not decode.
    #[error("malformed frame: {0}")]
    Malformed(#[from] FrameError),
    /// The peer sent more messages than it had credit for.
    #[error("peer exceeded its credit window on call {call_id:#018x}")]
    CreditExceeded { call_id: u64 },
    /// The peer granted an absurd window.
    #[error("peer granted more than the maximum window on call {call_id:#018x}")]
    WindowOverflow { call_id: u64 },
    /// The peer stopped reading while we had too many frames queued for it.
    #[error("peer is not reading; {0} frames queued")]
    SendQueueOverflow(usize),
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

/// Caller-side state of one open call, as seen by the dispatcher.
pub(crate) struct CallerSlot {
    pub(crate) events: mpsc::Sender<CallEvent>,
    pub(crate) shared: Arc<CallShared>,
    pub(crate) next_seq: u64,
}

/// State a caller's call handle shares with the dispatcher.
#[derive(Debug)]
pub(crate) struct CallShared {
    /// Credits for REQUEST_CHUNK, granted by the server.
    pub(crate) request_credit: Semaphore,
    /// Terminal error set when the dispatcher ends the call.
    pub(crate) terminal: OnceLock<RpcError>,
}

/// A received frame kept whole, with the offset where its payload starts (saves a copy).
#[derive(Debug)]
pub(crate) struct Payload {
    frame: Vec<u8>,
    start: usize,
}

impl Payload {
    /// `payload` must be the tail of `frame` (true for every payload-carrying frame).
    fn tail_of(frame: Vec<u8>, payload_len: usize) -> Self {
        let start = frame.len().saturating_sub(payload_len);
        Payload { frame, start }
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

/// What the dispatcher hands a caller.
#[derive(Debug)]
pub(crate) enum CallEvent {
    Response(Payload),
    Chunk(Payload),
    End,
    Error(RpcError),
}

/// Server-side state of one open call.
pub(crate) struct ServerCall {
    pub(crate) requests: Option<mpsc::Sender<ReqEvent>>,
    pub(crate) next_seq: u64,
    pub(crate) response_credit: Arc<Semaphore>,
    pub(crate) control: Arc<CallControl>,
}

/// State shared by a session's tasks and all its call handles.
pub(crate) struct SessionShared {
    pub(crate) peer: PeerIdentity,
    pub(crate) config: Arc<Config>,
    pub(crate) metrics: Arc<Metrics>,
    out: mpsc::UnboundedSender<Vec<u8>>,
    queued: AtomicUsize,
    pub(crate) calls: Mutex<HashMap<u64, CallerSlot>>,
    pub(crate) served: Mutex<HashMap<u64, ServerCall>>,
    pub(crate) closed: CancellationToken,
    end: OnceLock<Arc<SessionError>>,
    router: Arc<Router>,
    /// Recycled large frame buffers (avoids a fresh, page-faulting allocation per message).
    buffers: Mutex<Vec<Vec<u8>>>,
}

/// Buffers below this capacity are not worth pooling.
const POOL_MIN_CAPACITY: usize = 16 * 1024;
/// Most buffers kept per session.
const POOL_MAX_BUFFERS: usize = 16;

impl std::fmt::Debug for SessionShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionShared")
            .field("peer", &self.peer.node_id)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means another task panicked mid-update of a map of channels; the
    // maps stay structurally valid, so keep going.
    m.lock().unwrap_or_else(|poison| poison.into_inner())
}

impl SessionShared {
    pub(crate) fn calls(&self) -> MutexGuard<'_, HashMap<u64, CallerSlot>> {
        lock(&self.calls)
    }

    pub(crate) fn served(&self) -> MutexGuard<'_, HashMap<u64, ServerCall>> {
        lock(&self.served)
    }

    /// A cleared buffer, recycled when one is available.
    pub(crate) fn take_buffer(&self, min_capacity: usize) -> Vec<u8> {
        if min_capacity >= POOL_MIN_CAPACITY
            && let Some(mut buf) = lock(&self.buffers).pop()
        {
            buf.clear();
            return buf;
        }
        Vec::new()
    }

    /// A recycled buffer as it was left (contents and length), for the receiver to overwrite
    /// without zeroing it first; empty when none is pooled.
    pub(crate) fn take_receive_buffer(&self) -> Vec<u8> {
        lock(&self.buffers).pop().unwrap_or_default()
    }

    /// Returns a large buffer to the pool.
    pub(crate) fn recycle(&self, buf: Vec<u8>) {
        if buf.capacity() >= POOL_MIN_CAPACITY && buf.capacity() <= 2 * crate::frame::MAX_FRAME_LEN
        {
            let mut pool = lock(&self.buffers);
            if pool.len() < POOL_MAX_BUFFERS {
                pool.push(buf);
            }
        }
    }

    /// Queues a frame for the writer task. Frames for a closed session are dropped.
    pub(crate) fn send_frame(&self, frame: &Frame<'_>) -> Result<(), RpcError> {
        let bytes = frame
            .to_vec()
            .map_err(|e| RpcError::new(ErrorKind::InvalidArgument, format!("frame: {e}")))?;
        self.send_encoded(bytes)
    }

    /// Encodes a message straight into a chunk frame (one copy less than `send_frame`).
    pub(crate) fn send_chunk<T: serde::Serialize>(
        &self,
        request: bool,
        call_id: u64,
        seq: u64,
        item: &T,
        size_hint: &mut usize,
    ) -> Result<(), RpcError> {
        let want = crate::frame::CHUNK_PAYLOAD_OFFSET.saturating_add(*size_hint);
        let mut buf = self.take_buffer(want);
        buf.reserve(want);
        crate::frame::begin_chunk(&mut buf, request, call_id, seq);
        let buf = postcard::to_extend(item, buf)
            .map_err(|e| RpcError::new(ErrorKind::Decode, format!("encode: {e}")))?;
        crate::frame::finish_chunk(&buf)
            .map_err(|e| RpcError::new(ErrorKind::InvalidArgument, format!("frame: {e}")))?;
        *size_hint = buf.len().saturating_sub(crate::frame::CHUNK_PAYLOAD_OFFSET);
        self.send_encoded(buf)
    }

    fn send_encoded(&self, bytes: Vec<u8>) -> Result<(), RpcError> {
        let queued = self.queued.fetch_add(1, Ordering::Relaxed);
        if queued > self.config.max_queued_frames {
            self.close(SessionError::SendQueueOverflow(queued));
            return Err(RpcError::disconnected());
        }
        self.out.send(bytes).map_err(|_| RpcError::disconnected())
    }

    /// Best-effort error reply for a call.
    pub(crate) fn send_error(&self, call_id: u64, error: &RpcError) {
        let mut message = error.message.as_str();
        while message.len() > crate::frame::MAX_ERROR_MESSAGE_LEN {
            let mut cut = crate::frame::MAX_ERROR_MESSAGE_LEN;
            while !message.is_char_boundary(cut) {
                cut = cut.saturating_sub(1);
            }
            message = message.get(..cut).unwrap_or_default();
        }
        let _ = self.send_frame(&Frame::ResponseError {
            call_id,
            kind: error.kind,
            message,
        });
    }

    /// Ends the session with `error` (first reason wins) and fails every open call.
    pub(crate) fn close(&self, error: SessionError) {
        if self.end.set(Arc::new(error)).is_ok() {
            if let Some(end) = self.end.get() {
                tracing::debug!(peer = %self.peer.node_id, reason = %end, "nRPC session closed");
            }
            Metrics::bump(&self.metrics.sessions_closed);
        }
        self.closed.cancel();
        let calls: Vec<CallerSlot> = self.calls().drain().map(|(_, slot)| slot).collect();
        for slot in calls {
            let _ = slot.shared.terminal.set(RpcError::disconnected());
            slot.shared.request_credit.close();
        }
        let served: Vec<ServerCall> = self.served().drain().map(|(_, call)| call).collect();
        for call in served {
            call.control.cancel(ErrorKind::Disconnected);
        }
    }
}

/// An identity plus the handlers it serves; dials and accepts sessions.
#[derive(Debug, Clone)]
pub struct Endpoint {
    identity: Identity,
    router: Arc<Router>,
    config: Arc<Config>,
    metrics: Arc<Metrics>,
}

impl Endpoint {
    /// An endpoint serving `router` (use `Router::new()` for a pure client).
    pub fn new(identity: Identity, router: Router, config: Config) -> Self {
        Endpoint {
            identity,
            router: Arc::new(router),
            config: Arc::new(config),
            metrics: Arc::new(Metrics::default()),
        }
    }

    /// This endpoint's counters.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// This endpoint's identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Dials `addr` and runs the initiator handshake.
    pub async fn connect(&self, addr: SocketAddr) -> Result<Session, SessionError> {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(SessionError::Connect)?;
        set_socket_options(&stream, &self.config);
        let established =
            handshake::initiate(&mut stream, &self.identity, self.config.handshake_timeout).await;
        self.start(stream, established)
    }

    /// Runs the responder handshake on an accepted stream.
    pub async fn accept_stream(&self, mut stream: TcpStream) -> Result<Session, SessionError> {
        set_socket_options(&stream, &self.config);
        let established =
            handshake::respond(&mut stream, &self.identity, self.config.handshake_timeout).await;
        self.start(stream, established)
    }

    /// Accepts one connection from `listener` and handshakes it.
    pub async fn accept(
        &self,
        listener: &tokio::net::TcpListener,
    ) -> Result<Session, SessionError> {
        let (stream, _) = listener.accept().await.map_err(SessionError::Connect)?;
        self.accept_stream(stream).await
    }

    /// Accept loop: every connection is handshaken and served on its own task until `stop`
    /// fires. Failed handshakes are counted and logged; they never stop the loop.
    /// At most `config.max_sessions` connections are held at once; more are closed unhandshaken.
    pub async fn serve(&self, listener: tokio::net::TcpListener, stop: CancellationToken) {
        let slots = Arc::new(tokio::sync::Semaphore::new(self.config.max_sessions));
        loop {
            let accepted = tokio::select! {
                _ = stop.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            let Ok((stream, addr)) = accepted else {
                continue;
            };
            let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                Metrics::bump(&self.metrics.sessions_refused);
                tracing::info!(%addr, "nRPC session refused: max_sessions open");
                drop(stream);
                continue;
            };
            let endpoint = self.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                // Held until the session ends.
                let _slot = slot;
                match endpoint.accept_stream(stream).await {
                    Ok(session) => {
                        tokio::select! {
                            _ = stop.cancelled() => session.close(),
                            _ = session.closed() => {}
                        }
                    }
                    Err(e) => tracing::info!(%addr, error = %e, "nRPC session refused"),
                }
            });
        }
    }

    fn start(
        &self,
        stream: TcpStream,
        established: Result<handshake::Established, HandshakeError>,
    ) -> Result<Session, SessionError> {
        let established = match established {
            Ok(established) => established,
            Err(e) => {
                Metrics::bump(&self.metrics.handshake_failures);
                tracing::info!(error = %e, "nRPC handshake failed");
                return Err(e.into());
            }
        };
        Metrics::bump(&self.metrics.sessions_opened);
        let (read, write) = stream.into_split();
        let (sender, receiver) = transport::split(established.transport, read, write);
        let (out, out_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(SessionShared {
            peer: established.peer,
            config: self.config.clone(),
            metrics: self.metrics.clone(),
            out,
            queued: AtomicUsize::new(0),
            calls: Mutex::new(HashMap::new()),
            served: Mutex::new(HashMap::new()),
            closed: CancellationToken::new(),
            end: OnceLock::new(),
            router: self.router.clone(),
            buffers: Mutex::new(Vec::new()),
        });
        let (sealer, write) = sender.into_parts();
        // Two sealed batches in flight: one being written, one ready.
        let (batch_tx, batch_rx) = mpsc::channel(2);
        tokio::spawn(seal_loop(shared.clone(), sealer, out_rx, batch_tx));
        tokio::spawn(write_loop(shared.clone(), write, batch_rx));
        tokio::spawn(read_loop(shared.clone(), receiver));
        Ok(Session { shared })
    }
}

/// Socket options every session gets: no Nagle delay, and the configured congestion control.
pub(crate) fn set_socket_options(stream: &TcpStream, config: &Config) {
    let _ = stream.set_nodelay(true);
    if let Some(name) = &config.tcp_congestion
        && let Err(e) = socket2::SockRef::from(stream).set_tcp_congestion(name.as_bytes())
    {
        tracing::warn!(congestion = %name, error = %e, "TCP congestion control not set");
    }
}

/// One authenticated encrypted session; cheap to clone. Calls can be made in both directions.
/// The session runs until [`Session::close`], the peer disconnects, or the peer breaks the
/// protocol; dropping handles does not end it (call handles keep working on their own).
#[derive(Clone)]
pub struct Session {
    pub(crate) shared: Arc<SessionShared>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("peer", &self.shared.peer.node_id)
            .finish()
    }
}

impl Session {
    /// The authenticated peer (the only identity any check may use).
    pub fn peer(&self) -> PeerIdentity {
        self.shared.peer
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
        self.shared.end.get().cloned()
    }

    /// Number of calls this side currently serves for the peer.
    pub fn served_calls(&self) -> usize {
        self.shared.served().len()
    }

    /// Number of calls this side has open towards the peer.
    pub fn open_calls(&self) -> usize {
        self.shared.calls().len()
    }
}

/// Seals frames from the queue, batching whatever is ready, and hands the sealed batches to the
/// writer task, so encryption of one batch overlaps the socket write of the previous one.
async fn seal_loop(
    shared: Arc<SessionShared>,
    mut sealer: FrameSender<()>,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
    batches: mpsc::Sender<SealedBatch>,
) {
    const BATCH_BYTES: usize = 256 * 1024;
    loop {
        let first = tokio::select! {
            biased;
            frame = rx.recv() => frame,
            _ = shared.closed.cancelled() => None,
        };
        let Some(first) = first else { break };
        let mut taken = 1usize;
        let mut result = sealer.queue_owned_frame(first);
        while result.is_ok() && sealer.queued_len() < BATCH_BYTES {
            match rx.try_recv() {
                Ok(frame) => {
                    taken = taken.saturating_add(1);
                    result = sealer.queue_owned_frame(frame);
                }
                Err(_) => break,
            }
        }
        shared.queued.fetch_sub(taken, Ordering::Relaxed);
        for buf in sealer.take_spent() {
            shared.recycle(buf);
        }
        let batch = result.and_then(|()| sealer.take_sealed());
        if let Some(unused) = sealer.reuse_wire(shared.take_buffer(POOL_MIN_CAPACITY)) {
            shared.recycle(unused);
        }
        match batch {
            Ok(batch) => {
                if batches.send(batch).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                shared.close(e.into());
                break;
            }
        }
    }
}

/// Writes sealed batches in order; shuts the stream down when the sealer stops.
async fn write_loop(
    shared: Arc<SessionShared>,
    mut writer: OwnedWriteHalf,
    mut batches: mpsc::Receiver<SealedBatch>,
) {
    while let Some(batch) = batches.recv().await {
        match batch.write_to(&mut writer).await {
            Ok(spent) => {
                for buf in spent.frames.into_iter().chain(spent.wire) {
                    shared.recycle(buf);
                }
            }
            Err(e) => {
                Metrics::bump(&shared.metrics.transport_errors);
                shared.close(e.into());
                break;
            }
        }
    }
    let _ = tokio::io::AsyncWriteExt::shutdown(&mut writer).await;
}

async fn read_loop(shared: Arc<SessionShared>, mut receiver: FrameReceiver<OwnedReadHalf>) {
    loop {
        let next = tokio::select! {
            biased;
            _ = shared.closed.cancelled() => break,
            next = receiver.recv_frame_with(|len| {
                // Large frames reuse pooled buffers; small ones get a right-sized allocation.
                if len >= POOL_MIN_CAPACITY {
                    shared.take_receive_buffer()
                } else {
                    Vec::with_capacity(len)
                }
            }) => next,
        };
        match next {
            Ok(Some(bytes)) => {
                if let Err(e) = dispatch_frame(&shared, bytes) {
                    shared.close(e);
                    break;
                }
            }
            Ok(None) => {
                shared.close(SessionError::PeerClosed);
                break;
            }
            Err(e) => {
                let counter = match e {
                    TransportError::FrameTooLarge { .. } => &shared.metrics.oversized_frames,
                    _ => &shared.metrics.transport_errors,
                };
                Metrics::bump(counter);
                tracing::info!(peer = %shared.peer.node_id, error = %e, "nRPC transport error");
                shared.close(e.into());
                break;
            }
        }
    }
}

/// Routes one decoded frame. An `Err` ends the session.
fn dispatch_frame(shared: &Arc<SessionShared>, bytes: Vec<u8>) -> Result<(), SessionError> {
    let frame = match Frame::decode(&bytes) {
        Ok(frame) => frame,
        Err(FrameError::UnknownDispatch { dispatch, call_id }) => {
            Metrics::bump(&shared.metrics.unknown_dispatch);
            let error = RpcError::new(
                ErrorKind::UnknownDispatch,
                format!("unknown dispatch value {dispatch:#04x}"),
            );
            shared.send_error(call_id, &error);
            return Ok(());
        }
        Err(e) => {
            Metrics::bump(&shared.metrics.malformed_frames);
            tracing::info!(peer = %shared.peer.node_id, error = %e, "nRPC malformed frame");
            return Err(e.into());
        }
    };
    match frame {
        Frame::Request {
            call_id,
            header,
            payload,
        } => {
            super::server::open_call(shared, &shared.router, call_id, header, Some(payload));
        }
        Frame::RequestInit { call_id, header } => {
            super::server::open_call(shared, &shared.router, call_id, header, None);
        }
        Frame::RequestChunk {
            call_id,
            seq,
            payload,
        } => {
            let mut served = shared.served();
            let Some(call) = served.get_mut(&call_id) else {
                Metrics::bump(&shared.metrics.stray_frames);
                return Ok(());
            };
            if seq != call.next_seq {
                let expected = call.next_seq;
                let call = served.remove(&call_id);
                drop(served);
                protocol_violation(
                    shared,
                    call_id,
                    call.map(|c| c.control),
                    format!("REQUEST_CHUNK seq {seq}, expected {expected}"),
                );
                return Ok(());
            }
            call.next_seq = call.next_seq.saturating_add(1);
            if let Some(requests) = &call.requests {
                let payload_len = payload.len();
                let payload = Payload::tail_of(bytes, payload_len);
                match requests.try_send(ReqEvent::Chunk(payload)) {
                    Ok(()) => {
                        let depth = requests.max_capacity().saturating_sub(requests.capacity());
                        shared.metrics.observe_depth(depth);
                    }
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        Metrics::bump(&shared.metrics.credit_violations);
                        return Err(SessionError::CreditExceeded { call_id });
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => {}
                }
            } else {
                Metrics::bump(&shared.metrics.stray_frames);
            }
        }
        Frame::RequestEnd { call_id } => {
            let mut served = shared.served();
            match served
                .get_mut(&call_id)
                .and_then(|call| call.requests.take())
            {
                Some(requests) => {
                    let _ = requests.try_send(ReqEvent::End);
                }
                None => Metrics::bump(&shared.metrics.stray_frames),
            }
        }
        Frame::RequestCancel { call_id, reason } => {
            let call = shared.served().remove(&call_id);
            match call {
                Some(call) => {
                    let reason = match reason {
                        ErrorKind::DeadlineExceeded => ErrorKind::DeadlineExceeded,
                        _ => ErrorKind::Cancelled,
                    };
                    call.control.cancel(reason);
                }
                None => Metrics::bump(&shared.metrics.stray_frames),
            }
        }
        Frame::ResponseWindowGrant { call_id, credits } => {
            let served = shared.served();
            match served.get(&call_id) {
                Some(call) => add_credit(shared, &call.response_credit, call_id, credits)?,
                None => Metrics::bump(&shared.metrics.stray_frames),
            }
        }
        Frame::RequestWindowGrant { call_id, credits } => {
            let calls = shared.calls();
            match calls.get(&call_id) {
                Some(slot) => add_credit(shared, &slot.shared.request_credit, call_id, credits)?,
                None => Metrics::bump(&shared.metrics.stray_frames),
            }
        }
        Frame::Response { call_id, payload } => {
            let payload_len = payload.len();
            let payload = Payload::tail_of(bytes, payload_len);
            finish_call(shared, call_id, CallEvent::Response(payload));
        }
        Frame::ResponseEnd { call_id } => finish_call(shared, call_id, CallEvent::End),
        Frame::ResponseError {
            call_id,
            kind,
            message,
        } => {
            finish_call(
                shared,
                call_id,
                CallEvent::Error(RpcError::new(kind, message)),
            );
        }
        Frame::ResponseChunk {
            call_id,
            seq,
            payload,
        } => {
            let mut calls = shared.calls();
            let Some(slot) = calls.get_mut(&call_id) else {
                Metrics::bump(&shared.metrics.stray_frames);
                return Ok(());
            };
            if seq != slot.next_seq {
                let expected = slot.next_seq;
                drop(calls);
                Metrics::bump(&shared.metrics.protocol_violations);
                let error = RpcError::new(
                    ErrorKind::ProtocolViolation,
                    format!("RESPONSE_CHUNK seq {seq}, expected {expected}"),
                );
                finish_call(shared, call_id, CallEvent::Error(error));
                let _ = shared.send_frame(&Frame::RequestCancel {
                    call_id,
                    reason: ErrorKind::Cancelled,
                });
                return Ok(());
            }
            slot.next_seq = slot.next_seq.saturating_add(1);
            let payload_len = payload.len();
            let payload = Payload::tail_of(bytes, payload_len);
            match slot.events.try_send(CallEvent::Chunk(payload)) {
                Ok(()) => {
                    let depth = slot
                        .events
                        .max_capacity()
                        .saturating_sub(slot.events.capacity());
                    shared.metrics.observe_depth(depth);
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    Metrics::bump(&shared.metrics.credit_violations);
                    return Err(SessionError::CreditExceeded { call_id });
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
    }
    Ok(())
}

fn add_credit(
    shared: &SessionShared,
    credit: &Semaphore,
    call_id: u64,
    credits: u32,
) -> Result<(), SessionError> {
    let total = credit.available_permits().saturating_add(credits as usize);
    if total > MAX_WINDOW as usize {
        Metrics::bump(&shared.metrics.credit_violations);
        return Err(SessionError::WindowOverflow { call_id });
    }
    credit.add_permits(credits as usize);
    Ok(())
}

/// Delivers a terminal event to a caller and forgets the call.
fn finish_call(shared: &SessionShared, call_id: u64, event: CallEvent) {
    let Some(slot) = shared.calls().remove(&call_id) else {
        Metrics::bump(&shared.metrics.stray_frames);
        return;
    };
    if let CallEvent::Error(error) = &event {
        let _ = slot.shared.terminal.set(error.clone());
    }
    slot.shared.request_credit.close();
    // The channel keeps one slot beyond the credit window for the terminal event.
    let _ = slot.events.try_send(event);
}

/// A per-call protocol violation on the serving side: reply, cancel the handler, count.
fn protocol_violation(
    shared: &SessionShared,
    call_id: u64,
    control: Option<Arc<CallControl>>,
    message: String,
) {
    Metrics::bump(&shared.metrics.protocol_violations);
    if let Some(control) = control {
        control.cancel(ErrorKind::ProtocolViolation);
    }
    shared.send_error(
        call_id,
        &RpcError::new(ErrorKind::ProtocolViolation, message),
    );
}

pub(crate) fn report_protocol_violation(shared: &SessionShared, call_id: u64, message: String) {
    protocol_violation(shared, call_id, None, message);
}

#[cfg(test)]
mod socket_option_tests {
    use super::*;

    async fn loopback_stream() -> TcpStream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stream, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        drop(accepted.unwrap());
        stream.unwrap()
    }

    fn congestion(stream: &TcpStream) -> String {
        let name = socket2::SockRef::from(stream).tcp_congestion().unwrap();
        String::from_utf8_lossy(&name)
            .trim_end_matches('\0')
            .to_string()
    }

    #[tokio::test]
    async fn configured_congestion_control_reaches_the_socket() {
        let stream = loopback_stream().await;
        let system_default = congestion(&stream);
        set_socket_options(&stream, &Config::default());
        assert_eq!(
            congestion(&stream),
            system_default,
            "None keeps the default"
        );
        assert!(stream.nodelay().unwrap());

        let reno = Config {
            tcp_congestion: Some("reno".into()),
            ..Config::default()
        };
        set_socket_options(&stream, &reno);
        assert_eq!(congestion(&stream), "reno");

        // A name the kernel does not know leaves the socket as it was.
        let bogus = Config {
            tcp_congestion: Some("no-such-algorithm".into()),
            ..Config::default()
        };
        set_socket_options(&stream, &bogus);
        assert_eq!(congestion(&stream), "reno");
    }
}
