//! The reader task: admission of every incoming frame from its length and head (before any
//! buffer for it exists), then dispatch of the decoded frame by (session, call_id).
//!
//! Admission decides what a frame may cost before its bytes are stored:
//! * control frames (no payload) are at most [`MAX_CONTROL_FRAME_LEN`]; a longer one ends the
//!   session;
//! * REQUEST_CHUNK / RESPONSE_CHUNK must fit the window this side granted for the call, or the
//!   session ends (`CreditExceeded`); chunks for calls that are gone are read past unbuffered;
//! * REQUEST / RESPONSE (one message, no window) are charged to the session's and endpoint's
//!   receive budgets; when those are spent the frame is read past unbuffered and the call is
//!   refused with `ResourceExhausted`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures_util::FutureExt;
use tokio::net::tcp::OwnedReadHalf;

use super::budget::Reservation;
use super::queue::{self, Wakes};
use super::server::{self, ReqEvent};
use super::session::{
    CallEvent, Liveness, MessageList, POOL_MIN_CAPACITY, Payload, SessionError, SessionShared,
    TaskGuard,
};
use super::{Metrics, RpcError};
use crate::frame::{
    self, ErrorKind, FRAME_VERSION, Frame, FrameError, MAX_CONTROL_FRAME_LEN, dispatch,
    peek_call_id,
};
use crate::transport::{Admit, FrameReceiver, Incoming, TransportError};

/// Reads, admits and dispatches frames until the session ends; runs the liveness timers.
pub(crate) async fn read_loop(
    shared: Arc<SessionShared>,
    mut receiver: FrameReceiver<OwnedReadHalf>,
) {
    let _task = TaskGuard(&shared);
    let mut held: Option<Reservation> = None;
    let mut wakes = Wakes::default();
    let mut liveness = Liveness::new();
    let mut ticks = tokio::time::interval(Liveness::tick(&shared.config));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if shared.is_closed() {
            break;
        }
        // Frames already buffered are dispatched without waiting; consumers are woken once
        // the reader is about to wait for the socket.
        let ready = receiver
            .recv_frame_admitted(|len, head| admit(&shared, len, head, &mut held))
            .now_or_never();
        let next = match ready {
            Some(next) => Some(next),
            None => {
                wakes.flush();
                tokio::select! {
                    biased;
                    _ = shared.closed.cancelled() => break,
                    _ = ticks.tick() => None,
                    next = receiver.recv_frame_admitted(|len, head| admit(&shared, len, head, &mut held)) => {
                        Some(next)
                    }
                }
            }
        };
        let Some(next) = next else {
            liveness.check(&shared, &mut receiver);
            continue;
        };
        if matches!(next, Ok(Some(_))) {
            shared.frames_received.fetch_add(1, Ordering::AcqRel);
        }
        match next {
            Ok(Some(Incoming::Frame(bytes))) => {
                if let Err(e) = dispatch_frame(&shared, bytes, held.take(), &mut wakes) {
                    shared.close(e);
                    break;
                }
            }
            Ok(Some(Incoming::Discarded { .. })) => {}
            Ok(None) => {
                shared.close(SessionError::PeerClosed);
                break;
            }
            Err(e) => {
                match &e {
                    SessionError::Transport(TransportError::FrameTooLarge { .. })
                    | SessionError::ControlFrameTooLarge { .. } => {
                        Metrics::bump(&shared.metrics.oversized_frames);
                    }
                    SessionError::Transport(_) => Metrics::bump(&shared.metrics.transport_errors),
                    _ => {}
                }
                tracing::info!(peer = %shared.peer.node_id(), error = %e, "nRPC session error");
                shared.close(e);
                break;
            }
        }
    }
}

/// A buffer for a frame of `len` bytes: pooled for large frames, right-sized for small ones.
fn frame_buffer(shared: &SessionShared, len: usize) -> Vec<u8> {
    if len >= POOL_MIN_CAPACITY {
        shared.take_receive_buffer(len)
    } else {
        Vec::with_capacity(len)
    }
}

