//! Calling side: `Session::call_unary`, `call_server_streaming`, `call_client_streaming` and
//! `call_duplex`, and the handles they return. A call handle dropped before the call finished
//! sends REQUEST_CANCEL; for a split duplex call that happens only once both halves are gone.
//!
//! A call that streams responses reserves its receive window from this side's session and
//! endpoint budgets when it opens (refused locally with `ResourceExhausted` when they are
//! spent); streamed requests wait for the window the server grants, and every message (and a
//! unary request) waits for the send budgets.

use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::future::Future;
use tokio::time::{Instant, Sleep};

use super::budget::{RecvWindow, Returner, SendBudget, SendWindow, TakenWindow};
use super::dispatch::call_queue;
use super::queue::Receiver;
use super::session::{CallEvent, CallShared, CallerSlot, MessageList, Session, SessionShared};
use super::{RpcError, decode_message, random_call_id};
use crate::frame::{CallHeader, CallKind, ErrorKind, Frame, TraceContext};

/// Per-call options.
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    /// Deadline relative to now; travels to the server, which enforces it too.
    pub timeout: Option<Duration>,
    /// Trace context handed to the handler (it travels in the call header).
    pub trace: TraceContext,
    /// This side's receive window for streamed responses, in charged bytes (default and cap:
    /// the endpoint's `Config::call_window`).
    pub response_window: Option<u32>,
    /// Opaque call metadata for the server's authorization hook and handler (e.g. a permission
    /// token), at most `frame::MAX_METADATA_LEN` bytes.
    pub metadata: Vec<u8>,
}

impl CallOptions {
    /// Options with a timeout.
    pub fn with_timeout(timeout: Duration) -> Self {
        CallOptions {
            timeout: Some(timeout),
            ..Self::default()
        }
    }

    /// These options with a trace context.
    pub fn trace(mut self, trace: TraceContext) -> Self {
        self.trace = trace;
        self
    }

    /// These options with call metadata.
    pub fn metadata(mut self, metadata: impl Into<Vec<u8>>) -> Self {
        self.metadata = metadata.into();
        self
    }
}

/// The caller's half of one call, shared by every handle of that call.
#[derive(Debug)]
struct CallCore {
    shared: Arc<SessionShared>,
    call_id: u64,
    call: Arc<CallShared>,
    deadline: Option<Instant>,
    done: AtomicBool,
}

/// What opening a call yields: the call, its event queue and (for streamed responses) its
/// receive window.
type Opened = (Arc<CallCore>, Receiver<CallEvent>, Option<Arc<RecvWindow>>);

impl CallCore {
    /// Registers a call (reserving its response window) without sending anything yet.
    fn register(session: &Session, kind: CallKind, opts: &CallOptions) -> Result<Opened, RpcError> {
        let shared = session.shared.clone();
        if shared.closed.is_cancelled() {
            return Err(RpcError::disconnected());
        }
        let window = if kind.streams_responses() {
            let config = &shared.config;
            let want = opts
                .response_window
                .unwrap_or(config.call_window)
                .min(config.call_window)
                .max(1) as usize;
            let min = (config.min_call_window as usize).min(want).max(1);
            let reservation = shared.reserve_recv(want, min).ok_or_else(|| {
                RpcError::new(
                    ErrorKind::ResourceExhausted,
                    "receive budget spent; no window for the responses",
                )
            })?;
            Some(Arc::new(RecvWindow::new(reservation)))
        } else {
            None
        };
        let (events, rx) = call_queue();
        let call = Arc::new(CallShared {
            request_window: SendWindow::unannounced(),
            send_budget: SendBudget::call_budget(shared.config.call_send_budget),
            terminal: OnceLock::new(),
        });
        let call_id = {
            let mut calls = shared.calls();
            let mut call_id = random_call_id()?;
            while calls.contains_key(&call_id) {
                call_id = random_call_id()?;
            }
            calls.insert(
                call_id,
                CallerSlot {
                    events,
                    shared: call.clone(),
                    next_seq: 0,
                    window: window.clone(),
                },
            );
            call_id
        };
        let deadline = opts.timeout.and_then(|t| Instant::now().checked_add(t));
        let core = Arc::new(CallCore {
            shared,
            call_id,
            call,
            deadline,
            done: AtomicBool::new(false),
        });
        Ok((core, rx, window))
    }

