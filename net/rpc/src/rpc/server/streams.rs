//! What a streaming handler reads and writes: its request stream (typed messages, window
//! bytes returned as they are taken) and its response sink.

use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;

use super::CallControl;
use crate::frame::{Frame, TraceContext};
use crate::rpc::budget::{RecvWindow, Returner, SendWindow};
use crate::rpc::session::{MessageList, SessionShared};
use crate::rpc::{RpcError, queue};

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
    pub(super) rx: queue::Receiver<ReqEvent>,
    pub(super) shared: Arc<SessionShared>,
    pub(super) call_id: u64,
    pub(super) trace: TraceContext,
    pub(super) window: Option<Arc<RecvWindow>>,
    pub(super) returner: Returner,
    /// The chunk frame being taken apart, if its messages are not all taken yet.
    pub(super) pending: Option<MessageList>,
    pub(super) next_seq: u64,
    pub(super) init_seen: bool,
    pub(super) done: bool,
    pub(super) control: Arc<CallControl>,
    pub(super) _req: PhantomData<fn() -> Req>,
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
        let (item, done) = crate::rpc::raw::decode_next::<Req>(&mut self.pending, &self.shared)?;
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
    pub(super) shared: Arc<SessionShared>,
    pub(super) call_id: u64,
    pub(super) window: Arc<SendWindow>,
    pub(super) budget: Arc<Semaphore>,
    pub(super) control: Arc<CallControl>,
    pub(super) seq: u64,
    pub(super) size_hint: usize,
    /// Reused encode buffer for small messages.
    pub(super) scratch: Vec<u8>,
    pub(super) _resp: PhantomData<fn(Resp)>,
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
