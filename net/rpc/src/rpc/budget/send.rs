//! Send budgets: a sender waits until its bytes fit the call's, the session's, the peer's
//! and the endpoint's budgets, and gets them back once the writer has written them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::{NodeBudgets, PeerBudgets};

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