    /// The call header for this call.
    fn header<'a>(
        kind: CallKind,
        method: &'a str,
        opts: &'a CallOptions,
        window: Option<&Arc<RecvWindow>>,
    ) -> CallHeader<'a> {
        let timeout_us = opts
            .timeout
            .map(|t| u64::try_from(t.as_micros()).unwrap_or(u64::MAX).max(1))
            .unwrap_or(0);
        CallHeader {
            kind,
            timeout_us,
            trace: opts.trace,
            response_window: window.map_or(0, |w| w.window()),
            method,
            metadata: &opts.metadata,
        }
    }

    /// Opens a call with a REQUEST carrying `req` (waits for send budget).
    async fn open_request<Req: Serialize>(
        session: &Session,
        method: &str,
        kind: CallKind,
        opts: &CallOptions,
        req: &Req,
    ) -> Result<Opened, RpcError> {
        let (core, rx, window) = Self::register(session, kind, opts)?;
        let header = Self::header(kind, method, opts, window.as_ref());
        if let Err(e) = core.send_request(&header, req).await {
            core.forget();
            return Err(e);
        }
        Ok((core, rx, window))
    }

    /// Opens a call with REQUEST_INIT (a control frame: nothing to wait for).
    fn open_init(
        session: &Session,
        method: &str,
        kind: CallKind,
        opts: &CallOptions,
    ) -> Result<Opened, RpcError> {
        let (core, rx, window) = Self::register(session, kind, opts)?;
        let header = Self::header(kind, method, opts, window.as_ref());
        let init = Frame::RequestInit {
            call_id: core.call_id,
            header,
        };
        if let Err(e) = core.shared.send_frame(&init) {
            core.forget();
            return Err(e);
        }
        Ok((core, rx, window))
    }

    /// Drops a call whose opening frame was never sent (nothing to cancel on the server).
    fn forget(&self) {
        self.done.store(true, Ordering::Relaxed);
        self.call.close();
        self.shared.calls().remove(&self.call_id);
    }

    /// Encodes and queues a REQUEST frame, waiting for send budget (and the deadline).
    async fn send_request<Req: Serialize>(
        &self,
        header: &CallHeader<'_>,
        req: &Req,
    ) -> Result<(), RpcError> {
        let mut frame = Vec::new();
        let offset = crate::frame::begin_request(&mut frame, self.call_id, header)
            .map_err(|e| RpcError::new(ErrorKind::InvalidArgument, format!("frame: {e}")))?;
        let frame = postcard::to_extend(req, frame)
            .map_err(|e| RpcError::new(ErrorKind::Decode, format!("encode: {e}")))?;
        crate::frame::finish_payload(&frame, offset)
            .map_err(|e| RpcError::new(ErrorKind::InvalidArgument, format!("frame: {e}")))?;
        let charge = crate::frame::charge(frame.len());
        let reserve = self
            .shared
            .reserve_send(Some(&self.call.send_budget), charge);
        let charge = self.until_deadline(reserve).await??;
        self.shared.enqueue_data(frame, charge)
    }

    /// Waits until a message charged `charge` bytes fits the call's window and the send
    /// budgets, and takes them (or fails: the call ended, its deadline passed, too large).
    async fn wait_for_send_room(&self, charge: usize) -> Result<TakenWindow<'_>, RpcError> {
        let core = self;
        let wait = async {
            let taken = core
                .call
                .request_window
                .take_message(charge)
                .await
                .map_err(|e| {
                    e.into_rpc(charge, "server", || {
                        core.call.terminal.get().cloned().unwrap_or_else(|| {
                            RpcError::cancelled("the server already finished the call")
                        })
                    })
                })?;
            core.shared
                .reserve_send_bytes(Some(&core.call.send_budget), charge)
                .await
                .map_err(|e| core.call.terminal.get().cloned().unwrap_or(e))?;
            Ok(taken)
        };
        match core.until_deadline(wait).await {
            Ok(Ok(taken)) => Ok(taken),
            Ok(Err(e)) | Err(e) => Err(e),
        }
    }

    /// Runs `fut` until the call's deadline (abandoning the call when it passes).
    async fn until_deadline<T>(&self, fut: impl Future<Output = T>) -> Result<T, RpcError> {
        match self.deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline, fut).await {
                Ok(out) => Ok(out),
                Err(_) => {
                    self.abandon(ErrorKind::DeadlineExceeded);
                    Err(RpcError::deadline())
                }
            },
            None => Ok(fut.await),
        }
    }

    fn terminal_error(&self) -> RpcError {
        self.call
            .terminal
            .get()
            .cloned()
            .unwrap_or_else(RpcError::disconnected)
    }

    /// Abandons the call (cancel, deadline, drop): tells the server unless it already finished.
    fn abandon(&self, reason: ErrorKind) {
        if self.done.swap(true, Ordering::AcqRel) {
            return;
        }
        let error = match reason {
            ErrorKind::DeadlineExceeded => RpcError::deadline(),
            _ => RpcError::cancelled("call cancelled by the caller"),
        };
        let _ = self.call.terminal.set(error);
        self.call.close();
        if self.shared.calls().remove(&self.call_id).is_some() {
            let _ = self.shared.send_frame(&Frame::RequestCancel {
                call_id: self.call_id,
                reason,
            });
        }
    }

    fn mark_done(&self) {
        self.done.store(true, Ordering::Release);
    }

    async fn recv(&self, rx: &mut Receiver<CallEvent>) -> Result<CallEvent, RpcError> {
        let event = self.until_deadline(rx.recv()).await?;
        match event {
            Some(CallEvent::Error(e)) => {
                self.mark_done();
                Err(e)
            }
            Some(event) => Ok(event),
            None => {
                self.mark_done();
                Err(self.terminal_error())
            }
        }
    }

    async fn single_response<Resp: DeserializeOwned + Serialize>(
        &self,
        rx: &mut Receiver<CallEvent>,
    ) -> Result<Resp, RpcError> {
        match self.recv(rx).await? {
            CallEvent::Response(payload) => {
                self.mark_done();
                let resp = decode_message(payload.bytes());
                payload.recycle(&self.shared);
                resp
            }
            other => {
                self.abandon(ErrorKind::Cancelled);
                Err(unexpected(&other))
            }
        }
    }
}

