//! Byte accounting: receive reservations (never waited for: what does not fit is refused),
//! send budgets (waited for: a sender blocks until its bytes are written), and the two sides
//! of a per-call window.
//!
//! Every budget counts charged bytes (`frame::charge`). Receive bytes are reserved from the
//! session's budget and the endpoint's together and released when the [`Reservation`] drops.
//! Spare buffers a session keeps for reuse hold receive bytes too, but only while nothing else
//! needs them: a window or message reservation that does not fit takes them back first
//! ([`Reclaim`]), so a pool of idle buffers never shrinks a window or refuses a call. Send
//! bytes are taken from the call's, the session's and the endpoint's semaphores, in that
//! order, and returned once the writer has written them. A session returns whatever endpoint
//! send bytes it still holds when it is dropped, so no path can leak endpoint budget.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use super::{ErrorKind, Metrics, RpcError};
use crate::NodeId;

/// Bytes held against a limit; taking never waits.
#[derive(Debug)]
pub(crate) struct Limit {
    limit: usize,
    held: AtomicUsize,
}

impl Limit {
    pub(crate) fn new(limit: usize) -> Self {
        Limit {
            limit,
            held: AtomicUsize::new(0),
        }
    }

    /// Takes up to `want` bytes but at least `min` (all of `want` when `min == want`); `None`
    /// when not even `min` is free. Returns the bytes taken and the new total held.
    fn take(&self, want: usize, min: usize) -> Option<(usize, usize)> {
        let mut taken = 0;
        let updated = self
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                let free = self.limit.saturating_sub(held);
                let n = want.min(free);
                if n < min {
                    return None;
                }
                taken = n;
                Some(held.saturating_add(n))
            })
            .ok()?;
        Some((taken, updated.saturating_add(taken)))
    }

    fn give(&self, n: usize) -> usize {
        let before = self
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                Some(held.saturating_sub(n))
            })
            .unwrap_or(0);
        before.saturating_sub(n)
    }

    pub(crate) fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }
}

/// Receive bytes held by something that can give them back at once: a session's spare
/// buffers.
pub(crate) trait Reclaim: Send + Sync + std::fmt::Debug {
    /// Gives back every byte held; returns how many.
    fn reclaim(&self) -> usize;
}

/// The endpoint-wide budgets its sessions share.
#[derive(Debug)]
pub(crate) struct NodeBudgets {
    recv: Limit,
    send: Semaphore,
    send_limit: usize,
    /// Send bytes all sessions with one peer may hold ([`NodeBudgets::peer`]).
    peer_send_limit: usize,
    /// Receive bytes all sessions with one peer may hold.
    peer_recv_limit: usize,
    /// Each peer's budgets, shared by its sessions while any is alive.
    peers: Mutex<HashMap<NodeId, Weak<PeerBudgets>>>,
    metrics: Arc<Metrics>,
    /// Every session's spare buffers, taken back when the endpoint's receive budget is short.
    spares: Mutex<Vec<Weak<dyn Reclaim>>>,
}

impl NodeBudgets {
    /// Budgets of `recv_limit` and `send_limit` bytes, of which one peer's sessions together
    /// may hold at most `peer_recv_limit` received and `peer_send_limit` to send.
    pub(crate) fn new(
        (recv_limit, peer_recv_limit): (usize, usize),
        (send_limit, peer_send_limit): (usize, usize),
        metrics: Arc<Metrics>,
    ) -> Self {
        let send_limit = send_limit.min(Semaphore::MAX_PERMITS);
        NodeBudgets {
            recv: Limit::new(recv_limit),
            send: Semaphore::new(send_limit),
            send_limit,
            peer_send_limit: peer_send_limit.min(send_limit),
            peer_recv_limit: peer_recv_limit.min(recv_limit),
            peers: Mutex::new(HashMap::new()),
            metrics,
            spares: Mutex::new(Vec::new()),
        }
    }

    /// The budgets all sessions with `peer` share (made for its first session, dropped with
    /// its last), so one identity cannot hold every byte the endpoint may receive or queue.
    pub(crate) fn peer(&self, peer: NodeId) -> Arc<PeerBudgets> {
        let mut all = self
            .peers
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if let Some(live) = all.get(&peer).and_then(Weak::upgrade) {
            return live;
        }
        all.retain(|_, budgets| budgets.strong_count() > 0);
        let budgets = Arc::new(PeerBudgets {
            recv: Limit::new(self.peer_recv_limit),
            send: Semaphore::new(self.peer_send_limit),
        });
        all.insert(peer, Arc::downgrade(&budgets));
        budgets
    }