/// Decides what an incoming frame of `len` bytes with head `head` may cost (see the module
/// docs). A unary frame's reservation is left in `held` for the dispatcher.
fn admit(
    shared: &Arc<SessionShared>,
    len: usize,
    head: &[u8],
    held: &mut Option<Reservation>,
) -> Result<Admit, SessionError> {
    *held = None;
    let (Some(&version), Some(&kind), Some(call_id)) =
        (head.first(), head.get(1), peek_call_id(head))
    else {
        // Shorter than a frame header: the decoder reports it.
        return Ok(Admit::Store(Vec::with_capacity(len)));
    };
    if version != FRAME_VERSION || !frame::is_data_dispatch(kind) {
        if len > MAX_CONTROL_FRAME_LEN {
            return Err(SessionError::ControlFrameTooLarge { len });
        }
        return Ok(Admit::Store(Vec::with_capacity(len)));
    }
    let charge = frame::charge(len);
    match kind {
        dispatch::REQUEST_CHUNK => {
            let admitted = shared
                .served()
                .get(&call_id)
                .filter(|call| call.requests.is_some())
                .and_then(|call| call.window.as_ref())
                .map(|window| window.admit(charge));
            admit_chunk(shared, admitted, call_id, len)
        }
        dispatch::RESPONSE_CHUNK => {
            let slot = shared
                .calls()
                .get(&call_id)
                .map(|slot| slot.window.as_ref().map(|window| window.admit(charge)));
            match slot {
                Some(None) => {
                    fail_call(
                        shared,
                        call_id,
                        RpcError::new(
                            ErrorKind::ProtocolViolation,
                            "RESPONSE_CHUNK for a call with one response",
                        ),
                    );
                    Ok(Admit::Discard)
                }
                admitted => admit_chunk(shared, admitted.flatten(), call_id, len),
            }
        }
        dispatch::REQUEST => match shared.reserve_recv(charge, charge) {
            Some(reservation) => {
                *held = Some(reservation);
                Ok(Admit::Store(frame_buffer(shared, len)))
            }
            None => {
                Metrics::bump(&shared.metrics.budget_refusals);
                shared.send_error(
                    call_id,
                    &RpcError::new(
                        ErrorKind::ResourceExhausted,
                        "receive budget spent; request not read",
                    ),
                );
                Ok(Admit::Discard)
            }
        },
        // RESPONSE
        _ => {
            if !shared.calls().contains_key(&call_id) {
                Metrics::bump(&shared.metrics.stray_frames);
                return Ok(Admit::Discard);
            }
            match shared.reserve_recv(charge, charge) {
                Some(reservation) => {
                    *held = Some(reservation);
                    Ok(Admit::Store(frame_buffer(shared, len)))
                }
                None => {
                    Metrics::bump(&shared.metrics.budget_refusals);
                    fail_call(
                        shared,
                        call_id,
                        RpcError::new(
                            ErrorKind::ResourceExhausted,
                            "receive budget spent; response not read",
                        ),
                    );
                    Ok(Admit::Discard)
                }
            }
        }
    }
}

/// Settles a chunk frame from what its call's window said (`None`: no such call, or no
/// window: the frame is read past).
fn admit_chunk(
    shared: &SessionShared,
    admitted: Option<bool>,
    call_id: u64,
    len: usize,
) -> Result<Admit, SessionError> {
    let Some(admitted) = admitted else {
        Metrics::bump(&shared.metrics.stray_frames);
        return Ok(Admit::Discard);
    };
    if !admitted {
        Metrics::bump(&shared.metrics.credit_violations);
        return Err(SessionError::CreditExceeded { call_id });
    }
    Ok(Admit::Store(frame_buffer(shared, len)))
}

/// Fails a caller's call locally and tells the server to stop.
fn fail_call(shared: &SessionShared, call_id: u64, error: RpcError) {
    if error.kind == ErrorKind::ProtocolViolation {
        Metrics::bump(&shared.metrics.protocol_violations);
    }
    finish_call(shared, call_id, CallEvent::Error(error));
    let _ = shared.send_frame(&Frame::RequestCancel {
        call_id,
        reason: ErrorKind::Cancelled,
    });
}