impl Drop for CallCore {
    fn drop(&mut self) {
        self.abandon(ErrorKind::Cancelled);
    }
}

fn unexpected(event: &CallEvent) -> RpcError {
    let what = match event {
        CallEvent::Response(_) => "RESPONSE",
        CallEvent::Chunk(_) => "RESPONSE_CHUNK",
        CallEvent::End => "RESPONSE_END",
        CallEvent::Error(_) => "RESPONSE_ERROR",
    };
    RpcError::new(
        ErrorKind::ProtocolViolation,
        format!("unexpected {what} for this call kind"),
    )
}

impl Session {
    /// One request, one response.
    pub async fn call_unary<Req: Serialize, Resp: DeserializeOwned + Serialize>(
        &self,
        method: &str,
        req: &Req,
        opts: CallOptions,
    ) -> Result<Resp, RpcError> {
        let (core, mut rx, _) =
            CallCore::open_request(self, method, CallKind::Unary, &opts, req).await?;
        core.single_response(&mut rx).await
    }

    /// One request, a stream of responses.
    pub async fn call_server_streaming<Req: Serialize, Resp: DeserializeOwned + Serialize>(
        &self,
        method: &str,
        req: &Req,
        opts: CallOptions,
    ) -> Result<ResponseStream<Resp>, RpcError> {
        let (core, rx, window) =
            CallCore::open_request(self, method, CallKind::ServerStreaming, &opts, req).await?;
        Ok(ResponseStream::new(core, rx, window))
    }