    fn spares(&self) -> std::sync::MutexGuard<'_, Vec<Weak<dyn Reclaim>>> {
        self.spares
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Registers a session's spare buffers (forgetting those of sessions that are gone).
    pub(crate) fn register_spares(&self, spares: Weak<dyn Reclaim>) {
        let mut all = self.spares();
        all.retain(|s| s.strong_count() > 0);
        all.push(spares);
    }

    /// Takes back every session's spare buffers; returns the bytes given back.
    fn reclaim_spares(&self) -> usize {
        let live: Vec<Arc<dyn Reclaim>> = self.spares().iter().filter_map(Weak::upgrade).collect();
        live.iter().map(|s| s.reclaim()).sum()
    }

    /// Updates the queued-bytes gauge and its peak. Called per message by every sender of the
    /// endpoint, so it writes the shared gauges only when they change meaningfully: the gauge
    /// when it moved by [`GAUGE_STEP`] or reached 0, the peak when it grew.
    fn note_send_level(&self) {
        let queued = self
            .send_limit
            .saturating_sub(self.send.available_permits());
        let queued = u64::try_from(queued).unwrap_or(u64::MAX);
        let gauge = &self.metrics.send_bytes_queued;
        if queued == 0 || gauge.load(Ordering::Relaxed).abs_diff(queued) >= GAUGE_STEP {
            gauge.store(queued, Ordering::Relaxed);
        }
        let peak = &self.metrics.send_bytes_peak;
        if queued > peak.load(Ordering::Relaxed) {
            peak.fetch_max(queued, Ordering::Relaxed);
        }
    }
}

/// How far the endpoint's queued-bytes gauge may lag behind the level (bytes).
const GAUGE_STEP: u64 = 64 * 1024;

/// What all sessions with one peer share, under the endpoint's budgets.
#[derive(Debug)]
pub(crate) struct PeerBudgets {
    recv: Limit,
    send: Semaphore,
}

/// One session's receive budget, on top of its peer's and the endpoint's.
#[derive(Debug)]
pub(crate) struct RecvBudget {
    session: Limit,
    peer: Arc<PeerBudgets>,
    node: Arc<NodeBudgets>,
}

impl RecvBudget {
    pub(crate) fn new(limit: usize, peer: Arc<PeerBudgets>, node: Arc<NodeBudgets>) -> Arc<Self> {
        Arc::new(RecvBudget {
            session: Limit::new(limit),
            peer,
            node,
        })
    }

    /// Reserves between `min` and `want` bytes from this session's, its peer's and the
    /// endpoint's budgets (as much as all have free); `None` when not even `min` fits. Spare buffers keep what
    /// they hold: this is how they reserve (see [`RecvBudget::reserve_reclaiming`] for the rest).
    pub(crate) fn reserve(self: &Arc<Self>, want: usize, min: usize) -> Option<Reservation> {
        self.take(want, min).ok()
    }

    /// [`RecvBudget::reserve`] for a window or a message: when `want` does not fit, spare
    /// buffers give their bytes back first — `own` (this session's) when the session's or the
    /// peer's budget is short, then every session's when the peer's or the endpoint's is — and
    /// only then is the reservation cut
    /// down towards `min`, or refused.
    pub(crate) fn reserve_reclaiming(
        self: &Arc<Self>,
        want: usize,
        min: usize,
        own: &dyn Reclaim,
    ) -> Option<Reservation> {
        let mut short = match self.take(want, want) {
            Ok(reservation) => return Some(reservation),
            Err(short) => short,
        };
        if short != Short::Endpoint && own.reclaim() > 0 {
            short = match self.take(want, want) {
                Ok(reservation) => return Some(reservation),
                Err(short) => short,
            };
        }
        if short != Short::Session
            && self.node.reclaim_spares() > 0
            && let Ok(reservation) = self.take(want, want)
        {
            return Some(reservation);
        }
        self.take(want, min).ok()
    }

