//! Serving side: handler traits, the context and streams handed to handlers, the router and its
//! authorization hook, and the task that runs one call (deadline, cancellation, panic →
//! `HandlerPanic`).
//!
//! Opening a call (REQUEST / REQUEST_INIT) runs these checks in order, each refusal a typed
//! RESPONSE_ERROR and nothing granted: call id not already open (`ProtocolViolation`), method
//! and kind registered (`UnknownMethod`), the router's [`Authorize`] hook with the session's
//! authenticated peer, the method and the call's metadata (`PermissionDenied`), a free handler
//! slot (`ResourceExhausted`), and for streamed requests a receive window reserved from the
//! session's and endpoint's budgets (`ResourceExhausted`). Only then is the window granted and
//! the handler started.
//!
//! **Server-side cancel path.** A handler ends its call early by returning an error; returning
//! `Err(RpcError::cancelled(..))` sends RESPONSE_ERROR `Cancelled`, which the caller sees as the
//! result of its call (or as the last item of its response stream, and as the error of its next
//! `send`). The handler's request stream and response sink are closed with it. Nothing else is
//! needed: the call's entry is removed atomically with that reply, so a later call that reuses
//! the id is never touched.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use futures_util::FutureExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::budget::{RecvWindow, Reservation, Returner, SendBudget, SendWindow};
use super::dispatch::{call_queue, report_protocol_violation};
use super::queue;
use super::session::{
    MessageList, Payload, SendCharge, ServerCall, SessionShared, error_frame, lock,
};
use super::{CallOptions, Metrics, RpcError, decode_message};
use crate::frame::{CallHeader, CallKind, ErrorKind, Frame, TraceContext};
use crate::handshake::PeerIdentity;

/// Cancellation and routing state of one served call: the token handlers watch, why it fired,
/// and whether the call may still put frames on the wire.
#[derive(Debug)]
pub(crate) struct CallControl {
    token: CancellationToken,
    reason: OnceLock<ErrorKind>,
    /// False once the call left the session's table (finished, cancelled, expired, session
    /// closed): from then on nothing of this call is sent, so a call that reuses its id can
    /// never receive a frame of this one.
    live: Mutex<bool>,
}

impl CallControl {
    fn new() -> Self {
        CallControl {
            token: CancellationToken::new(),
            reason: OnceLock::new(),
            live: Mutex::new(true),
        }
    }

    /// Fires the token; the first reason wins.
    pub(crate) fn cancel(&self, reason: ErrorKind) {
        let _ = self.reason.set(reason);
        self.token.cancel();
    }

    /// Marks the call as gone from the session's table.
    pub(crate) fn retire(&self) {
        *lock(&self.live) = false;
    }

    /// Holds the routing state: while the guard says `true`, a frame queued under it goes out
    /// before any [`CallControl::retire`] can complete.
    fn live(&self) -> std::sync::MutexGuard<'_, bool> {
        lock(&self.live)
    }

    fn error(&self) -> RpcError {
        match self.reason.get() {
            Some(ErrorKind::DeadlineExceeded) => RpcError::deadline(),
            Some(ErrorKind::Disconnected) => RpcError::disconnected(),
            Some(kind) => RpcError::new(*kind, "call cancelled"),
            None => RpcError::cancelled("call cancelled"),
        }
    }
}

/// What a handler knows about its call.
#[derive(Debug, Clone)]
pub struct RpcContext {
    call_id: u64,
    peer: PeerIdentity,
    method: Arc<str>,
    deadline: Option<Instant>,
    trace: TraceContext,
    metadata: Arc<[u8]>,
    control: Arc<CallControl>,
}

impl RpcContext {
    /// The call's id (random, chosen by the caller).
    pub fn call_id(&self) -> u64 {
        self.call_id
    }

    /// The authenticated peer of the session the call arrived on.
    pub fn peer(&self) -> &PeerIdentity {
        &self.peer
    }

    /// The method name the call was opened with.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// When the call must be finished, if the caller set a deadline.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The caller's trace context.
    pub fn trace(&self) -> TraceContext {
        self.trace
    }

    /// The call's metadata as the caller sent it (empty when none), e.g. a permission token.
    /// The authorization hook has already seen it; it is not authenticated beyond the session.
    pub fn metadata(&self) -> &[u8] {
        &self.metadata
    }

