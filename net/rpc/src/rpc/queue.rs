//! The per-call event queue between a session's reader and a call's consumer (a handler's
//! request stream, a caller's response stream). Its bytes are bounded by the call's window, not
//! by a message count. The reader can push without waking the consumer and wake each consumer
//! once per batch of frames it decoded ([`Wakes`]), instead of once per frame: a consumer that
//! drains faster than frames arrive is then not woken (and switched to) for every message.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

use super::session::lock;

#[derive(Debug)]
struct Inner<T> {
    items: VecDeque<T>,
    /// The sender is gone: after the queued items, the consumer sees the end.
    tx_closed: bool,
    /// The consumer is gone: pushes are dropped.
    rx_closed: bool,
}

#[derive(Debug)]
struct Shared<T> {
    inner: Mutex<Inner<T>>,
    waker: AtomicWaker,
}

/// Something whose consumer can be woken (type-erased, for [`Wakes`]).
trait Wake: Send + Sync {
    fn wake_consumer(&self);
}

impl<T: Send> Wake for Shared<T> {
    fn wake_consumer(&self) {
        self.waker.wake();
    }
}

/// The producing end (one per call, held by the session's call table).
#[derive(Debug)]
pub(crate) struct Sender<T: Send + 'static>(Arc<Shared<T>>);

/// The consuming end. It takes everything queued at once into `taken` and serves from there,
/// so a consumer draining a batch of frames locks the queue once per batch, not per item.
#[derive(Debug)]
pub(crate) struct Receiver<T: Send + 'static> {
    shared: Arc<Shared<T>>,
    taken: VecDeque<T>,
}

/// A new queue.
pub(crate) fn queue<T: Send + 'static>() -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        inner: Mutex::new(Inner {
            items: VecDeque::new(),
            tx_closed: false,
            rx_closed: false,
        }),
        waker: AtomicWaker::new(),
    });
    (
        Sender(shared.clone()),
        Receiver {
            shared,
            taken: VecDeque::new(),
        },
    )
}

impl<T: Send + 'static> Sender<T> {
    /// Queues `item` without waking the consumer; the caller wakes it later through `wakes`.
    /// Dropped when the consumer is gone.
    pub(crate) fn push(&self, item: T, wakes: &mut Wakes) {
        // Items already queued were queued with a wake of their own (in `wakes`, or given
        // already), and the consumer takes everything queued at once: only an item that finds
        // the queue empty needs one. So each wake is added in constant time, and a batch holds
        // one per consumer, plus one each time that consumer took its queue meanwhile.
        if self.enqueue(item) == Some(true) {
            wakes.0.push(self.0.clone());
        }
    }

    /// Queues `item` and wakes the consumer now.
    pub(crate) fn send(&self, item: T) {
        if self.enqueue(item).is_some() {
            self.0.waker.wake();
        }
    }

    /// Queues `item`: whether the queue was empty before, `None` (dropped) when the consumer
    /// is gone.
    fn enqueue(&self, item: T) -> Option<bool> {
        let mut inner = lock(&self.0.inner);
        if inner.rx_closed {
            return None;
        }
        let was_empty = inner.items.is_empty();
        inner.items.push_back(item);
        Some(was_empty)
    }
}

impl<T: Send + 'static> Drop for Sender<T> {
    fn drop(&mut self) {
        lock(&self.0.inner).tx_closed = true;
        self.0.waker.wake();
    }
}

