//! Serving side: handler traits, the context and streams handed to handlers, the router, and the
//! task that runs one call (deadline, cancellation, panic → `HandlerPanic`).

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use futures_util::FutureExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::session::{ServerCall, SessionShared, report_protocol_violation};
use super::{MAX_WINDOW, Metrics, RpcError, decode_message, encode_message};
use crate::frame::{CallHeader, CallKind, ErrorKind, Frame, TraceContext};
use crate::handshake::PeerIdentity;

/// Cancellation state of one served call: the token handlers watch and why it fired.
#[derive(Debug, Default)]
pub(crate) struct CallControl {
    token: CancellationToken,
    reason: OnceLock<ErrorKind>,
}

impl CallControl {
    /// Fires the token; the first reason wins.
    pub(crate) fn cancel(&self, reason: ErrorKind) {
        let _ = self.reason.set(reason);
        self.token.cancel();
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
    deadline: Option<Instant>,
    trace: TraceContext,
    control: Arc<CallControl>,
}

impl RpcContext {
    /// The call's id (random, chosen by the caller).
    pub fn call_id(&self) -> u64 {
        self.call_id
    }

    /// The authenticated peer of the session the call arrived on.
    pub fn peer(&self) -> PeerIdentity {
        self.peer
    }

    /// When the call must be finished, if the caller set a deadline.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The caller's trace context.
    pub fn trace(&self) -> TraceContext {
        self.trace
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
    type Req: DeserializeOwned + Send + 'static;
    /// Response message.
    type Resp: Serialize + Send + 'static;
    /// Handles one call.
    fn call(
        &self,
        ctx: RpcContext,
        req: Self::Req,
    ) -> impl Future<Output = Result<Self::Resp, RpcError>> + Send;
}

/// One request → a stream of responses written to a credit-limited sink.
pub trait RpcServerStreamingHandler: Send + Sync + 'static {
    /// Request message.
    type Req: DeserializeOwned + Send + 'static;
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
    type Req: DeserializeOwned + Send + 'static;
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
    type Req: DeserializeOwned + Send + 'static;
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

/// Request-stream event queued by the dispatcher for a handler.
#[derive(Debug)]
pub(crate) enum ReqEvent {
    Chunk(super::session::Payload),
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

/// The request stream of a client-streaming or duplex call. Consuming messages re-grants credit
/// to the caller, so at most one window of requests is ever queued here.
#[derive(Debug)]
pub struct RequestStreamTyped<Req> {
    rx: mpsc::Receiver<ReqEvent>,
    shared: Arc<SessionShared>,
    call_id: u64,
    trace: TraceContext,
    window: u32,
    unacked: u32,
    next_seq: u64,
    init_seen: bool,
    done: bool,
    control: Arc<CallControl>,
    _req: PhantomData<fn() -> Req>,
}

impl<Req: DeserializeOwned + 'static> RequestStreamTyped<Req> {
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

    /// Messages queued and not yet consumed (never more than the window).
    pub fn queued(&self) -> usize {
        self.rx.len()
    }

