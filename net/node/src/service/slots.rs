//! A pool of worker slots (uploads, reads, pulls) shared fairly among peers: the pool bounds
//! the node's workers, and each peer may hold at most its share of them, so one authorized
//! identity cannot take every slot of a kind and leave the others busy until its calls end.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use net_mesh_engine::ErrorClass;
use net_mesh_rpc::NodeId;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{NodeError, NodeResult};

/// Slots of one kind: `max` in all, at most `per_peer` held by one peer at once.
#[derive(Debug)]
pub(crate) struct Slots {
    what: &'static str,
    max: usize,
    per_peer: usize,
    held: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    total: usize,
    by_peer: HashMap<NodeId, usize>,
}

/// One slot, given back when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    slots: Arc<Slots>,
    peer: NodeId,
}

impl Slots {
    pub(crate) fn new(what: &'static str, max: usize, per_peer: usize) -> Arc<Slots> {
        Arc::new(Slots {
            what,
            max,
            per_peer,
            held: Mutex::new(Held::default()),
        })
    }

    /// A slot for `peer`, or busy when the pool is full or `peer` holds its share.
    pub(crate) fn take(self: &Arc<Self>, peer: NodeId) -> NodeResult<Slot> {
        let mut held = self.held();
        if held.total >= self.max {
            return Err(NodeError::new(
                ErrorClass::Busy,
                format!(
                    "{} {} are running on this node; try again later",
                    self.max, self.what
                ),
            ));
        }
        let mine = held.by_peer.entry(peer).or_insert(0);
        if *mine >= self.per_peer {
            return Err(NodeError::new(
                ErrorClass::Busy,
                format!(
                    "this identity already runs {} {} on this node, its most at once; try again \
                     later",
                    self.per_peer, self.what
                ),
            ));
        }
        *mine += 1;
        held.total += 1;
        Ok(Slot {
            slots: Arc::clone(self),
            peer,
        })
    }

    fn held(&self) -> MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.slots.held();
        held.total = held.total.saturating_sub(1);
        if let Some(mine) = held.by_peer.get_mut(&self.peer) {
            *mine = mine.saturating_sub(1);
            if *mine == 0 {
                held.by_peer.remove(&self.peer);
            }
        }
    }
}

/// The store lookups of unary calls (each on a blocking worker): at most `max` run at once,
/// and at most `per_peer` of one peer's, over all its sessions. More wait their turn, a
/// peer's beyond its share behind its own, so one identity's flood of calls neither takes
/// the blocking pool the uploads and reads run on (a thread per queued call, up to the
/// runtime's 512) nor keeps the other identities' lookups waiting behind all of its own.
#[derive(Debug)]
pub(crate) struct Lookups {
    all: Arc<Semaphore>,
    per_peer: usize,
    /// Each peer with a lookup running or waiting: its semaphore, and how many.
    peers: Mutex<HashMap<NodeId, (Arc<Semaphore>, usize)>>,
}

/// A lookup's turn (taken or awaited), given back when dropped.
#[derive(Debug)]
pub(crate) struct Turn {
    lookups: Arc<Lookups>,
    peer: NodeId,
    all: Option<OwnedSemaphorePermit>,
    mine: Option<OwnedSemaphorePermit>,
}

impl Lookups {
    pub(crate) fn new(max: usize, per_peer: usize) -> Arc<Lookups> {
        Arc::new(Lookups {
            all: Arc::new(Semaphore::new(max.max(1))),
            per_peer: per_peer.max(1),
            peers: Mutex::new(HashMap::new()),
        })
    }