/// Routes one admitted frame. An `Err` ends the session.
pub(crate) fn dispatch_frame(
    shared: &Arc<SessionShared>,
    bytes: Vec<u8>,
    held: Option<Reservation>,
    wakes: &mut Wakes,
) -> Result<(), SessionError> {
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
            tracing::info!(peer = %shared.peer.node_id(), error = %e, "nRPC malformed frame");
            return Err(e.into());
        }
    };
    match frame {
        Frame::Request {
            call_id,
            header,
            payload,
        } => {
            let payload_len = payload.len();
            if let Some(prepared) = server::prepare_call(shared, call_id, &header) {
                let payload = Payload::tail_of(bytes, payload_len).with_reservation(held);
                server::start_call(shared, call_id, prepared, Some(payload));
            }
        }
        Frame::RequestInit { call_id, header } => {
            if let Some(prepared) = server::prepare_call(shared, call_id, &header) {
                server::start_call(shared, call_id, prepared, None);
            }
        }
        Frame::RequestChunk {
            call_id,
            seq,
            messages,
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
                if let Some(call) = call {
                    call.response_window.close();
                    call.control.retire();
                    call.control.cancel(ErrorKind::ProtocolViolation);
                }
                report_protocol_violation(
                    shared,
                    call_id,
                    format!("REQUEST_CHUNK seq {seq}, expected {expected}"),
                );
                return Ok(());
            }
            call.next_seq = call.next_seq.saturating_add(u64::from(messages.count()));
            let (list_len, count) = (messages.bytes().len(), messages.count());
            match &call.requests {
                Some(requests) => {
                    let list = MessageList::new(Payload::tail_of(bytes, list_len), count);
                    requests.push(ReqEvent::Chunk(list), wakes);
                }
                None => Metrics::bump(&shared.metrics.stray_frames),
            }
        }
        Frame::RequestEnd { call_id } => {
            let mut served = shared.served();
            match served
                .get_mut(&call_id)
                .and_then(|call| call.requests.take())
            {
                Some(requests) => requests.send(ReqEvent::End),
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
                    call.response_window.close();
                    call.control.retire();
                    call.control.cancel(reason);
                }
                None => Metrics::bump(&shared.metrics.stray_frames),
            }
        }
        Frame::ResponseWindowGrant { call_id, credits } => {
            let window = shared
                .served()
                .get(&call_id)
                .map(|call| call.response_window.clone());
            match window {
                Some(window) => {
                    if window.grant(credits).is_err() {
                        Metrics::bump(&shared.metrics.credit_violations);
                        return Err(SessionError::WindowOverflow { call_id });
                    }
                }
                None => Metrics::bump(&shared.metrics.stray_frames),
            }
        }
        Frame::RequestWindowGrant { call_id, credits } => {
            let call = shared.calls().get(&call_id).map(|slot| slot.shared.clone());
            match call {
                Some(call) => {
                    if call.request_window.grant(credits).is_err() {
                        Metrics::bump(&shared.metrics.credit_violations);
                        return Err(SessionError::WindowOverflow { call_id });
                    }
                }
                None => Metrics::bump(&shared.metrics.stray_frames),
            }
        }
        Frame::Response { call_id, payload } => {
            let payload_len = payload.len();
            let payload = Payload::tail_of(bytes, payload_len).with_reservation(held);
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
            messages,
        } => {
            let mut calls = shared.calls();
            let Some(slot) = calls.get_mut(&call_id) else {
                Metrics::bump(&shared.metrics.stray_frames);
                return Ok(());
            };
            if seq != slot.next_seq {
                let expected = slot.next_seq;
                drop(calls);
                fail_call(
                    shared,
                    call_id,
                    RpcError::new(
                        ErrorKind::ProtocolViolation,
                        format!("RESPONSE_CHUNK seq {seq}, expected {expected}"),
                    ),
                );
                return Ok(());
            }
            slot.next_seq = slot.next_seq.saturating_add(u64::from(messages.count()));
            let (list_len, count) = (messages.bytes().len(), messages.count());
            let list = MessageList::new(Payload::tail_of(bytes, list_len), count);
            slot.events.push(CallEvent::Chunk(list), wakes);
        }
    }
    Ok(())
}

