//! Calling side: `Session::call_unary`, `call_server_streaming`, `call_client_streaming` and
//! `call_duplex`, and the handles they return. A call handle dropped before the call finished
//! sends REQUEST_CANCEL; for a split duplex call that happens only once both halves are gone.

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
use tokio::sync::{Semaphore, mpsc};
use tokio::time::{Instant, Sleep};

use super::session::{CallEvent, CallShared, CallerSlot, Session, SessionShared};
use super::{MAX_WINDOW, RpcError, decode_message, encode_message, random_call_id};
use crate::frame::{CallHeader, CallKind, ErrorKind, Frame, TraceContext};

/// Per-call options.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallOptions {
    /// Deadline relative to now; travels to the server, which enforces it too.
    pub timeout: Option<Duration>,
    /// Trace context handed to the handler.
    pub trace: TraceContext,
    /// Initial response window for streamed responses (default: the endpoint's window).
    pub response_window: Option<u32>,
}

impl CallOptions {
    /// Options with a timeout.
    pub fn with_timeout(timeout: Duration) -> Self {
        CallOptions {
            timeout: Some(timeout),
            ..Self::default()
        }
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

impl CallCore {
    fn open(
        session: &Session,
        method: &str,
        kind: CallKind,
        opts: &CallOptions,
        payload: Option<&[u8]>,
    ) -> Result<(Arc<CallCore>, mpsc::Receiver<CallEvent>, u32), RpcError> {
        let shared = session.shared.clone();
        if shared.closed.is_cancelled() {
            return Err(RpcError::disconnected());
        }
        let window = if kind.streams_responses() {
            opts.response_window
                .unwrap_or(shared.config.window)
                .clamp(1, MAX_WINDOW)
        } else {
            0
        };
        // One slot beyond the window for the terminal event.
        let (events, rx) = mpsc::channel(window as usize + 1);
        let call = Arc::new(CallShared {
            request_credit: Semaphore::new(0),
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
                },
            );
            call_id
        };
        let timeout_us = opts
            .timeout
            .map(|t| u64::try_from(t.as_micros()).unwrap_or(u64::MAX).max(1))
            .unwrap_or(0);
        let header = CallHeader {
            kind,
            timeout_us,
            trace: opts.trace,
            response_window: window,
            method,
        };
        let frame = match payload {
            Some(payload) => Frame::Request {
                call_id,
                header,
                payload,
            },
            None => Frame::RequestInit { call_id, header },
        };
        let deadline = opts.timeout.and_then(|t| Instant::now().checked_add(t));
        let core = Arc::new(CallCore {
            shared,
            call_id,
            call,
            deadline,
            done: AtomicBool::new(false),
        });
        if let Err(e) = core.shared.send_frame(&frame) {
            core.done.store(true, Ordering::Relaxed);
            core.shared.calls().remove(&call_id);
            return Err(e);
        }
        Ok((core, rx, window))
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
        self.call.request_credit.close();
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

    async fn recv(&self, rx: &mut mpsc::Receiver<CallEvent>) -> Result<CallEvent, RpcError> {
        let event = match self.deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(event) => event,
                Err(_) => {
                    self.abandon(ErrorKind::DeadlineExceeded);
                    return Err(RpcError::deadline());
                }
            },
            None => rx.recv().await,
        };
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

    async fn single_response<Resp: DeserializeOwned>(
        &self,
        rx: &mut mpsc::Receiver<CallEvent>,
    ) -> Result<Resp, RpcError> {
        match self.recv(rx).await? {
            CallEvent::Response(payload) => {
                self.mark_done();
                decode_message(payload.bytes())
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
    pub async fn call_unary<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        method: &str,
        req: &Req,
        opts: CallOptions,
    ) -> Result<Resp, RpcError> {
        let payload = encode_message(req)?;
        let (core, mut rx, _) =
            CallCore::open(self, method, CallKind::Unary, &opts, Some(&payload))?;
        core.single_response(&mut rx).await
    }

    /// One request, a stream of responses.
    pub fn call_server_streaming<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        method: &str,
        req: &Req,
        opts: CallOptions,
    ) -> Result<ResponseStream<Resp>, RpcError> {
        let payload = encode_message(req)?;
        let (core, rx, window) = CallCore::open(
            self,
            method,
            CallKind::ServerStreaming,
            &opts,
            Some(&payload),
        )?;
        Ok(ResponseStream::new(core, rx, window))
    }

    /// A stream of requests, one response.
    pub fn call_client_streaming<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        method: &str,
        opts: CallOptions,
    ) -> Result<ClientStreamCall<Req, Resp>, RpcError> {
        let (core, rx, _) = CallCore::open(self, method, CallKind::ClientStreaming, &opts, None)?;
        Ok(ClientStreamCall {
            sender: DuplexSender::new(core),
            rx,
            _resp: PhantomData,
        })
    }

    /// A stream of requests and a stream of responses.
    pub fn call_duplex<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        method: &str,
        opts: CallOptions,
    ) -> Result<DuplexCall<Req, Resp>, RpcError> {
        let (core, rx, window) = CallCore::open(self, method, CallKind::Duplex, &opts, None)?;
        Ok(DuplexCall {
            sender: DuplexSender::new(core.clone()),
            receiver: ResponseStream::new(core, rx, window),
        })
    }
}

/// Sends the request stream of a client-streaming or duplex call; `send` waits for credit.
#[derive(Debug)]
pub struct DuplexSender<Req> {
    core: Arc<CallCore>,
    seq: u64,
    finished: bool,
    size_hint: usize,
    _req: PhantomData<fn(Req)>,
}