    /// Options for a call this handler makes on behalf of its own call: the same trace id with
    /// `span_id` as the parent span (so the trace context travels in the next call header), and
    /// what is left of this call's deadline.
    pub fn with_trace(&self, span_id: [u8; 8]) -> CallOptions {
        let timeout = self.deadline.map(|d| {
            d.saturating_duration_since(Instant::now())
                .max(Duration::from_micros(1))
        });
        CallOptions {
            timeout,
            trace: TraceContext {
                trace_id: self.trace.trace_id,
                span_id,
            },
            ..CallOptions::default()
        }
    }

    /// Fires when the call is cancelled, its deadline passes or the session is lost.
    pub fn token(&self) -> &CancellationToken {
        &self.control.token
    }

    /// Why the token fired (`Cancelled`, `DeadlineExceeded`, `Disconnected`, ...), if it has.
    pub fn cancel_reason(&self) -> Option<ErrorKind> {
        self.control.reason.get().copied()
    }
}

/// One request → one response.
pub trait RpcUnaryHandler: Send + Sync + 'static {
    /// Request message.
    type Req: DeserializeOwned + Serialize + Send + 'static;
    /// Response message.
    type Resp: Serialize + Send + 'static;
    /// Handles one call.
    fn call(
        &self,
        ctx: RpcContext,
        req: Self::Req,
    ) -> impl Future<Output = Result<Self::Resp, RpcError>> + Send;

    /// The most bytes this handler's encoded answer takes (the RESPONSE frame's payload).
    ///
    /// When not 0, the server reserves that much send budget (the session's, the peer's and
    /// the endpoint's) before it runs the handler, waiting as a send waits (until the call's
    /// deadline or cancel), and an answer larger than declared fails with
    /// `ResourceExhausted`. Then a caller that opens many calls and reads none of their
    /// answers makes this side hold at most its send budgets, not one answer per call: the
    /// handlers past the budgets wait before they run. 0 (the default) runs the handler at
    /// once and waits for budget once its answer is encoded, which suits answers that are
    /// small: `max_concurrent_calls` of them per session are what a caller can make wait.
    fn max_answer_bytes(&self) -> usize {
        0
    }
}

/// One request → a stream of responses written to a window-limited sink.
pub trait RpcServerStreamingHandler: Send + Sync + 'static {
    /// Request message.
    type Req: DeserializeOwned + Serialize + Send + 'static;
    /// Response message.
    type Resp: Serialize + Send + Sync + 'static;
    /// Handles one call; returning `Ok` ends the stream with RESPONSE_END.
    fn call(
        &self,
        ctx: RpcContext,
        req: Self::Req,
        responses: ResponseSink<Self::Resp>,
    ) -> impl Future<Output = Result<(), RpcError>> + Send;
}

/// A stream of requests → one response.
pub trait RpcClientStreamingHandler: Send + Sync + 'static {
    /// Request message.
    type Req: DeserializeOwned + Serialize + Send + 'static;
    /// Response message.
    type Resp: Serialize + Send + 'static;
    /// Handles one call.
    fn call(
        &self,
        ctx: RpcContext,
        requests: RequestStreamTyped<Self::Req>,
    ) -> impl Future<Output = Result<Self::Resp, RpcError>> + Send;
}

/// A stream of requests in → a stream of responses out.
pub trait RpcDuplexHandler: Send + Sync + 'static {
    /// Request message.
    type Req: DeserializeOwned + Serialize + Send + 'static;
    /// Response message.
    type Resp: Serialize + Send + Sync + 'static;
    /// Handles one call; returning `Ok` ends the response stream with RESPONSE_END.
    fn call(
        &self,
        ctx: RpcContext,
        requests: RequestStreamTyped<Self::Req>,
        responses: ResponseSink<Self::Resp>,
    ) -> impl Future<Output = Result<(), RpcError>> + Send;
}

/// A refusal from an [`Authorize`] hook; the caller gets `PermissionDenied` with the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("permission denied: {0}")]
pub struct Denied(pub String);

/// The authorization hook of a [`Router`]: sees the session's authenticated peer, the method
/// and the call's metadata before anything is granted for the call, and may refuse it. It runs
/// on the session's reader task, so it must be quick (no I/O, no waiting).
pub trait Authorize: Send + Sync + 'static {
    /// `Ok` lets the call through; `Err` refuses it with `PermissionDenied`.
    fn authorize(&self, peer: &PeerIdentity, method: &str, metadata: &[u8]) -> Result<(), Denied>;
}

