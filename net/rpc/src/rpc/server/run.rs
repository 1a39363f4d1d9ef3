//! Running one call: the opening checks ([`prepare_call`]), the start of its handler, and the
//! task that runs it (deadline, cancellation, panic → `HandlerPanic`) and answers.

use std::any::Any;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::FutureExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use super::streams::{ReqEvent, RequestStreamTyped, ResponseSink};
use super::{
    CallControl, RpcClientStreamingHandler, RpcContext, RpcDuplexHandler,
    RpcServerStreamingHandler, RpcUnaryHandler,
};
use crate::frame::{CallHeader, CallKind, ErrorKind, Frame, TraceContext};
use crate::rpc::budget::{RecvWindow, Reservation, Returner, SendBudget, SendWindow};
use crate::rpc::dispatch::{call_queue, report_protocol_violation};
use crate::rpc::session::{Payload, SendCharge, ServerCall, SessionShared, error_frame};
use crate::rpc::{Metrics, RpcError, decode_message, queue};

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

pub(super) struct Unary<H>(pub(super) Arc<H>);
pub(super) struct ServerStreaming<H>(pub(super) Arc<H>);
pub(super) struct ClientStreaming<H>(pub(super) Arc<H>);
pub(super) struct Duplex<H>(pub(super) Arc<H>);

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
        && let Err(denied) = hook.authorize(&shared.peer, header.method, header.metadata)
    {
        Metrics::bump(&shared.metrics.authorization_refusals);
        shared.send_error(call_id, &denied.into_error());
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