    /// A stream of requests, one response.
    pub fn call_client_streaming<Req: Serialize, Resp: DeserializeOwned + Serialize>(
        &self,
        method: &str,
        opts: CallOptions,
    ) -> Result<ClientStreamCall<Req, Resp>, RpcError> {
        let (core, rx, _) = CallCore::open_init(self, method, CallKind::ClientStreaming, &opts)?;
        Ok(ClientStreamCall {
            sender: DuplexSender::new(core),
            rx,
            _resp: PhantomData,
        })
    }

    /// A stream of requests and a stream of responses.
    pub fn call_duplex<Req: Serialize, Resp: DeserializeOwned + Serialize>(
        &self,
        method: &str,
        opts: CallOptions,
    ) -> Result<DuplexCall<Req, Resp>, RpcError> {
        let (core, rx, window) = CallCore::open_init(self, method, CallKind::Duplex, &opts)?;
        Ok(DuplexCall {
            sender: DuplexSender::new(core.clone()),
            receiver: ResponseStream::new(core, rx, window),
        })
    }
}

/// The request window a server granted for a streamed-request call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestWindow {
    /// The whole per-call window the server granted, in charged bytes (0 until its grant
    /// arrives). A message whose charge exceeds it fails with `ResourceExhausted`.
    pub window: u32,
    /// Bytes that can be sent right now without waiting for the server.
    pub available: usize,
}

/// Sends the request stream of a client-streaming or duplex call; `send` waits for the
/// server's window and the send budgets.
#[derive(Debug)]
pub struct DuplexSender<Req> {
    core: Arc<CallCore>,
    seq: u64,
    finished: bool,
    size_hint: usize,
    /// Reused encode buffer for small messages.
    scratch: Vec<u8>,
    _req: PhantomData<fn(Req)>,
}

impl<Req: Serialize> DuplexSender<Req> {
    fn new(core: Arc<CallCore>) -> Self {
        DuplexSender {
            core,
            seq: 0,
            finished: false,
            size_hint: 64,
            scratch: Vec::new(),
            _req: PhantomData,
        }
    }

    /// Sends one request message, waiting while the server's window or the send budget is
    /// spent; fails with `ResourceExhausted` for a message larger than the whole window.
    /// Cancel-safe: a send dropped while it waits (a caller's own timeout) or that fails
    /// sends nothing and gives back what it took of the window.
    pub async fn send(&mut self, item: &Req) -> Result<(), RpcError> {
        if self.finished {
            return Err(RpcError::new(
                ErrorKind::InvalidArgument,
                "request stream already finished",
            ));
        }
        let core = &self.core;
        let (frame_len, charge) = SessionShared::measure_chunk(item)?;
        // Usually the window and the budgets have room: taken without a future (moving a
        // waiting send's futures cost more than copying a 1 KiB message into the outbox;
        // BENCHMARKS.md). A window taken without the budget goes back to the call (owed).
        let now = core
            .call
            .request_window
            .try_take_message(charge)
            .filter(|_| {
                core.shared
                    .try_reserve_send_bytes(Some(&core.call.send_budget), charge)
            });
        let taken = match now {
            Some(taken) => taken,
            None => core.wait_for_send_room(charge).await?,
        };
        let appended = core.shared.send_chunk(
            true,
            core.call_id,
            self.seq,
            item,
            frame_len,
            &core.call.send_budget,
            charge,
            &mut self.scratch,
            &mut self.size_hint,
        )?;
        taken.spent();
        if appended {
            core.call.request_window.appended();
        }
        self.seq = self.seq.saturating_add(1);
        Ok(())
    }