impl<F> Authorize for F
where
    F: Fn(&PeerIdentity, &str, &[u8]) -> Result<(), Denied> + Send + Sync + 'static,
{
    fn authorize(&self, peer: &PeerIdentity, method: &str, metadata: &[u8]) -> Result<(), Denied> {
        self(peer, method, metadata)
    }
}

/// Request-stream event queued by the dispatcher for a handler.
#[derive(Debug)]
pub(crate) enum ReqEvent {
    Chunk(MessageList),
    End,
}

/// Typed view of one step of a request stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk<T> {
    /// The call was opened (always the first chunk).
    Init { call_id: u64, trace: TraceContext },
    /// One request message with its per-call sequence number.
    Data { seq: u64, item: T },
    /// The caller finished sending (repeats once reached).
    End,
}

/// The request stream of a client-streaming or duplex call. Consuming messages returns window
/// bytes to the caller, so at most one window of requests is ever queued here.
#[derive(Debug)]
pub struct RequestStreamTyped<Req> {
    rx: queue::Receiver<ReqEvent>,
    shared: Arc<SessionShared>,
    call_id: u64,
    trace: TraceContext,
    window: Option<Arc<RecvWindow>>,
    returner: Returner,
    /// The chunk frame being taken apart, if its messages are not all taken yet.
    pending: Option<MessageList>,
    next_seq: u64,
    init_seen: bool,
    done: bool,
    control: Arc<CallControl>,
    _req: PhantomData<fn() -> Req>,
}

impl<Req: DeserializeOwned + Serialize + 'static> RequestStreamTyped<Req> {
    /// The next step as a [`Chunk`]: `Init` once, then `Data` per message, then `End`.
    pub async fn next_chunk(&mut self) -> Result<Chunk<Req>, RpcError> {
        if !self.init_seen {
            self.init_seen = true;
            return Ok(Chunk::Init {
                call_id: self.call_id,
                trace: self.trace,
            });
        }
        let seq = self.next_seq;
        match futures_util::StreamExt::next(self).await {
            Some(Ok(item)) => Ok(Chunk::Data { seq, item }),
            Some(Err(e)) => Err(e),
            None => Ok(Chunk::End),
        }
    }

    /// Messages queued and not yet consumed (never more than fit the window), counting a
    /// queued chunk frame that carries several as one.
    pub fn queued(&self) -> usize {
        self.rx
            .len()
            .saturating_add(self.pending.as_ref().map_or(0, MessageList::left))
    }

    /// This call's receive window in charged bytes.
    pub fn window(&self) -> u32 {
        self.window.as_ref().map_or(0, |w| w.window())
    }

    /// The next message of the chunk frame being taken apart, if any.
    fn next_pending(&mut self) -> Option<Result<Req, RpcError>> {
        let (item, done) = super::raw::decode_next::<Req>(&mut self.pending, &self.shared)?;
        self.next_seq = self.next_seq.saturating_add(1);
        if let Some(charge) = done {
            let bytes = self.returner.consumed(charge);
            self.give_back(bytes);
        }
        Some(item)
    }

    fn give_back(&mut self, bytes: Option<u32>) {
        let (Some(window), Some(bytes)) = (&self.window, bytes) else {
            return;
        };
        window.reopen(bytes);
        let _ = self.shared.send_frame(&Frame::RequestWindowGrant {
            call_id: self.call_id,
            credits: bytes,
        });
    }
}

impl<Req: DeserializeOwned + Serialize + 'static> Stream for RequestStreamTyped<Req> {
    type Item = Result<Req, RpcError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            if let Some(item) = this.next_pending() {
                return Poll::Ready(Some(item));
            }
            return match this.rx.poll_recv(cx) {
                // A frame's messages are taken at the top of the loop.
                Poll::Ready(Some(ReqEvent::Chunk(list))) => {
                    this.pending = Some(list);
                    continue;
                }
                Poll::Ready(Some(ReqEvent::End)) => {
                    this.done = true;
                    Poll::Ready(None)
                }
                Poll::Ready(None) => {
                    this.done = true;
                    Poll::Ready(Some(Err(this.control.error())))
                }
                Poll::Pending => {
                    let bytes = this.returner.idle();
                    this.give_back(bytes);
                    Poll::Pending
                }
            };
        }
    }
}