    fn take(self: &Arc<Self>, want: usize, min: usize) -> Result<Reservation, Short> {
        let (from_session, _) = self.session.take(want, min).ok_or(Short::Session)?;
        let Some((from_peer, _)) = self.peer.recv.take(from_session, min) else {
            self.session.give(from_session);
            return Err(Short::Peer);
        };
        let Some((bytes, node_held)) = self.node.recv.take(from_peer, min) else {
            self.session.give(from_session);
            self.peer.recv.give(from_peer);
            return Err(Short::Endpoint);
        };
        self.session.give(from_session.saturating_sub(bytes));
        self.peer.recv.give(from_peer.saturating_sub(bytes));
        let held = u64::try_from(node_held).unwrap_or(u64::MAX);
        let metrics = &self.node.metrics;
        metrics.recv_bytes_held.store(held, Ordering::Relaxed);
        metrics.recv_bytes_peak.fetch_max(held, Ordering::Relaxed);
        Ok(Reservation {
            budget: self.clone(),
            bytes,
        })
    }

    /// Bytes this session holds reserved.
    pub(crate) fn held(&self) -> usize {
        self.session.held()
    }
}

/// Which budget had no room for a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Short {
    Session,
    Peer,
    Endpoint,
}

/// Receive bytes held until dropped.
#[derive(Debug)]
pub(crate) struct Reservation {
    budget: Arc<RecvBudget>,
    bytes: usize,
}

impl Reservation {
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.session.give(self.bytes);
        self.budget.peer.recv.give(self.bytes);
        let held = self.budget.node.recv.give(self.bytes);
        self.budget
            .node
            .metrics
            .recv_bytes_held
            .store(u64::try_from(held).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
}

/// Why outgoing bytes could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SendBudgetError {
    /// More bytes than the smallest of the three budgets could ever hold.
    TooLarge { limit: usize },
    /// The session or the call ended while waiting.
    Closed,
}

/// One session's send budget, on top of the endpoint's (and under each call's).
#[derive(Debug)]
pub(crate) struct SendBudget {
    session: Semaphore,
    session_limit: usize,
    /// The peer's budgets, shared with its other sessions; its send budget is charged and
    /// returned with the endpoint's (so `node_held` counts both).
    peer: Arc<PeerBudgets>,
    /// Each call's budget ([`SendBudget::call_budget`]): a message larger fails, never waits.
    call_limit: usize,
    node: Arc<NodeBudgets>,
    /// Endpoint bytes this session holds; returned when the session is dropped.
    node_held: AtomicUsize,
    /// Fires when the session ends; waiting senders give up.
    closed: CancellationToken,
}

impl SendBudget {
    pub(crate) fn new(
        limit: usize,
        call_limit: usize,
        peer: Arc<PeerBudgets>,
        node: Arc<NodeBudgets>,
        closed: CancellationToken,
    ) -> Self {
        let limit = limit.min(Semaphore::MAX_PERMITS);
        SendBudget {
            session: Semaphore::new(limit),
            session_limit: limit,
            peer,
            call_limit: call_limit.min(Semaphore::MAX_PERMITS),
            node,
            node_held: AtomicUsize::new(0),
            closed,
        }
    }

    /// A per-call budget of `limit` bytes (the `call_limit` the session's budget was made with).
    pub(crate) fn call_budget(limit: usize) -> Arc<Semaphore> {
        Arc::new(Semaphore::new(limit.min(Semaphore::MAX_PERMITS)))
    }

    /// Takes `bytes` from the call's budget (if any), the session's, the peer's and the
    /// endpoint's, waiting while any is spent. Cancel-safe: nothing is held unless it returns
    /// `Ok`.
    pub(crate) async fn acquire(
        &self,
        call: Option<&Semaphore>,
        bytes: usize,
    ) -> Result<(), SendBudgetError> {
        let mut limit = self
            .session_limit
            .min(self.node.peer_send_limit)
            .min(self.node.send_limit);
        if call.is_some() {
            limit = limit.min(self.call_limit);
        }
        if bytes > limit {
            return Err(SendBudgetError::TooLarge { limit });
        }
        let n = u32::try_from(bytes).map_err(|_| SendBudgetError::TooLarge { limit })?;
        if self.try_acquire(call, bytes) {
            return Ok(());
        }
        let take = async {
            let call_permit = match call {
                Some(call) => Some(
                    call.acquire_many(n)
                        .await
                        .map_err(|_| SendBudgetError::Closed)?,
                ),
                None => None,
            };
            let session_permit = self
                .session
                .acquire_many(n)
                .await
                .map_err(|_| SendBudgetError::Closed)?;
            let peer_permit = self
                .peer
                .send
                .acquire_many(n)
                .await
                .map_err(|_| SendBudgetError::Closed)?;
            let node_permit = self
                .node
                .send
                .acquire_many(n)
                .await
                .map_err(|_| SendBudgetError::Closed)?;
            Ok((call_permit, session_permit, peer_permit, node_permit))
        };
        let (call_permit, session_permit, peer_permit, node_permit) = tokio::select! {
            biased;
            taken = take => taken?,
            _ = self.closed.cancelled() => return Err(SendBudgetError::Closed),
        };
        node_permit.forget();
        peer_permit.forget();
        session_permit.forget();
        if let Some(p) = call_permit {
            p.forget();
        }
        self.node_held.fetch_add(bytes, Ordering::AcqRel);
        self.node.note_send_level();
        Ok(())
    }