    /// Ends the request stream (REQUEST_END). Idempotent.
    pub fn finish(&mut self) -> Result<(), RpcError> {
        if !self.finished {
            self.finished = true;
            self.core.shared.send_frame(&Frame::RequestEnd {
                call_id: self.core.call_id,
            })?;
        }
        Ok(())
    }

    /// Window bytes currently available.
    pub fn available_credit(&self) -> usize {
        self.core.call.request_window.available()
    }

    /// The request window the server granted: its size and what is free now.
    pub fn grant_request_window(&self) -> RequestWindow {
        RequestWindow {
            window: self.core.call.request_window.window(),
            available: self.available_credit(),
        }
    }

    /// The call's id.
    pub fn call_id(&self) -> u64 {
        self.core.call_id
    }

    /// Cancels the whole call (both directions).
    pub fn cancel(&self) {
        self.core.abandon(ErrorKind::Cancelled);
    }
}

/// A client-streaming call in progress.
#[derive(Debug)]
pub struct ClientStreamCall<Req, Resp> {
    sender: DuplexSender<Req>,
    rx: Receiver<CallEvent>,
    _resp: PhantomData<fn() -> Resp>,
}

impl<Req: Serialize, Resp: DeserializeOwned + Serialize> ClientStreamCall<Req, Resp> {
    /// Sends one request message (waits for window and budget).
    pub async fn send(&mut self, item: &Req) -> Result<(), RpcError> {
        self.sender.send(item).await
    }

    /// Ends the request stream and waits for the response.
    pub async fn finish(mut self) -> Result<Resp, RpcError> {
        self.sender.finish()?;
        self.sender.core.single_response(&mut self.rx).await
    }

    /// The call's id.
    pub fn call_id(&self) -> u64 {
        self.sender.call_id()
    }

    /// The request window the server granted (the accessor for callers that size their
    /// messages or batching to it). The window is always the server's choice: a caller cannot
    /// enlarge it, and sending past it would be a protocol violation.
    pub fn grant_request_window(&self) -> RequestWindow {
        self.sender.grant_request_window()
    }

    /// Window bytes currently available.
    pub fn available_credit(&self) -> usize {
        self.sender.available_credit()
    }

    /// Cancels the call.
    pub fn cancel(self) {
        self.sender.cancel();
    }
}

/// A stream of responses (server-streaming calls, and the receiving half of duplex calls).
/// Consuming messages returns window bytes, so at most one window is ever queued here.
#[derive(Debug)]
pub struct ResponseStream<Resp> {
    core: Arc<CallCore>,
    rx: Receiver<CallEvent>,
    window: Option<Arc<RecvWindow>>,
    returner: Returner,
    /// The chunk frame being taken apart, if its messages are not all taken yet.
    pending: Option<MessageList>,
    done: bool,
    expiry: Option<Pin<Box<Sleep>>>,
    _resp: PhantomData<fn() -> Resp>,
}

/// The receiving half of a split duplex call.
pub type DuplexReceiver<Resp> = ResponseStream<Resp>;

impl<Resp> ResponseStream<Resp> {
    fn new(core: Arc<CallCore>, rx: Receiver<CallEvent>, window: Option<Arc<RecvWindow>>) -> Self {
        let expiry = core.deadline.map(|d| Box::pin(tokio::time::sleep_until(d)));
        let size = window.as_ref().map_or(0, |w| w.window());
        ResponseStream {
            core,
            rx,
            window,
            returner: Returner::new(size),
            pending: None,
            done: false,
            expiry,
            _resp: PhantomData,
        }
    }

    /// The call's id.
    pub fn call_id(&self) -> u64 {
        self.core.call_id
    }

    /// Responses queued and not yet consumed (never more than fit the window, plus the end
    /// marker), counting a queued chunk frame that carries several as one.
    pub fn queued(&self) -> usize {
        self.rx
            .len()
            .saturating_add(self.pending.as_ref().map_or(0, MessageList::left))
    }

    /// This call's receive window for responses, in charged bytes.
    pub fn window(&self) -> u32 {
        self.window.as_ref().map_or(0, |w| w.window())
    }