/// Where a streaming handler writes responses; `send` waits for window bytes from the caller
/// and for the send budgets.
#[derive(Debug)]
pub struct ResponseSink<Resp> {
    shared: Arc<SessionShared>,
    call_id: u64,
    window: Arc<SendWindow>,
    budget: Arc<Semaphore>,
    control: Arc<CallControl>,
    seq: u64,
    size_hint: usize,
    /// Reused encode buffer for small messages.
    scratch: Vec<u8>,
    _resp: PhantomData<fn(Resp)>,
}

impl<Resp: Serialize> ResponseSink<Resp> {
    /// Sends one response message, waiting while the caller's window or the send budget is
    /// spent. Fails with the call's cancellation reason once the call is cancelled, expired or
    /// disconnected, and with `ResourceExhausted` for a message larger than the caller's whole
    /// window. Cancel-safe: a send dropped while it waits, or that fails, sends nothing and
    /// gives back what it took of the window.
    pub async fn send(&mut self, item: &Resp) -> Result<(), RpcError> {
        if self.control.token.is_cancelled() {
            return Err(self.control.error());
        }
        let (frame_len, charge) = SessionShared::measure_chunk(item)?;
        // Usually the window and the budgets have room: taken without a future, and no need
        // to watch the token then (see `DuplexSender::send`).
        let now = self.window.try_take_message(charge).filter(|_| {
            self.shared
                .try_reserve_send_bytes(Some(&self.budget), charge)
        });
        let taken = match now {
            Some(taken) => taken,
            None => {
                let wait = async {
                    let taken = self
                        .window
                        .take_message(charge)
                        .await
                        .map_err(|e| e.into_rpc(charge, "caller", || self.control.error()))?;
                    self.shared
                        .reserve_send_bytes(Some(&self.budget), charge)
                        .await?;
                    Ok::<_, RpcError>(taken)
                };
                tokio::select! {
                    biased;
                    _ = self.control.token.cancelled() => Err(self.control.error()),
                    reserved = wait => reserved,
                }?
            }
        };
        let live = self.control.live();
        if !*live {
            drop(live);
            self.shared.release_send_bytes(Some(&self.budget), charge);
            return Err(self.control.error());
        }
        let appended = self.shared.send_chunk(
            false,
            self.call_id,
            self.seq,
            item,
            frame_len,
            &self.budget,
            charge,
            &mut self.scratch,
            &mut self.size_hint,
        )?;
        drop(live);
        taken.spent();
        if appended {
            self.window.appended();
        }
        self.seq = self.seq.saturating_add(1);
        Ok(())
    }

    /// Window bytes currently available (what can be sent without waiting for the caller).
    pub fn available_credit(&self) -> usize {
        self.window.available()
    }

    /// The caller's receive window for this call, in charged bytes.
    pub fn window(&self) -> u32 {
        self.window.window()
    }
}

/// Everything a handler adapter needs to start one call.
pub(crate) struct CallStart {
    ctx: RpcContext,
    shared: Arc<SessionShared>,
    payload: Option<Payload>,
    /// The unary request's receive bytes, held until the handler ends.
    reservation: Option<Reservation>,
    requests: Option<queue::Receiver<ReqEvent>>,
    request_window: Option<Arc<RecvWindow>>,
    response_window: Arc<SendWindow>,
}

impl CallStart {
    fn request_stream<Req>(&mut self) -> RequestStreamTyped<Req> {
        let (_, empty) = queue::queue();
        let window = self.request_window.take();
        let size = window.as_ref().map_or(0, |w| w.window());
        RequestStreamTyped {
            rx: self.requests.take().unwrap_or(empty),
            shared: self.shared.clone(),
            call_id: self.ctx.call_id,
            trace: self.ctx.trace,
            window,
            returner: Returner::new(size),
            pending: None,
            next_seq: 0,
            init_seen: false,
            done: false,
            control: self.ctx.control.clone(),
            _req: PhantomData,
        }
    }

    fn response_sink<Resp>(&self) -> ResponseSink<Resp> {
        ResponseSink {
            shared: self.shared.clone(),
            call_id: self.ctx.call_id,
            window: self.response_window.clone(),
            budget: SendBudget::call_budget(self.shared.config.call_send_budget),
            control: self.ctx.control.clone(),
            seq: 0,
            size_hint: 64,
            scratch: Vec::new(),
            _resp: PhantomData,
        }
    }