    /// [`SendBudget::acquire`] when every budget has room right now (never waits): `false`
    /// when the caller must wait or fail, and nothing is held then.
    pub(crate) fn try_acquire(&self, call: Option<&Semaphore>, bytes: usize) -> bool {
        let Ok(n) = u32::try_from(bytes) else {
            return false;
        };
        if !self.try_acquire_now(call, n) {
            return false;
        }
        self.node_held.fetch_add(bytes, Ordering::AcqRel);
        self.node.note_send_level();
        true
    }

    /// The fast path of [`SendBudget::acquire`]: every budget has room right now.
    fn try_acquire_now(&self, call: Option<&Semaphore>, n: u32) -> bool {
        let call_permit = match call.map(|c| c.try_acquire_many(n)) {
            Some(Ok(p)) => Some(p),
            Some(Err(_)) => return false,
            None => None,
        };
        let Ok(session_permit) = self.session.try_acquire_many(n) else {
            return false;
        };
        let Ok(peer_permit) = self.peer.send.try_acquire_many(n) else {
            return false;
        };
        let Ok(node_permit) = self.node.send.try_acquire_many(n) else {
            return false;
        };
        node_permit.forget();
        peer_permit.forget();
        session_permit.forget();
        if let Some(p) = call_permit {
            p.forget();
        }
        true
    }

    /// Returns bytes taken with [`SendBudget::acquire`] (the writer calls this once they are
    /// written, or when queued frames are dropped).
    pub(crate) fn release(&self, call: Option<&Semaphore>, bytes: usize) {
        if let Some(call) = call {
            call.add_permits(bytes);
        }
        self.session.add_permits(bytes);
        let returned = self
            .node_held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                Some(held.saturating_sub(bytes))
            })
            .map(|held| held.min(bytes))
            .unwrap_or(0);
        self.peer.send.add_permits(returned);
        self.node.send.add_permits(returned);
        self.node.note_send_level();
    }

    /// Wakes every sender waiting on this session's budget with `Closed`.
    pub(crate) fn close(&self) {
        self.session.close();
    }
}

impl Drop for SendBudget {
    fn drop(&mut self) {
        let held = self.node_held.swap(0, Ordering::AcqRel);
        self.peer.send.add_permits(held);
        self.node.send.add_permits(held);
        self.node.note_send_level();
    }
}

/// Why a message could not be sent within the peer's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WindowError {
    /// The message's charge exceeds the whole window the peer granted for this call.
    TooLarge { window: u32 },
    /// The call ended.
    Closed,
}

impl WindowError {
    /// The error a sender reports for a `charge`-byte message: `TooLarge` as
    /// `ResourceExhausted` naming the window's owner (`"server"`, `"caller"`), `Closed` as the
    /// call's own end (`ended`).
    pub(crate) fn into_rpc(
        self,
        charge: usize,
        owner: &str,
        ended: impl FnOnce() -> RpcError,
    ) -> RpcError {
        match self {
            WindowError::TooLarge { window } => RpcError::new(
                ErrorKind::ResourceExhausted,
                format!("a {charge}-byte message exceeds the {owner}'s {window}-byte window"),
            ),
            WindowError::Closed => ended(),
        }
    }
}

/// Window bytes taken for one message not yet queued (see [`SendWindow::take_message`]).
#[must_use]
pub(crate) struct TakenWindow<'a> {
    window: &'a SendWindow,
    /// What goes back if the message is not queued; 0 once it was.
    charge: usize,
}