    /// Cancels the call (both directions).
    pub fn cancel(&self) {
        self.core.abandon(ErrorKind::Cancelled);
    }

    fn give_back(&mut self, bytes: Option<u32>) {
        let (Some(window), Some(bytes)) = (&self.window, bytes) else {
            return;
        };
        window.reopen(bytes);
        let frame = Frame::ResponseWindowGrant {
            call_id: self.core.call_id,
            credits: bytes,
        };
        let _ = self.core.shared.send_frame(&frame);
    }
}

impl<Resp: DeserializeOwned + Serialize + 'static> ResponseStream<Resp> {
    /// The next message of the chunk frame being taken apart, if any.
    fn next_pending(&mut self) -> Option<Result<Resp, RpcError>> {
        let (item, done) = super::raw::decode_next::<Resp>(&mut self.pending, &self.core.shared)?;
        if let Some(charge) = done {
            let bytes = self.returner.consumed(charge);
            self.give_back(bytes);
        }
        Some(item)
    }
}

impl<Resp: DeserializeOwned + Serialize + 'static> Stream for ResponseStream<Resp> {
    type Item = Result<Resp, RpcError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let item = loop {
            if let Some(item) = this.next_pending() {
                return Poll::Ready(Some(item));
            }
            break match this.rx.poll_recv(cx) {
                // A frame's messages are taken at the top of the loop.
                Poll::Ready(Some(CallEvent::Chunk(list))) => {
                    this.pending = Some(list);
                    continue;
                }
                Poll::Ready(Some(CallEvent::End)) => None,
                Poll::Ready(Some(CallEvent::Error(e))) => Some(Err(e)),
                Poll::Ready(Some(other)) => {
                    this.core.abandon(ErrorKind::Cancelled);
                    Some(Err(unexpected(&other)))
                }
                Poll::Ready(None) => Some(Err(this.core.terminal_error())),
                Poll::Pending => {
                    let bytes = this.returner.idle();
                    this.give_back(bytes);
                    let expired = this
                        .expiry
                        .as_mut()
                        .is_some_and(|s| s.as_mut().poll(cx).is_ready());
                    if !expired {
                        return Poll::Pending;
                    }
                    this.core.abandon(ErrorKind::DeadlineExceeded);
                    Some(Err(RpcError::deadline()))
                }
            };
        };
        this.done = true;
        this.core.mark_done();
        Poll::Ready(item)
    }
}

/// A duplex call: send requests, and read responses as a `Stream`.
#[derive(Debug)]
pub struct DuplexCall<Req, Resp> {
    sender: DuplexSender<Req>,
    receiver: ResponseStream<Resp>,
}

impl<Req: Serialize, Resp: DeserializeOwned + Serialize> DuplexCall<Req, Resp> {
    /// Sends one request message (waits for window and budget).
    pub async fn send(&mut self, item: &Req) -> Result<(), RpcError> {
        self.sender.send(item).await
    }

    /// Ends the request stream; responses keep flowing.
    pub fn finish_sending(&mut self) -> Result<(), RpcError> {
        self.sender.finish()
    }

    /// The request window the server granted (see [`ClientStreamCall::grant_request_window`]).
    pub fn grant_request_window(&self) -> RequestWindow {
        self.sender.grant_request_window()
    }

    /// Splits into halves that can move to separate tasks. Dropping one half does not cancel
    /// the call; dropping both before the response stream ended does.
    pub fn into_split(self) -> (DuplexSender<Req>, DuplexReceiver<Resp>) {
        (self.sender, self.receiver)
    }

    /// The call's id.
    pub fn call_id(&self) -> u64 {
        self.sender.call_id()
    }

    /// Cancels the call (both directions).
    pub fn cancel(&self) {
        self.sender.cancel();
    }
}

impl<Req, Resp: DeserializeOwned + Serialize + 'static> Stream for DuplexCall<Req, Resp> {
    type Item = Result<Resp, RpcError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.get_mut().receiver).poll_next(cx)
    }
}