    /// A future decoding the unary request (on the handler's task; its buffer goes back to
    /// the pool).
    fn request<Req: DeserializeOwned + Serialize>(
        &mut self,
    ) -> impl Future<Output = Result<Req, RpcError>> + Send + 'static {
        let payload = self.payload.take();
        let shared = self.shared.clone();
        async move {
            let payload = payload
                .ok_or_else(|| RpcError::new(ErrorKind::Internal, "request payload missing"))?;
            let req = decode_message(payload.bytes());
            payload.recycle(&shared);
            req
        }
    }
}

/// The RESPONSE frame for `resp`, encoded straight after the frame header.
fn response_frame<T: Serialize>(call_id: u64, resp: &T) -> Result<Vec<u8>, RpcError> {
    let mut out = Vec::new();
    let offset = crate::frame::begin_response(&mut out, call_id);
    let out = postcard::to_extend(resp, out)
        .map_err(|e| RpcError::new(ErrorKind::Decode, format!("encode: {e}")))?;
    crate::frame::finish_payload(&out, offset)
        .map_err(|e| RpcError::new(ErrorKind::ResourceExhausted, format!("response: {e}")))?;
    Ok(out)
}

/// Type-erased handler stored in the router (the one `dyn` in nRPC).
pub(crate) trait ErasedHandler: Send + Sync {
    fn kind(&self) -> CallKind;
    fn start(&self, start: CallStart);
}

struct Unary<H>(Arc<H>);
struct ServerStreaming<H>(Arc<H>);
struct ClientStreaming<H>(Arc<H>);
struct Duplex<H>(Arc<H>);

impl<H: RpcUnaryHandler> ErasedHandler for Unary<H> {
    fn kind(&self) -> CallKind {
        CallKind::Unary
    }
    fn start(&self, mut start: CallStart) {
        let handler = self.0.clone();
        let ctx = start.ctx.clone();
        let req = start.request::<H::Req>();
        let reserve = match handler.max_answer_bytes() {
            0 => 0,
            max => crate::frame::charge(max.saturating_add(crate::frame::HEADER_LEN)),
        };
        run_call(start, reserve, async move {
            let call_id = ctx.call_id;
            let resp = handler.call(ctx, req.await?).await?;
            response_frame(call_id, &resp).map(Some)
        });
    }
}

impl<H: RpcServerStreamingHandler> ErasedHandler for ServerStreaming<H> {
    fn kind(&self) -> CallKind {
        CallKind::ServerStreaming
    }
    fn start(&self, mut start: CallStart) {
        let handler = self.0.clone();
        let ctx = start.ctx.clone();
        let req = start.request::<H::Req>();
        let sink = start.response_sink::<H::Resp>();
        run_call(start, 0, async move {
            handler.call(ctx, req.await?, sink).await.map(|()| None)
        });
    }
}

impl<H: RpcClientStreamingHandler> ErasedHandler for ClientStreaming<H> {
    fn kind(&self) -> CallKind {
        CallKind::ClientStreaming
    }
    fn start(&self, mut start: CallStart) {
        let handler = self.0.clone();
        let ctx = start.ctx.clone();
        let requests = start.request_stream::<H::Req>();
        run_call(start, 0, async move {
            let call_id = ctx.call_id;
            let resp = handler.call(ctx, requests).await?;
            response_frame(call_id, &resp).map(Some)
        });
    }
}

impl<H: RpcDuplexHandler> ErasedHandler for Duplex<H> {
    fn kind(&self) -> CallKind {
        CallKind::Duplex
    }
    fn start(&self, mut start: CallStart) {
        let handler = self.0.clone();
        let ctx = start.ctx.clone();
        let requests = start.request_stream::<H::Req>();
        let sink = start.response_sink::<H::Resp>();
        run_call(start, 0, async move {
            handler.call(ctx, requests, sink).await.map(|()| None)
        });
    }
}

/// Method name → handler, plus the authorization hook every call passes first. The router an
/// endpoint serves to peers that dial it and the one it exposes on sessions it dials are set
/// separately (see `Endpoint::with_dialed_router`).
#[derive(Default, Clone)]
pub struct Router {
    handlers: HashMap<String, Arc<dyn ErasedHandler>>,
    authorize: Option<Arc<dyn Authorize>>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut methods: Vec<_> = self.handlers.keys().collect();
        methods.sort();
        f.debug_struct("Router")
            .field("methods", &methods)
            .field("authorize", &self.authorize.is_some())
            .finish()
    }
}