impl TakenWindow<'_> {
    /// The message was queued: its bytes are the peer's to return.
    pub(crate) fn spent(mut self) {
        self.charge = 0;
    }
}

impl Drop for TakenWindow<'_> {
    fn drop(&mut self) {
        if self.charge > 0 {
            // Taken from the window and never sent: the peer will not return them, so the
            // call's next message takes them first, as it takes an appended message's saving.
            self.window.owed.fetch_add(self.charge, Ordering::Relaxed);
        }
    }
}

/// The window a peer granted us for one call: what we may still send.
#[derive(Debug)]
pub(crate) struct SendWindow {
    available: Semaphore,
    /// The window the peer announced (its first grant, or the call header's response window);
    /// 0 until announced.
    window: AtomicU32,
    /// Bytes sent and not yet returned by the peer.
    outstanding: AtomicU64,
    /// Bytes taken for messages that were appended to a queued chunk frame, which cost that
    /// much less than the frame of their own they were taken for (see
    /// [`crate::frame::APPENDED_MESSAGE_SAVING`]); the next message takes these first. Only
    /// the call's one sender touches it.
    owed: AtomicUsize,
    announced: Notify,
}

impl SendWindow {
    /// A window the peer announces later with its first grant.
    pub(crate) fn unannounced() -> Self {
        SendWindow {
            available: Semaphore::new(0),
            window: AtomicU32::new(0),
            outstanding: AtomicU64::new(0),
            owed: AtomicUsize::new(0),
            announced: Notify::new(),
        }
    }

    /// A window the peer announced up front (the response window of a call header).
    pub(crate) fn announced(window: u32) -> Self {
        SendWindow {
            available: Semaphore::new(window as usize),
            window: AtomicU32::new(window),
            outstanding: AtomicU64::new(0),
            owed: AtomicUsize::new(0),
            announced: Notify::new(),
        }
    }

    /// A grant from the peer: the first of an unannounced window announces it, later ones
    /// return bytes sent. `Err` when the peer returns more than was sent (a violation).
    pub(crate) fn grant(&self, bytes: u32) -> Result<(), ()> {
        if self
            .window
            .compare_exchange(0, bytes, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.available.add_permits(bytes as usize);
            self.announced.notify_waiters();
            return Ok(());
        }
        self.outstanding
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |out| {
                out.checked_sub(u64::from(bytes))
            })
            .map_err(|_| ())?;
        self.available.add_permits(bytes as usize);
        Ok(())
    }

    /// The message just sent was appended to a queued chunk frame: it cost
    /// [`crate::frame::APPENDED_MESSAGE_SAVING`] bytes less than was taken for it, which the
    /// next message takes first.
    pub(crate) fn appended(&self) {
        self.owed
            .fetch_add(crate::frame::APPENDED_MESSAGE_SAVING, Ordering::Relaxed);
    }

    /// Waits until a message charged `charge` bytes fits the window and takes its bytes, the
    /// ones owed by appended messages (see [`SendWindow::appended`]) first.
    pub(crate) async fn acquire(&self, charge: usize) -> Result<(), WindowError> {
        let owed = self.owed.load(Ordering::Relaxed);
        let covered = owed.min(charge);
        self.take(charge, charge.saturating_sub(covered)).await?;
        self.owed
            .store(owed.saturating_sub(covered), Ordering::Relaxed);
        Ok(())
    }

    /// [`SendWindow::acquire`] for one message about to be queued: the bytes go back to the
    /// window (owed to the call's next message) unless [`TakenWindow::spent`] says the message
    /// was queued — so a send that fails after this, or whose future is dropped (a caller's
    /// own timeout around it), does not shrink the call's window for good.
    pub(crate) async fn take_message(&self, charge: usize) -> Result<TakenWindow<'_>, WindowError> {
        self.acquire(charge).await?;
        Ok(TakenWindow {
            window: self,
            charge,
        })
    }

    /// [`SendWindow::take_message`] when the window has room right now (never waits): `None`
    /// when the caller must wait or fail, and nothing is taken then. A sender's fast path, so
    /// that a message that need not wait costs no future of its own.
    pub(crate) fn try_take_message(&self, charge: usize) -> Option<TakenWindow<'_>> {
        let window = self.window.load(Ordering::Acquire);
        if window == 0 || charge > window as usize {
            return None;
        }
        let owed = self.owed.load(Ordering::Relaxed);
        let covered = owed.min(charge);
        let n = u32::try_from(charge.saturating_sub(covered)).ok()?;
        self.available.try_acquire_many(n).ok()?.forget();
        self.outstanding.fetch_add(u64::from(n), Ordering::AcqRel);
        self.owed
            .store(owed.saturating_sub(covered), Ordering::Relaxed);
        Some(TakenWindow {
            window: self,
            charge,
        })
    }

    /// Waits until a message charged `charge` bytes fits the window and takes `take` bytes.
    async fn take(&self, charge: usize, take: usize) -> Result<(), WindowError> {
        let window = self.window.load(Ordering::Acquire);
        if window != 0 {
            if charge > window as usize {
                return Err(WindowError::TooLarge { window });
            }
            let n = u32::try_from(take).map_err(|_| WindowError::TooLarge { window })?;
            match self.available.try_acquire_many(n) {
                Ok(permit) => {
                    permit.forget();
                    self.outstanding.fetch_add(u64::from(n), Ordering::AcqRel);
                    return Ok(());
                }
                Err(tokio::sync::TryAcquireError::Closed) => return Err(WindowError::Closed),
                Err(tokio::sync::TryAcquireError::NoPermits) => {}
            }
        }
        loop {
            let notified = self.announced.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let window = self.window.load(Ordering::Acquire);
            if window == 0 {
                if self.available.is_closed() {
                    return Err(WindowError::Closed);
                }
                notified.await;
                continue;
            }
            if charge > window as usize {
                return Err(WindowError::TooLarge { window });
            }
            let n = u32::try_from(take).map_err(|_| WindowError::TooLarge { window })?;
            let permit = self
                .available
                .acquire_many(n)
                .await
                .map_err(|_| WindowError::Closed)?;
            permit.forget();
            self.outstanding.fetch_add(u64::from(n), Ordering::AcqRel);
            return Ok(());
        }
    }

    /// Ends the call for senders: waiters fail with `Closed`.
    pub(crate) fn close(&self) {
        self.available.close();
        self.announced.notify_waiters();
    }

    /// Bytes that can be sent right now.
    pub(crate) fn available(&self) -> usize {
        self.available.available_permits()
    }

    /// The announced window (0 until announced).
    pub(crate) fn window(&self) -> u32 {
        self.window.load(Ordering::Acquire)
    }
}

