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
//!
//! * `streams`: a handler's request stream and response sink;
//! * `run`: the opening checks, the handler adapters, and the task that runs a call.

mod run;
mod streams;

use run::{ClientStreaming, Duplex, ServerStreaming, Unary};
pub(crate) use run::{ErasedHandler, prepare_call, start_call};
pub(crate) use streams::ReqEvent;
pub use streams::{Chunk, RequestStreamTyped, ResponseSink};

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::session::lock;
use super::{CallOptions, RpcError};
use crate::frame::{ErrorKind, TraceContext};
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

/// A refusal from an [`Authorize`] hook: the caller gets its kind with the message, and
/// nothing is granted for the call either way. [`Denied::new`] is `PermissionDenied` (the
/// peer may not make this call); [`Denied::unavailable`] is `Unavailable` (the callee cannot
/// take calls for what the call names right now, e.g. a group it does not run), so that a
/// caller tells the two apart by kind, never by the message's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct Denied {
    kind: ErrorKind,
    message: String,
}

impl Denied {
    /// `PermissionDenied` with `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Denied {
            kind: ErrorKind::PermissionDenied,
            message: message.into(),
        }
    }

    /// `Unavailable` with `message`.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Denied {
            kind: ErrorKind::Unavailable,
            message: message.into(),
        }
    }

    /// The error kind the caller gets.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Why the call was refused.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The error the caller gets.
    pub fn into_error(self) -> RpcError {
        RpcError::new(self.kind, self.message)
    }
}

/// The authorization hook of a [`Router`]: sees the session's authenticated peer, the method
/// and the call's metadata before anything is granted for the call, and may refuse it. It runs
/// on the session's reader task, so it must be quick (no I/O, no waiting).
pub trait Authorize: Send + Sync + 'static {
    /// `Ok` lets the call through; `Err` refuses it with the refusal's kind (see [`Denied`]).
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