    fn consumed_one(&mut self) {
        self.next_seq = self.next_seq.saturating_add(1);
        self.unacked = self.unacked.saturating_add(1);
        if self.unacked >= (self.window / 2).max(1) {
            let credits = std::mem::take(&mut self.unacked);
            let _ = self.shared.send_frame(&Frame::RequestWindowGrant {
                call_id: self.call_id,
                credits,
            });
        }
    }
}

impl<Req: DeserializeOwned + 'static> Stream for RequestStreamTyped<Req> {
    type Item = Result<Req, RpcError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        match this.rx.poll_recv(cx) {
            Poll::Ready(Some(ReqEvent::Chunk(payload))) => {
                this.consumed_one();
                Poll::Ready(Some(super::raw::decode_payload(payload, &this.shared)))
            }
            Poll::Ready(Some(ReqEvent::End)) => {
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(None) => {
                this.done = true;
                Poll::Ready(Some(Err(this.control.error())))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Where a streaming handler writes responses; `send` waits for credit from the caller.
#[derive(Debug)]
pub struct ResponseSink<Resp> {
    shared: Arc<SessionShared>,
    call_id: u64,
    credit: Arc<Semaphore>,
    control: Arc<CallControl>,
    seq: u64,
    size_hint: usize,
    _resp: PhantomData<fn(Resp)>,
}

impl<Resp: Serialize> ResponseSink<Resp> {
    /// Sends one response message, waiting while the caller has granted no credit. Fails with
    /// the call's cancellation reason once the call is cancelled, expired or disconnected.
    pub async fn send(&mut self, item: &Resp) -> Result<(), RpcError> {
        tokio::select! {
            biased;
            _ = self.control.token.cancelled() => return Err(self.control.error()),
            permit = self.credit.acquire() => match permit {
                Ok(permit) => permit.forget(),
                Err(_) => return Err(self.control.error()),
            },
        }
        self.shared
            .send_chunk(false, self.call_id, self.seq, item, &mut self.size_hint)?;
        self.seq = self.seq.saturating_add(1);
        Ok(())
    }

    /// Credit currently available (messages that can be sent without waiting).
    pub fn available_credit(&self) -> usize {
        self.credit.available_permits()
    }
}

/// Everything a handler adapter needs to start one call.
pub(crate) struct CallStart {
    ctx: RpcContext,
    shared: Arc<SessionShared>,
    payload: Vec<u8>,
    requests: Option<mpsc::Receiver<ReqEvent>>,
    response_credit: Arc<Semaphore>,
    window: u32,
}

impl CallStart {
    fn request_stream<Req>(&mut self) -> RequestStreamTyped<Req> {
        let (_, empty) = mpsc::channel(1);
        RequestStreamTyped {
            rx: self.requests.take().unwrap_or(empty),
            shared: self.shared.clone(),
            call_id: self.ctx.call_id,
            trace: self.ctx.trace,
            window: self.window,
            unacked: 0,
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
            credit: self.response_credit.clone(),
            control: self.ctx.control.clone(),
            seq: 0,
            size_hint: 64,
            _resp: PhantomData,
        }
    }
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
    fn start(&self, start: CallStart) {
        let handler = self.0.clone();
        let ctx = start.ctx.clone();
        let payload = start.payload.clone();
        run_call(start, async move {
            let req = decode_message::<H::Req>(&payload)?;
            let resp = handler.call(ctx, req).await?;
            encode_message(&resp).map(Some)
        });
    }
}

impl<H: RpcServerStreamingHandler> ErasedHandler for ServerStreaming<H> {
    fn kind(&self) -> CallKind {
        CallKind::ServerStreaming
    }
    fn start(&self, start: CallStart) {
        let handler = self.0.clone();
        let ctx = start.ctx.clone();
        let payload = start.payload.clone();
        let sink = start.response_sink::<H::Resp>();
        run_call(start, async move {
            let req = decode_message::<H::Req>(&payload)?;
            handler.call(ctx, req, sink).await.map(|()| None)
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
        run_call(start, async move {
            let resp = handler.call(ctx, requests).await?;
            encode_message(&resp).map(Some)
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
        run_call(start, async move {
            handler.call(ctx, requests, sink).await.map(|()| None)
        });
    }
}

/// Method name → handler.
#[derive(Default, Clone)]
pub struct Router {
    handlers: HashMap<String, Arc<dyn ErasedHandler>>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut methods: Vec<_> = self.handlers.keys().collect();
        methods.sort();
        f.debug_struct("Router").field("methods", &methods).finish()
    }
}

impl Router {
    /// An empty router (a pure client).
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
}

/// Opens a served call for REQUEST / REQUEST_INIT (called by the dispatcher).
pub(crate) fn open_call(
    shared: &Arc<SessionShared>,
    router: &Router,
    call_id: u64,
    header: CallHeader<'_>,
    payload: Option<&[u8]>,
) {
    let mut served = shared.served();
    if served.contains_key(&call_id) {
        drop(served);
        report_protocol_violation(
            shared,
            call_id,
            format!("call id {call_id:#018x} is already open on this session"),
        );
        return;
    }
    let handler = match router.handlers.get(header.method) {
        Some(handler) if handler.kind() == header.kind => handler.clone(),
        found => {
            drop(served);
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
            return;
        }
    };
    if served.len() >= shared.config.max_concurrent_calls {
        drop(served);
        let error = RpcError::new(ErrorKind::ResourceExhausted, "too many concurrent calls");
        shared.send_error(call_id, &error);
        return;
    }
    let control = Arc::new(CallControl::default());
    let response_window = header.response_window.min(MAX_WINDOW);
    let response_credit = Arc::new(Semaphore::new(response_window as usize));
    let window = shared.config.window.clamp(1, MAX_WINDOW);
    let (requests, requests_rx) = if header.kind.streams_requests() {
        // One slot beyond the window for REQUEST_END.
        let (tx, rx) = mpsc::channel(window as usize + 1);
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    served.insert(
        call_id,
        ServerCall {
            requests,
            next_seq: 0,
            response_credit: response_credit.clone(),
            control: control.clone(),
        },
    );
    drop(served);
    if header.kind.streams_requests() {
        let _ = shared.send_frame(&Frame::RequestWindowGrant {
            call_id,
            credits: window,
        });
    }
    let deadline = match header.timeout_us {
        0 => None,
        us => Instant::now().checked_add(Duration::from_micros(us)),
    };
    let ctx = RpcContext {
        call_id,
        peer: shared.peer,
        deadline,
        trace: header.trace,
        control,
    };
    handler.start(CallStart {
        ctx,
        shared: shared.clone(),
        payload: payload.map(<[u8]>::to_vec).unwrap_or_default(),
        requests: requests_rx,
        response_credit,
        window,
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

/// Runs one handler future on its own task: `Ok(Some(bytes))` → RESPONSE, `Ok(None)` →
/// RESPONSE_END, `Err` → RESPONSE_ERROR, panic → `HandlerPanic`, deadline → `DeadlineExceeded`.
fn run_call<F>(start: CallStart, fut: F)
where
    F: Future<Output = Result<Option<Vec<u8>>, RpcError>> + Send + 'static,
{
    let shared = start.shared;
    let call_id = start.ctx.call_id;
    let control = start.ctx.control;
    let deadline = start.ctx.deadline;
    shared
        .metrics
        .active_handlers
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tokio::spawn(async move {
        let fut = AssertUnwindSafe(fut).catch_unwind();
        tokio::pin!(fut);
        let expiry = async {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(expiry);
        let outcome = tokio::select! {
            biased;
            outcome = &mut fut => Some(outcome),
            _ = control.token.cancelled() => None,
            _ = &mut expiry => {
                // Drop the request channel first so a handler blocked on its stream wakes too.
                let _ = shared.served().remove(&call_id);
                control.cancel(ErrorKind::DeadlineExceeded);
                None
            }
        };
        let still_open = shared.served().remove(&call_id).is_some();
        match outcome {
            Some(Ok(Ok(Some(payload)))) => {
                if still_open {
                    let frame = Frame::Response {
                        call_id,
                        payload: &payload,
                    };
                    if let Err(e) = shared.send_frame(&frame) {
                        shared.send_error(call_id, &e);
                    }
                }
            }
            Some(Ok(Ok(None))) => {
                if still_open {
                    let _ = shared.send_frame(&Frame::ResponseEnd { call_id });
                }
            }
            Some(Ok(Err(error))) => {
                control.cancel(error.kind);
                if still_open {
                    shared.send_error(call_id, &error);
                }
            }
            Some(Err(panic)) => {
                let message = panic_message(panic.as_ref());
                Metrics::bump(&shared.metrics.handler_panics);
                tracing::error!(call_id, panic = %message, "nRPC handler panicked");
                control.cancel(ErrorKind::HandlerPanic);
                let error = RpcError::new(ErrorKind::HandlerPanic, message);
                shared.send_error(call_id, &error);
            }
            None => {
                if control.reason.get() == Some(&ErrorKind::DeadlineExceeded) {
                    shared.send_error(call_id, &RpcError::deadline());
                }
                // Let the handler observe its token, then drop it.
                let grace = shared.config.cancel_grace;
                let _ = tokio::time::timeout(grace, &mut fut).await;
            }
        }
        shared
            .metrics
            .active_handlers
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    });
}