/// Our receive window for one call: what the peer may still send, backed by a reservation.
#[derive(Debug)]
pub(crate) struct RecvWindow {
    window: u32,
    remaining: AtomicU64,
    _reservation: Reservation,
}

impl RecvWindow {
    /// A window of the reservation's size, all of it open to the peer.
    pub(crate) fn new(reservation: Reservation) -> Self {
        let window = u32::try_from(reservation.bytes()).unwrap_or(u32::MAX);
        RecvWindow {
            window,
            remaining: AtomicU64::new(u64::from(window)),
            _reservation: reservation,
        }
    }

    pub(crate) fn window(&self) -> u32 {
        self.window
    }

    /// Takes `charge` bytes for an arriving frame; `false` when the peer has not been granted
    /// that much (a violation).
    pub(crate) fn admit(&self, charge: usize) -> bool {
        let charge = u64::try_from(charge).unwrap_or(u64::MAX);
        self.remaining
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                left.checked_sub(charge)
            })
            .is_ok()
    }

    /// Opens `bytes` again (just before they are returned to the peer in a grant).
    pub(crate) fn reopen(&self, bytes: u32) {
        self.remaining.fetch_add(u64::from(bytes), Ordering::AcqRel);
    }
}

/// The consumer side of a receive window: decides when consumed bytes go back to the peer.
#[derive(Debug)]
pub(crate) struct Returner {
    window: u32,
    unreturned: u32,
}

impl Returner {
    pub(crate) fn new(window: u32) -> Self {
        Returner {
            window,
            unreturned: 0,
        }
    }

    /// Notes one consumed message of `charge` bytes; returns the bytes to grant back now, once
    /// half the window is consumed.
    pub(crate) fn consumed(&mut self, charge: usize) -> Option<u32> {
        let charge = u32::try_from(charge).unwrap_or(u32::MAX);
        self.unreturned = self.unreturned.saturating_add(charge);
        if self.unreturned >= (self.window / 2).max(1) {
            Some(std::mem::take(&mut self.unreturned))
        } else {
            None
        }
    }

