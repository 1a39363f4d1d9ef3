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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::Semaphore;

use super::Metrics;
use crate::NodeId;

mod send;
mod window;

pub(crate) use send::{SendBudget, SendBudgetError};
pub(crate) use window::{RecvWindow, Returner, SendWindow, TakenWindow};

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

#[cfg(test)]
mod tests;