impl<Req: Serialize> DuplexSender<Req> {
    fn new(core: Arc<CallCore>) -> Self {
        DuplexSender {
            core,
            seq: 0,
            finished: false,
            size_hint: 64,
            _req: PhantomData,
        }
    }

    /// Sends one request message, waiting while the server has granted no credit.
    pub async fn send(&mut self, item: &Req) -> Result<(), RpcError> {
        if self.finished {
            return Err(RpcError::new(
                ErrorKind::InvalidArgument,
                "request stream already finished",
            ));
        }
        let acquire = self.core.call.request_credit.acquire();
        let permit = match self.core.deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline, acquire).await {
                Ok(permit) => permit,
                Err(_) => {
                    self.core.abandon(ErrorKind::DeadlineExceeded);
                    return Err(RpcError::deadline());
                }
            },
            None => acquire.await,
        };
        match permit {
            Ok(permit) => permit.forget(),
            Err(_) => {
                return Err(self.core.call.terminal.get().cloned().unwrap_or_else(|| {
                    RpcError::cancelled("the server already finished the call")
                }));
            }
        }
        self.core.shared.send_chunk(
            true,
            self.core.call_id,
            self.seq,
            item,
            &mut self.size_hint,
        )?;
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

    /// Request credit currently available.
    pub fn available_credit(&self) -> usize {
        self.core.call.request_credit.available_permits()
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
    rx: mpsc::Receiver<CallEvent>,
    _resp: PhantomData<fn() -> Resp>,
}

impl<Req: Serialize, Resp: DeserializeOwned> ClientStreamCall<Req, Resp> {
    /// Sends one request message (waits for credit).
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

    /// Advanced flow control: adds `credits` of request credit locally, for a server that
    /// documents a larger window than it grants in band. The server still enforces its own
    /// queue bound and drops a session that overruns it, so this can never make it buffer more.
    pub fn grant_request_window(&self, credits: u32) {
        let call = &self.sender.core.call;
        let room = (MAX_WINDOW as usize).saturating_sub(call.request_credit.available_permits());
        call.request_credit
            .add_permits((credits as usize).min(room));
    }

    /// Request credit currently available.
    pub fn available_credit(&self) -> usize {
        self.sender.available_credit()
    }

    /// Cancels the call.
    pub fn cancel(self) {
        self.sender.cancel();
    }
}

/// A stream of responses (server-streaming calls, and the receiving half of duplex calls).
/// Consuming a message re-grants credit, so at most one window is ever queued here.
#[derive(Debug)]
pub struct ResponseStream<Resp> {
    core: Arc<CallCore>,
    rx: mpsc::Receiver<CallEvent>,
    window: u32,
    unacked: u32,
    done: bool,
    expiry: Option<Pin<Box<Sleep>>>,
    _resp: PhantomData<fn() -> Resp>,
}

/// The receiving half of a split duplex call.
pub type DuplexReceiver<Resp> = ResponseStream<Resp>;

impl<Resp> ResponseStream<Resp> {
    fn new(core: Arc<CallCore>, rx: mpsc::Receiver<CallEvent>, window: u32) -> Self {
        let expiry = core.deadline.map(|d| Box::pin(tokio::time::sleep_until(d)));
        ResponseStream {
            core,
            rx,
            window,
            unacked: 0,
            done: false,
            expiry,
            _resp: PhantomData,
        }
    }

    /// The call's id.
    pub fn call_id(&self) -> u64 {
        self.core.call_id
    }

    /// Responses queued and not yet consumed (never more than the window, plus the end marker).
    pub fn queued(&self) -> usize {
        self.rx.len()
    }

    /// Cancels the call (both directions).
    pub fn cancel(&self) {
        self.core.abandon(ErrorKind::Cancelled);
    }

    fn consumed_one(&mut self) {
        self.unacked = self.unacked.saturating_add(1);
        if self.unacked >= (self.window / 2).max(1) {
            let credits = std::mem::take(&mut self.unacked);
            let frame = Frame::ResponseWindowGrant {
                call_id: self.core.call_id,
                credits,
            };
            let _ = self.core.shared.send_frame(&frame);
        }
    }
}

impl<Resp: DeserializeOwned + 'static> Stream for ResponseStream<Resp> {
    type Item = Result<Resp, RpcError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let item = match this.rx.poll_recv(cx) {
            Poll::Ready(Some(CallEvent::Chunk(payload))) => {
                this.consumed_one();
                return Poll::Ready(Some(super::raw::decode_payload(payload, &this.core.shared)));
            }
            Poll::Ready(Some(CallEvent::End)) => None,
            Poll::Ready(Some(CallEvent::Error(e))) => Some(Err(e)),
            Poll::Ready(Some(other)) => {
                this.core.abandon(ErrorKind::Cancelled);
                Some(Err(unexpected(&other)))
            }
            Poll::Ready(None) => Some(Err(this.core.terminal_error())),
            Poll::Pending => {
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

impl<Req: Serialize, Resp: DeserializeOwned> DuplexCall<Req, Resp> {
    /// Sends one request message (waits for credit).
    pub async fn send(&mut self, item: &Req) -> Result<(), RpcError> {
        self.sender.send(item).await
    }

    /// Ends the request stream; responses keep flowing.
    pub fn finish_sending(&mut self) -> Result<(), RpcError> {
        self.sender.finish()
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

impl<Req, Resp: DeserializeOwned + 'static> Stream for DuplexCall<Req, Resp> {
    type Item = Result<Resp, RpcError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.get_mut().receiver).poll_next(cx)
    }
}