impl<T: Send + 'static> Receiver<T> {
    /// The next item; `None` once the sender is gone and everything queued was taken.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        if let Some(ready) = self.try_take() {
            return Poll::Ready(ready);
        }
        self.shared.waker.register(cx.waker());
        // An item may have arrived between the check and the registration.
        match self.try_take() {
            Some(ready) => Poll::Ready(ready),
            None => Poll::Pending,
        }
    }

    fn try_take(&mut self) -> Option<Option<T>> {
        if let Some(item) = self.taken.pop_front() {
            return Some(Some(item));
        }
        let mut inner = lock(&self.shared.inner);
        // `taken` is empty: swap it in for what is queued (the allocations go round).
        std::mem::swap(&mut inner.items, &mut self.taken);
        let closed = inner.tx_closed;
        drop(inner);
        match self.taken.pop_front() {
            Some(item) => Some(Some(item)),
            None if closed => Some(None),
            None => None,
        }
    }

    /// Waits for the next item (see [`Receiver::poll_recv`]).
    pub(crate) async fn recv(&mut self) -> Option<T> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Items queued and not yet taken.
    pub(crate) fn len(&self) -> usize {
        lock(&self.shared.inner)
            .items
            .len()
            .saturating_add(self.taken.len())
    }
}

impl<T: Send + 'static> Drop for Receiver<T> {
    fn drop(&mut self) {
        let dropped = {
            let mut inner = lock(&self.shared.inner);
            inner.rx_closed = true;
            std::mem::take(&mut inner.items)
        };
        drop(dropped);
    }
}

/// Consumers to wake once the reader has dispatched what it has buffered.
#[derive(Default)]
pub(crate) struct Wakes(Vec<Arc<dyn Wake>>);

impl std::fmt::Debug for Wakes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wakes")
            .field("pending", &self.0.len())
            .finish()
    }
}

impl Wakes {
    /// Wakes every consumer that got items since the last flush.
    pub(crate) fn flush(&mut self) {
        for consumer in self.0.drain(..) {
            consumer.wake_consumer();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn pushed_items_arrive_in_order_and_the_end_follows_the_sender() {
        let (tx, mut rx) = queue::<u32>();
        let mut wakes = Wakes::default();
        tx.push(1, &mut wakes);
        tx.push(2, &mut wakes);
        assert_eq!(wakes.0.len(), 1, "one wake per consumer");
        wakes.flush();
        tx.send(3);
        assert_eq!(rx.len(), 3);
        drop(tx);
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(rx.len(), 2, "items taken in a batch still count as queued");
        assert_eq!(rx.recv().await, Some(2));
        assert_eq!(rx.recv().await, Some(3));
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test]
    async fn a_batch_holds_a_wake_per_consumer_whatever_the_interleaving() {
        let queues: Vec<_> = (0..100).map(|_| queue::<u32>()).collect();
        let mut wakes = Wakes::default();
        for round in 0..50 {
            for (tx, _) in &queues {
                tx.push(round, &mut wakes);
            }
        }
        assert_eq!(wakes.0.len(), 100);
        wakes.flush();
        // A consumer that took its queue needs a new wake for what comes next.
        let (tx, mut rx) = queues.into_iter().next().unwrap();
        for want in 0..50 {
            assert_eq!(rx.recv().await, Some(want));
        }
        let consumer = tokio::spawn(async move { rx.recv().await });
        tokio::task::yield_now().await;
        tx.push(99, &mut wakes);
        assert_eq!(wakes.0.len(), 1);
        wakes.flush();
        assert_eq!(consumer.await.unwrap(), Some(99));
    }

    #[tokio::test]
    async fn a_deferred_wake_reaches_a_waiting_consumer() {
        let (tx, mut rx) = queue::<u32>();
        let consumer = tokio::spawn(async move { rx.recv().await });
        tokio::task::yield_now().await;
        let mut wakes = Wakes::default();
        tx.push(7, &mut wakes);
        wakes.flush();
        assert_eq!(consumer.await.unwrap(), Some(7));
    }

    #[test]
    fn pushes_after_the_consumer_left_are_dropped() {
        let (tx, rx) = queue::<Vec<u8>>();
        drop(rx);
        let mut wakes = Wakes::default();
        tx.push(vec![1], &mut wakes);
        assert!(wakes.0.is_empty());
        assert_eq!(lock(&tx.0.inner).items.len(), 0);
    }
}