    /// The consumer found its queue empty and waits: returns everything consumed so far, so a
    /// sender whose next message needs more than it has left is never stuck behind a small
    /// return (and a consumer that keeps up sends one grant per wait, not per message).
    pub(crate) fn idle(&mut self) -> Option<u32> {
        (self.unreturned > 0).then(|| std::mem::take(&mut self.unreturned))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn peer(node: &NodeBudgets) -> Arc<PeerBudgets> {
        node.peer(crate::handshake::PeerIdentity::for_harness().node_id())
    }

    fn node(recv: usize, send: usize) -> Arc<NodeBudgets> {
        Arc::new(NodeBudgets::new(
            (recv, recv),
            (send, send),
            Arc::new(Metrics::default()),
        ))
    }

    #[test]
    fn reservations_respect_both_limits_and_release_on_drop() {
        let node = node(100, 100);
        let a = RecvBudget::new(60, peer(&node), node.clone());
        let b = RecvBudget::new(60, peer(&node), node.clone());
        let r1 = a.reserve(50, 50).unwrap();
        assert!(a.reserve(20, 20).is_none(), "session limit");
        let r2 = b.reserve(60, 10).unwrap();
        assert_eq!(r2.bytes(), 50, "endpoint limit leaves 50");
        assert!(b.reserve(1, 1).is_none());
        drop(r1);
        assert_eq!(node.recv.held(), 50);
        assert_eq!(a.held(), 0);
        drop(r2);
        assert_eq!(node.recv.held(), 0);
    }

    /// Spare reservations, as a session's buffer pool holds them.
    #[derive(Debug, Default)]
    struct Spares(Mutex<Vec<Reservation>>);

    impl Reclaim for Spares {
        fn reclaim(&self) -> usize {
            let taken = std::mem::take(&mut *self.0.lock().unwrap());
            taken.iter().map(Reservation::bytes).sum()
        }
    }

    #[test]
    fn spares_give_their_bytes_back_before_a_window_is_cut_or_refused() {
        let node = node(150, 0);
        let a = RecvBudget::new(100, peer(&node), node.clone());
        let b = RecvBudget::new(100, peer(&node), node.clone());
        let (a_spares, b_spares) = (Arc::new(Spares::default()), Arc::new(Spares::default()));
        let weak: std::sync::Weak<Spares> = Arc::downgrade(&a_spares);
        node.register_spares(weak);
        let weak: std::sync::Weak<Spares> = Arc::downgrade(&b_spares);
        node.register_spares(weak);

        // The session's own spares make room for a whole window.
        a_spares.0.lock().unwrap().push(a.reserve(70, 70).unwrap());
        let window = a.reserve_reclaiming(60, 10, &*a_spares).unwrap();
        assert_eq!(window.bytes(), 60);
        assert_eq!(a.held(), 60);

        // Another session's spares make room at the endpoint.
        a_spares.0.lock().unwrap().push(a.reserve(40, 40).unwrap());
        assert_eq!(node.recv.held(), 100);
        let other = b.reserve_reclaiming(80, 80, &*b_spares).unwrap();
        assert_eq!(
            other.bytes(),
            80,
            "a's spares gave the endpoint's bytes back"
        );
        assert_eq!(node.recv.held(), 140);
        assert_eq!(a.held(), 60);

        // Real reservations are never taken back: beyond them the call is refused.
        assert!(a.reserve_reclaiming(60, 60, &*a_spares).is_none());
        assert_eq!(a.held(), 60);
        drop((window, other));
        assert_eq!(node.recv.held(), 0);
    }

    #[tokio::test]
    async fn send_budget_returns_endpoint_bytes_when_dropped() {
        let node = node(0, 100);
        let peer = node.peer(crate::handshake::PeerIdentity::for_harness().node_id());
        let s = SendBudget::new(80, 50, peer, node.clone(), CancellationToken::new());
        let call = SendBudget::call_budget(50);
        s.acquire(Some(&call), 40).await.unwrap();
        assert_eq!(
            s.acquire(None, 90).await,
            Err(SendBudgetError::TooLarge { limit: 80 })
        );
        // Over the call's budget: fails at once instead of waiting for bytes it can never have.
        assert_eq!(
            s.acquire(Some(&call), 60).await,
            Err(SendBudgetError::TooLarge { limit: 50 })
        );
        assert_eq!(call.available_permits(), 10);
        assert_eq!(node.send.available_permits(), 60);
        drop(s);
        assert_eq!(node.send.available_permits(), 100);
    }

    #[tokio::test]
    async fn send_window_announces_then_only_takes_back_what_was_sent() {
        let w = SendWindow::unannounced();
        assert!(w.grant(100).is_ok());
        assert_eq!(w.window(), 100);
        assert_eq!(
            w.acquire(101).await,
            Err(WindowError::TooLarge { window: 100 })
        );
        w.acquire(60).await.unwrap();
        assert!(w.grant(61).is_err(), "returning more than was sent");
        assert!(w.grant(60).is_ok());
        assert_eq!(w.available(), 100);
        // Bytes saved by appended messages pay for the next message first.
        w.appended();
        let saved = crate::frame::APPENDED_MESSAGE_SAVING;
        w.acquire(90).await.unwrap();
        assert_eq!(w.available(), 100 - (90 - saved.min(90)));
    }

    #[tokio::test]
    async fn window_taken_for_a_message_never_queued_goes_to_the_next_message() {
        let w = SendWindow::announced(1000);
        // A send whose future is dropped (or that fails) after taking its bytes.
        drop(w.take_message(600).await.unwrap());
        assert_eq!(w.available(), 400);
        // The next message of that size is covered by what was given back, at once.
        let next = tokio::time::timeout(std::time::Duration::from_secs(5), w.take_message(600))
            .await
            .expect("the window taken for the dropped send was given back")
            .unwrap();
        next.spent();
        assert_eq!(w.available(), 400);
        // The peer returns what was sent once: the whole window is back.
        assert!(w.grant(600).is_ok());
        assert_eq!(w.available(), 1000);
        assert!(
            w.grant(1).is_err(),
            "nothing else was outstanding beyond what is owed"
        );
    }

    #[tokio::test]
    async fn the_send_fast_paths_take_what_the_waiting_ones_take_or_nothing() {
        // The window: nothing before it is announced, nothing past it, owed bytes first.
        let w = SendWindow::unannounced();
        assert!(w.try_take_message(10).is_none());
        assert!(w.grant(1000).is_ok());
        assert!(w.try_take_message(1001).is_none());
        assert_eq!(w.available(), 1000);
        w.try_take_message(600).unwrap().spent();
        assert_eq!(w.available(), 400);
        assert!(w.try_take_message(500).is_none(), "only 400 are left");
        assert_eq!(w.available(), 400, "a refused take holds nothing");
        // A message taken and never queued is owed to the next one, which takes it first.
        drop(w.try_take_message(300).unwrap());
        assert_eq!(w.available(), 100);
        w.try_take_message(350).unwrap().spent();
        assert_eq!(w.available(), 50);
        assert!(w.grant(950).is_ok());
        assert_eq!(w.available(), 1000);
        assert!(w.grant(1).is_err(), "nothing else was outstanding");

        // The budgets: all four at once, or none.
        let node = node(0, 100);
        let peer = node.peer(crate::handshake::PeerIdentity::for_harness().node_id());
        let s = SendBudget::new(80, 50, peer, node.clone(), CancellationToken::new());
        let call = SendBudget::call_budget(50);
        assert!(s.try_acquire(Some(&call), 40));
        assert!(!s.try_acquire(Some(&call), 20), "past the call's budget");
        assert!(!s.try_acquire(None, 41), "past the session's budget");
        assert_eq!(call.available_permits(), 10);
        assert_eq!(node.send.available_permits(), 60);
        assert!(s.try_acquire(None, 40));
        assert_eq!(node.send.available_permits(), 20);
        s.release(Some(&call), 40);
        s.release(None, 40);
        assert_eq!(call.available_permits(), 50);
        assert_eq!(node.send.available_permits(), 100);
    }

    #[test]
    fn returner_returns_at_half_window_or_when_the_consumer_waits() {
        let mut r = Returner::new(100);
        assert_eq!(r.consumed(10), None);
        assert_eq!(r.idle(), Some(10));
        assert_eq!(r.idle(), None);
        assert_eq!(r.consumed(30), None);
        assert_eq!(r.consumed(20), Some(50));
        assert_eq!(r.idle(), None);
    }
}