impl Router {
    /// An empty router: every call gets `UnknownMethod`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a unary handler.
    pub fn unary<H: RpcUnaryHandler>(mut self, method: &str, handler: H) -> Self {
        self.handlers
            .insert(method.to_string(), Arc::new(Unary(Arc::new(handler))));
        self
    }

    /// Registers a server-streaming handler.
    pub fn server_streaming<H: RpcServerStreamingHandler>(mut self, method: &str, h: H) -> Self {
        self.handlers
            .insert(method.to_string(), Arc::new(ServerStreaming(Arc::new(h))));
        self
    }

    /// Registers a client-streaming handler.
    pub fn client_streaming<H: RpcClientStreamingHandler>(mut self, method: &str, h: H) -> Self {
        self.handlers
            .insert(method.to_string(), Arc::new(ClientStreaming(Arc::new(h))));
        self
    }

    /// Registers a duplex handler.
    pub fn duplex<H: RpcDuplexHandler>(mut self, method: &str, handler: H) -> Self {
        self.handlers
            .insert(method.to_string(), Arc::new(Duplex(Arc::new(handler))));
        self
    }

    /// Sets the authorization hook (replacing any earlier one). Without a hook every
    /// authenticated peer may call every registered method.
    pub fn authorize(mut self, hook: impl Authorize) -> Self {
        self.authorize = Some(Arc::new(hook));
        self
    }

    /// True when no method is registered.
    pub fn is_empty(&self) -> bool {
        self.handlers.is_empty()
    }
}

/// A call that passed every check of [`prepare_call`], with what it was granted.
pub(crate) struct Prepared {
    handler: Arc<dyn ErasedHandler>,
    kind: CallKind,
    method: Arc<str>,
    deadline: Option<Instant>,
    trace: TraceContext,
    metadata: Arc<[u8]>,
    request_window: Option<Arc<RecvWindow>>,
    response_window: u32,
}

/// Runs the opening checks for REQUEST / REQUEST_INIT (see the module docs); a refusal is
/// answered here and gives `None`.
pub(crate) fn prepare_call(
    shared: &Arc<SessionShared>,
    call_id: u64,
    header: &CallHeader<'_>,
) -> Option<Prepared> {
    if shared.served().contains_key(&call_id) {
        report_protocol_violation(
            shared,
            call_id,
            format!("call id {call_id:#018x} is already open on this session"),
        );
        return None;
    }
    let handler = match shared.router.handlers.get(header.method) {
        Some(handler) if handler.kind() == header.kind => handler.clone(),
        found => {
            let detail = match found {
                Some(h) => format!(
                    "method {:?} is {:?}, not {:?}",
                    header.method,
                    h.kind(),
                    header.kind
                ),
                None => format!("no method {:?}", header.method),
            };
            shared.send_error(call_id, &RpcError::new(ErrorKind::UnknownMethod, detail));
            return None;
        }
    };
    if let Some(hook) = &shared.router.authorize
        && let Err(Denied(why)) = hook.authorize(&shared.peer, header.method, header.metadata)
    {
        Metrics::bump(&shared.metrics.authorization_refusals);
        shared.send_error(call_id, &RpcError::new(ErrorKind::PermissionDenied, why));
        return None;
    }
    if shared.live_handlers.load(Ordering::Acquire) >= shared.config.max_concurrent_calls {
        Metrics::bump(&shared.metrics.budget_refusals);
        let error = RpcError::new(ErrorKind::ResourceExhausted, "too many concurrent calls");
        shared.send_error(call_id, &error);
        return None;
    }
    let request_window = if header.kind.streams_requests() {
        let config = &shared.config;
        let want = config.call_window as usize;
        let min = (config.min_call_window as usize).min(want).max(1);
        match shared.reserve_recv(want, min) {
            Some(reservation) => Some(Arc::new(RecvWindow::new(reservation))),
            None => {
                Metrics::bump(&shared.metrics.budget_refusals);
                let error = RpcError::new(
                    ErrorKind::ResourceExhausted,
                    "receive budget spent; no window for this call",
                );
                shared.send_error(call_id, &error);
                return None;
            }
        }
    } else {
        None
    };
    let deadline = match header.timeout_us {
        0 => None,
        us => Instant::now().checked_add(Duration::from_micros(us)),
    };
    Some(Prepared {
        handler,
        kind: header.kind,
        method: Arc::from(header.method),
        deadline,
        trace: header.trace,
        metadata: Arc::from(header.metadata),
        request_window,
        response_window: if header.kind.streams_responses() {
            header.response_window
        } else {
            0
        },
    })
}