/// Delivers a terminal event to a caller and forgets the call.
pub(crate) fn finish_call(shared: &SessionShared, call_id: u64, event: CallEvent) {
    let Some(slot) = shared.calls().remove(&call_id) else {
        Metrics::bump(&shared.metrics.stray_frames);
        return;
    };
    if let CallEvent::Error(error) = &event {
        let _ = slot.shared.terminal.set(error.clone());
    }
    slot.shared.close();
    slot.events.send(event);
}

/// A per-call protocol violation on the serving side: reply and count.
pub(crate) fn report_protocol_violation(shared: &SessionShared, call_id: u64, message: String) {
    Metrics::bump(&shared.metrics.protocol_violations);
    shared.send_error(
        call_id,
        &RpcError::new(ErrorKind::ProtocolViolation, message),
    );
}

/// The dispatcher fuzz harness (see `crate::fuzzing::dispatcher`).
pub(crate) fn fuzz_session(data: &[u8]) {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use super::Config;
    use super::budget::NodeBudgets;

    let config = Config {
        max_concurrent_calls: 8,
        session_recv_budget: 64 * 1024,
        // Below the session's: the peer's budget is the one that runs short.
        peer_recv_budget: 48 * 1024,
        node_recv_budget: 128 * 1024,
        call_window: 16 * 1024,
        min_call_window: 1024,
        call_send_budget: 8 * 1024,
        session_send_budget: 16 * 1024,
        peer_send_budget: 12 * 1024,
        node_send_budget: 32 * 1024,
        cancel_grace: Duration::ZERO,
        ..Config::default()
    };
    let _ = crate::fuzzing::block_on(async move {
        let metrics = Arc::new(Metrics::default());
        let node = Arc::new(NodeBudgets::new(
            (config.node_recv_budget, config.peer_recv_budget),
            (config.node_send_budget, config.peer_send_budget),
            metrics.clone(),
        ));
        let max_calls = config.max_concurrent_calls;
        let session_budget = config.session_recv_budget.min(config.peer_recv_budget);
        let shared = SessionShared::new(
            crate::handshake::PeerIdentity::for_harness(),
            Arc::new(config),
            metrics.clone(),
            Arc::new(crate::fuzzing::harness_router()),
            node.clone(),
        );
        let mut held = None;
        let mut wakes = Wakes::default();
        let mut rest = data;
        while let Some((len, tail)) = rest.split_first_chunk::<2>() {
            let len = usize::from(u16::from_le_bytes(*len)).min(tail.len());
            let (frame, tail) = tail.split_at(len);
            rest = tail;
            let head = frame
                .get(..frame.len().min(crate::frame::HEADER_LEN))
                .unwrap_or_default();
            let outcome = match admit(&shared, frame.len(), head, &mut held) {
                Err(e) => Err(e),
                Ok(Admit::Discard) => Ok(()),
                Ok(Admit::Store(mut buf)) => {
                    buf.clear();
                    buf.extend_from_slice(frame);
                    dispatch_frame(&shared, buf, held.take(), &mut wakes)
                }
            };
            if let Err(e) = outcome {
                shared.close(e);
                break;
            }
            assert!(
                shared.recv.held() <= session_budget,
                "receive budget exceeded"
            );
            assert!(
                shared.live_handlers.load(Ordering::Acquire) <= max_calls,
                "handler limit exceeded"
            );
            wakes.flush();
            // A peer that reads everything: queued frames count as written.
            shared.discard_outbox();
            for _ in 0..4 {
                tokio::task::yield_now().await;
            }
        }
        shared.close(SessionError::LocalClose);
        for _ in 0..10_000 {
            if shared.live_handlers.load(Ordering::Acquire) == 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(
            shared.live_handlers.load(Ordering::Acquire),
            0,
            "a handler outlived its closed session"
        );
        drop(shared);
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            metrics.recv_bytes_held.load(Ordering::Acquire),
            0,
            "receive bytes still reserved after the session ended"
        );
        assert_eq!(
            metrics.send_bytes_queued.load(Ordering::Acquire),
            0,
            "send budget not returned"
        );
    });
}

/// The queue for a call's events (see [`queue`]).
pub(crate) fn call_queue<T: Send + 'static>() -> (queue::Sender<T>, queue::Receiver<T>) {
    queue::queue()
}