    /// Waits for `peer`'s turn: first among its own lookups, then among everyone's.
    pub(crate) async fn turn(self: &Arc<Self>, peer: NodeId) -> NodeResult<Turn> {
        let own = {
            let mut peers = self.peers();
            let (own, users) = peers
                .entry(peer)
                .or_insert_with(|| (Arc::new(Semaphore::new(self.per_peer)), 0));
            *users = users.saturating_add(1);
            Arc::clone(own)
        };
        // Counted from here: a caller that goes away while it waits is uncounted on drop.
        let mut turn = Turn {
            lookups: Arc::clone(self),
            peer,
            all: None,
            mine: None,
        };
        let closed = |_| NodeError::new(ErrorClass::Io, "the node is shutting down");
        turn.mine = Some(own.acquire_owned().await.map_err(closed)?);
        turn.all = Some(
            Arc::clone(&self.all)
                .acquire_owned()
                .await
                .map_err(closed)?,
        );
        Ok(turn)
    }

    fn peers(&self) -> MutexGuard<'_, HashMap<NodeId, (Arc<Semaphore>, usize)>> {
        self.peers.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.all = None;
        self.mine = None;
        let mut peers = self.lookups.peers();
        if let Some((_, users)) = peers.get_mut(&self.peer) {
            *users = users.saturating_sub(1);
            if *users == 0 {
                peers.remove(&self.peer);
            }
        }
    }
}

/// Bytes of one kind the node's workers hold together (the parity of erasure-coded
/// uploads), at most `max`, and at most `per_peer` for one peer's calls, so one authorized
/// identity cannot hold all of it and leave every other one's uploads busy.
#[derive(Debug)]
pub(crate) struct ByteBudget {
    what: &'static str,
    max: usize,
    per_peer: usize,
    held: Mutex<HeldBytesBy>,
}

#[derive(Debug, Default)]
struct HeldBytesBy {
    total: usize,
    by_peer: HashMap<NodeId, usize>,
}

/// Bytes taken from a [`ByteBudget`], given back when dropped.
#[derive(Debug)]
pub(crate) struct HeldBytes {
    budget: Arc<ByteBudget>,
    peer: NodeId,
    bytes: usize,
}

impl ByteBudget {
    pub(crate) fn new(what: &'static str, max: usize, per_peer: usize) -> Arc<ByteBudget> {
        Arc::new(ByteBudget {
            what,
            max,
            per_peer,
            held: Mutex::new(HeldBytesBy::default()),
        })
    }

    /// The most one peer may ever hold: its share, or the whole budget when that is less.
    pub(crate) fn max_per_peer(&self) -> usize {
        self.per_peer.min(self.max)
    }

    /// `bytes` of the budget for `peer`, or busy when the others hold too much of it or
    /// `peer` would hold more than its share.
    pub(crate) fn take(self: &Arc<Self>, peer: NodeId, bytes: usize) -> NodeResult<HeldBytes> {
        let mut held = self.held();
        if held.total.saturating_add(bytes) > self.max {
            return Err(NodeError::new(
                ErrorClass::Busy,
                format!(
                    "{} hold {} of this node's {} bytes for them, and this one needs {bytes}; \
                     try again later",
                    self.what, held.total, self.max
                ),
            ));
        }
        let mine = held.by_peer.entry(peer).or_insert(0);
        if mine.saturating_add(bytes) > self.per_peer {
            let has = *mine;
            if has == 0 {
                held.by_peer.remove(&peer);
            }
            return Err(NodeError::new(
                ErrorClass::Busy,
                format!(
                    "this identity's {} hold {has} bytes, and this one needs {bytes}: more \
                     than one identity's share of this node's budget for them ({}); try again \
                     later",
                    self.what, self.per_peer
                ),
            ));
        }
        *mine = mine.saturating_add(bytes);
        held.total = held.total.saturating_add(bytes);
        Ok(HeldBytes {
            budget: Arc::clone(self),
            peer,
            bytes,
        })
    }