/// Registers a prepared call, grants its request window and starts its handler.
pub(crate) fn start_call(
    shared: &Arc<SessionShared>,
    call_id: u64,
    prepared: Prepared,
    payload: Option<Payload>,
) {
    let control = Arc::new(CallControl::new());
    let response_window = Arc::new(SendWindow::announced(prepared.response_window));
    let (requests, requests_rx) = if prepared.kind.streams_requests() {
        let (tx, rx) = call_queue();
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    let granted = prepared.request_window.as_ref().map(|w| w.window());
    shared.served().insert(
        call_id,
        ServerCall {
            requests,
            next_seq: 0,
            window: prepared.request_window.clone(),
            response_window: response_window.clone(),
            control: control.clone(),
        },
    );
    shared.live_handlers.fetch_add(1, Ordering::AcqRel);
    Metrics::gauge_up(&shared.metrics.active_handlers);
    if let Some(credits) = granted {
        let _ = shared.send_frame(&Frame::RequestWindowGrant { call_id, credits });
    }
    let ctx = RpcContext {
        call_id,
        peer: shared.peer.clone(),
        method: prepared.method,
        deadline: prepared.deadline,
        trace: prepared.trace,
        metadata: prepared.metadata,
        control,
    };
    let (payload, reservation) = match payload {
        Some(payload) => {
            let (payload, reservation) = payload.split_reservation();
            (Some(payload), reservation)
        }
        None => (None, None),
    };
    prepared.handler.start(CallStart {
        ctx,
        shared: shared.clone(),
        payload,
        reservation,
        requests: requests_rx,
        request_window: prepared.request_window,
        response_window,
    });
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

/// Counts a running handler against its session's `max_concurrent_calls` and the endpoint's
/// gauge until the handler's task ends.
struct LiveHandler(Arc<SessionShared>);

impl Drop for LiveHandler {
    fn drop(&mut self) {
        self.0.live_handlers.fetch_sub(1, Ordering::AcqRel);
        Metrics::gauge_down(&self.0.metrics.active_handlers);
    }
}

/// Removes the call from the session's table if the entry is still this call's (a call that
/// reused the id is left alone) and queues `frame` for it atomically with the removal; `false`
/// (and nothing sent) when the entry was already gone.
fn finish_served(
    shared: &SessionShared,
    call_id: u64,
    control: &Arc<CallControl>,
    frame: Vec<u8>,
    charge: Option<SendCharge>,
) -> bool {
    let mut served = shared.served();
    let mine = served
        .get(&call_id)
        .is_some_and(|call| Arc::ptr_eq(&call.control, control));
    if !mine {
        drop(served);
        if let Some(charge) = charge {
            shared.release_send(charge);
        }
        return false;
    }
    if let Some(call) = served.remove(&call_id) {
        call.response_window.close();
    }
    let mut live = control.live();
    *live = false;
    let queued = shared.enqueue_holding_served(frame, charge);
    drop(live);
    drop(served);
    if let Err(overflow) = queued {
        shared.settle_overflow(overflow);
    }
    true
}

/// Runs one handler future on its own task: `Ok(Some(frame))` → that RESPONSE, `Ok(None)` →
/// RESPONSE_END, `Err` → RESPONSE_ERROR, panic → `HandlerPanic`, deadline → `DeadlineExceeded`.
/// The task counts against `max_concurrent_calls` until it ends. With `reserve` (charged
/// bytes; 0: none) the answer's send budget is taken before the handler runs, and the answer
/// must fit it (see [`RpcUnaryHandler::max_answer_bytes`]).
fn run_call<F>(start: CallStart, reserve: usize, fut: F)
where
    F: Future<Output = Result<Option<Vec<u8>>, RpcError>> + Send + 'static,
{
    let shared = start.shared;
    let call_id = start.ctx.call_id;
    let control = start.ctx.control;
    let deadline = start.ctx.deadline;
    // The unary request's receive bytes stay reserved while its handler runs.
    let reservation = start.reservation;
    let guard = LiveHandler(shared.clone());
    tokio::spawn(async move {
        let _guard = guard;
        let _reservation = reservation;
        // Completes only in the branch that ends the call at its deadline, so it counts it.
        let expiry = async {
            match deadline {
                Some(deadline) => {
                    tokio::time::sleep_until(deadline).await;
                    Metrics::bump(&shared.metrics.deadlines_exceeded);
                }
                None => std::future::pending().await,
            }
        };
        tokio::pin!(expiry);
        let mut answer_budget = None;
        if reserve > 0 {
            let taken = tokio::select! {
                biased;
                _ = control.token.cancelled() => return,
                taken = shared.reserve_send(None, reserve) => taken,
                _ = &mut expiry => Err(RpcError::deadline()),
            };
            match taken {
                Ok(charge) => {
                    answer_budget = Some(AnswerBudget {
                        shared: shared.clone(),
                        bytes: charge.bytes,
                    });
                }
                Err(error) => {
                    if let Ok(frame) = error_frame(call_id, &error).to_vec() {
                        finish_served(&shared, call_id, &control, frame, None);
                    }
                    control.cancel(error.kind);
                    return;
                }
            }
        }
        let fut = AssertUnwindSafe(fut).catch_unwind();
        tokio::pin!(fut);
        let outcome = tokio::select! {
            biased;
            outcome = &mut fut => Some(outcome),
            _ = control.token.cancelled() => None,
            _ = &mut expiry => {
                let error = error_frame(call_id, &RpcError::deadline()).to_vec();
                if let Ok(frame) = error {
                    finish_served(&shared, call_id, &control, frame, None);
                }
                control.cancel(ErrorKind::DeadlineExceeded);
                None
            }
        };
        match outcome {
            Some(Ok(Ok(Some(frame)))) => {
                let charge = crate::frame::charge(frame.len());
                let reserved = match answer_budget {
                    Some(budget) => Some(budget.spend(charge)),
                    // Waits for send budget within the call's deadline, as the handler ran.
                    None => tokio::select! {
                        biased;
                        _ = control.token.cancelled() => None,
                        reserved = shared.reserve_send(None, charge) => Some(reserved),
                        _ = &mut expiry => Some(Err(RpcError::deadline())),
                    },
                };
                match reserved {
                    Some(Ok(charge)) => {
                        finish_served(&shared, call_id, &control, frame, Some(charge));
                    }
                    Some(Err(error)) => {
                        if let Ok(frame) = error_frame(call_id, &error).to_vec() {
                            finish_served(&shared, call_id, &control, frame, None);
                        }
                    }
                    None => {}
                }
            }
            Some(Ok(Ok(None))) => {
                drop(answer_budget);
                if let Ok(frame) = (Frame::ResponseEnd { call_id }).to_vec() {
                    finish_served(&shared, call_id, &control, frame, None);
                }
            }
            Some(Ok(Err(error))) => {
                drop(answer_budget);
                if let Ok(frame) = error_frame(call_id, &error).to_vec() {
                    finish_served(&shared, call_id, &control, frame, None);
                }
                control.cancel(error.kind);
            }
            Some(Err(panic)) => {
                drop(answer_budget);
                let message = panic_message(panic.as_ref());
                Metrics::bump(&shared.metrics.handler_panics);
                tracing::error!(call_id, panic = %message, "nRPC handler panicked");
                let error = RpcError::new(ErrorKind::HandlerPanic, message);
                if let Ok(frame) = error_frame(call_id, &error).to_vec() {
                    finish_served(&shared, call_id, &control, frame, None);
                }
                control.cancel(ErrorKind::HandlerPanic);
            }
            None => {
                drop(answer_budget);
                // Let the handler observe its token, then drop it.
                let grace = shared.config.cancel_grace;
                let _ = tokio::time::timeout(grace, &mut fut).await;
            }
        }
    });
}

/// Send budget taken for an answer before its handler ran; given back when dropped unless
/// the answer spent it.
struct AnswerBudget {
    shared: Arc<SessionShared>,
    bytes: usize,
}

impl AnswerBudget {
    /// The charge of an answer costing `charge`, out of this budget (the rest given back);
    /// `ResourceExhausted` when it costs more than was reserved.
    fn spend(mut self, charge: usize) -> Result<SendCharge, RpcError> {
        if charge > self.bytes {
            return Err(RpcError::new(
                ErrorKind::ResourceExhausted,
                format!(
                    "a {charge}-byte answer exceeds the {} bytes its method may send",
                    self.bytes
                ),
            ));
        }
        let spare = self.bytes - charge;
        self.bytes = 0;
        self.shared.release_send_bytes(None, spare);
        Ok(SendCharge {
            call: None,
            bytes: charge,
        })
    }
}

impl Drop for AnswerBudget {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.shared.release_send_bytes(None, self.bytes);
        }
    }
}