    fn held(&self) -> MutexGuard<'_, HeldBytesBy> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for HeldBytes {
    fn drop(&mut self) {
        let mut held = self.budget.held();
        held.total = held.total.saturating_sub(self.bytes);
        if let Some(mine) = held.by_peer.get_mut(&self.peer) {
            *mine = mine.saturating_sub(self.bytes);
            if *mine == 0 {
                held.by_peer.remove(&self.peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(n: u8) -> NodeId {
        NodeId::from_public_key(&net_mesh_rpc::Identity::from_seed([n; 32]).public_key())
    }

    #[test]
    fn a_peer_holds_at_most_its_share_and_the_pool_at_most_its_size() {
        let slots = Slots::new("uploads", 3, 2);
        let (a, b, c) = (peer(1), peer(2), peer(3));
        let a1 = slots.take(a).unwrap();
        let _a2 = slots.take(a).unwrap();
        let err = slots.take(a).unwrap_err();
        assert!(err.message.contains("this identity"), "{err}");
        let _b1 = slots.take(b).unwrap();
        let err = slots.take(c).unwrap_err();
        assert!(err.message.contains("3 uploads are running"), "{err}");
        drop(a1);
        let _c1 = slots.take(c).unwrap();
        assert!(slots.take(a).is_err());
        assert_eq!(slots.held().total, 3);
        assert_eq!(slots.held().by_peer.len(), 3);
    }

    #[test]
    fn a_byte_budget_gives_what_it_has_and_takes_back_what_ends() {
        let budget = ByteBudget::new("erasure-coded uploads", 100, 100);
        let (p, q) = (peer(1), peer(2));
        let a = budget.take(p, 60).unwrap();
        let err = budget.take(q, 41).unwrap_err();
        assert_eq!(err.class, ErrorClass::Busy);
        assert!(err.message.contains("hold 60 of this node's 100"), "{err}");
        let b = budget.take(q, 40).unwrap();
        drop(a);
        let _c = budget.take(p, 60).unwrap();
        drop(b);
        assert_eq!(budget.held().total, 60);
        assert_eq!(budget.held().by_peer.len(), 1);
    }

    #[test]
    fn a_peer_holds_at_most_its_share_of_a_byte_budget() {
        let budget = ByteBudget::new("erasure-coded uploads", 100, 50);
        let (p, q) = (peer(1), peer(2));
        let p1 = budget.take(p, 30).unwrap();
        let err = budget.take(p, 30).unwrap_err();
        assert_eq!(err.class, ErrorClass::Busy);
        assert!(err.message.contains("this identity's"), "{err}");
        let _q1 = budget.take(q, 50).unwrap();
        drop(p1);
        let _p2 = budget.take(p, 50).unwrap();
        assert_eq!(budget.held().total, 100);
        assert_eq!(budget.max_per_peer(), 50);
    }

    #[tokio::test]
    async fn lookups_take_turns_within_each_peers_share_and_forget_idle_peers() {
        use futures_util::FutureExt;
        let lookups = Lookups::new(3, 2);
        let (a, b) = (peer(1), peer(2));
        let a1 = lookups.turn(a).await.unwrap();
        let _a2 = lookups.turn(a).await.unwrap();
        // A's third waits behind its own share, not taking the last turn from B.
        let mut a3 = Box::pin(lookups.turn(a));
        assert!((&mut a3).now_or_never().is_none());
        let b1 = lookups.turn(b).await.unwrap();
        // Everything is taken: B's second waits too.
        let mut b2 = Box::pin(lookups.turn(b));
        assert!((&mut b2).now_or_never().is_none());
        drop(a1);
        // The pool's turn goes to whoever waited for it first: B's second, not A's third.
        let b2 = b2.await.unwrap();
        assert!((&mut a3).now_or_never().is_none());
        drop(b1);
        let a3 = a3.await.unwrap();
        assert_eq!(lookups.peers().len(), 2);
        // A caller that goes away while it waits is forgotten with the rest.
        let mut gone = Box::pin(lookups.turn(b));
        assert!((&mut gone).now_or_never().is_none());
        drop(gone);
        drop((a3, b2, _a2));
        assert!(lookups.peers().is_empty());
    }

    #[test]
    fn a_peer_whose_slots_all_ended_is_forgotten() {
        let slots = Slots::new("reads", 4, 4);
        let taken: Vec<Slot> = (0..4).map(|_| slots.take(peer(9)).unwrap()).collect();
        drop(taken);
        assert_eq!(slots.held().total, 0);
        assert!(slots.held().by_peer.is_empty());
    }
}
