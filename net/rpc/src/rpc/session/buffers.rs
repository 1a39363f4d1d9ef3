//! A session's buffers: received frames kept whole (a payload and the messages of a chunk
//! frame, read where they lie) and the pool of large buffers reused for frames.

use std::sync::{Arc, Mutex};

use super::{SessionShared, lock};
use crate::rpc::budget::{Reclaim, Reservation};
use crate::rpc::raw::{RawBytes, SharedFrame};

/// A received frame kept whole, with the offset where its payload starts (saves a copy), and
/// the receive bytes it holds when it was charged on its own (unary requests and responses).
#[derive(Debug)]
pub(crate) struct Payload {
    frame: Vec<u8>,
    start: usize,
    reservation: Option<Reservation>,
}

impl Payload {
    /// `payload` must be the tail of `frame` (true for every payload-carrying frame).
    pub(crate) fn tail_of(frame: Vec<u8>, payload_len: usize) -> Self {
        let start = frame.len().saturating_sub(payload_len);
        Payload {
            frame,
            start,
            reservation: None,
        }
    }

    pub(crate) fn with_reservation(mut self, reservation: Option<Reservation>) -> Self {
        self.reservation = reservation;
        self
    }

    /// The payload without its reservation, and the reservation.
    pub(crate) fn split_reservation(mut self) -> (Self, Option<Reservation>) {
        let reservation = self.reservation.take();
        (self, reservation)
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        self.frame.get(self.start..).unwrap_or_default()
    }

    /// The whole frame buffer and the payload's offset in it.
    pub(crate) fn into_parts(self) -> (Vec<u8>, usize) {
        (self.frame, self.start)
    }

    /// Hands the buffer back to the session's pool.
    pub(crate) fn recycle(self, shared: &SessionShared) {
        shared.recycle(self.frame);
    }
}

/// The messages of a received chunk frame (already checked by the decoder), taken in order.
/// The frame's charge goes back to its window once the last one is taken.
#[derive(Debug)]
pub(crate) struct MessageList {
    /// The frame; `start` is where the next message's length prefix begins.
    payload: Payload,
    /// The frame, once shared by the raw messages taken from it (`payload.frame` is then empty).
    frame: Option<Arc<SharedFrame>>,
    left: u32,
}

/// The next message of a [`MessageList`].
pub(crate) enum NextMessage<'a> {
    /// A message before the last: its bytes in the frame.
    Inner(&'a [u8]),
    /// A message before the last, as a view of the shared frame.
    Shared(RawBytes),
    /// The last message: the frame, its offset in it, and the frame's charge.
    Last(Payload, usize),
    /// The last message as a view of the shared frame, and the frame's charge.
    LastShared(RawBytes, usize),
    /// The list did not hold another message (cannot happen for a list the decoder checked).
    Malformed(usize),
}

impl MessageList {
    /// `payload` holds the message list of a chunk frame that holds `count` messages.
    pub(crate) fn new(payload: Payload, count: u32) -> Self {
        MessageList {
            payload,
            frame: None,
            left: count,
        }
    }

    /// Takes the next message; with `share`, a frame of several messages is shared by them as
    /// [`RawBytes`] views (see [`NextMessage`]). After a `Last…` or `Malformed` the list is
    /// empty and must not be used again (the caller drops it).
    pub(crate) fn next(&mut self, share: Option<&Arc<SessionShared>>) -> NextMessage<'_> {
        let charge = crate::frame::charge(match &self.frame {
            Some(frame) => frame.bytes().len(),
            None => self.payload.frame.len(),
        });
        let frame: &[u8] = match &self.frame {
            Some(frame) => frame.bytes(),
            None => &self.payload.frame,
        };
        let start = self.payload.start;
        let Some((message, tail)) =
            crate::frame::split_message(frame.get(start..).unwrap_or_default())
        else {
            self.left = 0;
            return NextMessage::Malformed(charge);
        };
        let at = start.saturating_add(crate::frame::MESSAGE_LEN_PREFIX);
        let end = at.saturating_add(message.len());
        let last = self.left <= 1 || tail.is_empty();
        self.left = if last { 0 } else { self.left.saturating_sub(1) };
        self.payload.start = end;
        if let Some(shared) = share
            && (self.frame.is_some() || !last)
        {
            let frame = match &self.frame {
                Some(frame) => frame.clone(),
                None => {
                    let frame = SharedFrame::new(std::mem::take(&mut self.payload.frame), shared);
                    self.frame = Some(frame.clone());
                    frame
                }
            };
            let raw = RawBytes::in_frame(frame, at, end);
            return if last {
                NextMessage::LastShared(raw, charge)
            } else {
                NextMessage::Shared(raw)
            };
        }
        if last {
            let payload = Payload {
                frame: std::mem::take(&mut self.payload.frame),
                start: at,
                reservation: None,
            };
            return NextMessage::Last(payload, charge);
        }
        NextMessage::Inner(self.payload.frame.get(at..end).unwrap_or_default())
    }

    /// Messages not yet taken.
    pub(crate) fn left(&self) -> usize {
        self.left as usize
    }
}

/// Recycled large buffers (avoids a fresh, page-faulting allocation per message); their
/// capacity is reserved from the session's receive budget, so pooling never exceeds it, and
/// given back whenever a window or message needs those bytes ([`Reclaim`]).
#[derive(Debug, Default)]
struct BufferPool {
    buffers: Vec<(Vec<u8>, Reservation)>,
    bytes: usize,
}

/// Which of the pooled buffers (by capacity) suits a frame of `len` bytes: one that holds it
/// without growing and holds at most twice `len`. (A smaller one would be replaced anyway:
/// the receiver allocates a large frame's buffer afresh rather than grow one.)
fn fitting(mut capacities: impl Iterator<Item = usize>, len: usize) -> Option<usize> {
    let most = len.saturating_mul(2);
    capacities.position(|capacity| (len..=most).contains(&capacity))
}

impl BufferPool {
    /// The pooled buffer that [`fits`](fitting) a frame of `len` bytes, if one does. On a miss
    /// the largest pooled buffer is dropped (its reservation with it), so a pool that an earlier
    /// frame size filled makes room for the current size instead of missing until it idles.
    fn take_fitting(&mut self, len: usize) -> Option<Vec<u8>> {
        let hit = fitting(self.buffers.iter().map(|(b, _)| b.capacity()), len);
        let largest = || {
            let by_capacity = self.buffers.iter().enumerate();
            by_capacity
                .max_by_key(|(_, (b, _))| b.capacity())
                .map(|(at, _)| at)
        };
        let at = hit.or_else(largest)?;
        let (buf, _reservation) = self.buffers.swap_remove(at);
        self.bytes = self.bytes.saturating_sub(buf.capacity());
        // On a miss `buf` is the largest buffer: dropped here, with its reservation.
        hit.map(|_| buf)
    }
}

/// A session's [`BufferPool`], shared with the endpoint's budgets so they can take it back.
#[derive(Debug, Default)]
pub(crate) struct SparePool(Mutex<BufferPool>);

impl Reclaim for SparePool {
    fn reclaim(&self) -> usize {
        let drained = std::mem::take(&mut *lock(&self.0));
        drained.bytes
    }
}

/// Buffers below this capacity are not worth pooling.
pub(crate) const POOL_MIN_CAPACITY: usize = 16 * 1024;
/// Most bytes of buffer capacity kept per session.
const POOL_MAX_BYTES: usize = 32 * 1024 * 1024;
/// Most buffers kept per session.
const POOL_MAX_BUFFERS: usize = 32;

impl SessionShared {
    /// A cleared buffer, recycled when one is available.
    pub(crate) fn take_buffer(&self, min_capacity: usize) -> Vec<u8> {
        if min_capacity >= POOL_MIN_CAPACITY {
            let mut pool = lock(&self.buffers.0);
            if let Some((mut buf, _reservation)) = pool.buffers.pop() {
                pool.bytes = pool.bytes.saturating_sub(buf.capacity());
                buf.clear();
                return buf;
            }
        }
        Vec::new()
    }

    /// A recycled buffer for a frame of `len` bytes, as it was left (contents and length), for
    /// the receiver to overwrite without zeroing it first; empty when no pooled buffer fits
    /// ([`fitting`]; the largest pooled buffer is then dropped, [`BufferPool::take_fitting`]).
    /// A frame's buffer may outlive its window and budget charge (a `RawBytes` or `Encoded`
    /// message its handler queues), so what a frame holds stays within twice its own size,
    /// whatever larger buffers earlier frames left in the pool.
    pub(crate) fn take_receive_buffer(&self, len: usize) -> Vec<u8> {
        lock(&self.buffers.0).take_fitting(len).unwrap_or_default()
    }

    /// Returns a large buffer to the pool (dropped when the pool or the budget is full).
    pub(crate) fn recycle(&self, buf: Vec<u8>) {
        let capacity = buf.capacity();
        if !(POOL_MIN_CAPACITY..=2 * crate::frame::MAX_FRAME_LEN).contains(&capacity)
            || self.is_closed()
        {
            return;
        }
        let mut pool = lock(&self.buffers.0);
        if pool.buffers.len() >= POOL_MAX_BUFFERS
            || pool.bytes.saturating_add(capacity) > POOL_MAX_BYTES
        {
            return;
        }
        if let Some(reservation) = self.recv.reserve(capacity, capacity) {
            pool.bytes = pool.bytes.saturating_add(capacity);
            pool.buffers.push((buf, reservation));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{BufferPool, MessageList, NextMessage, Payload, SessionShared, fitting};
    use crate::rpc::budget::{NodeBudgets, RecvBudget};
    use crate::rpc::raw::{RawBytes, decode_raw};
    use crate::rpc::{Config, Metrics};
    use std::sync::Arc;

    /// A session's shared state without a socket.
    fn shared() -> Arc<SessionShared> {
        let metrics = Arc::new(Metrics::default());
        let node = Arc::new(NodeBudgets::new(
            (1 << 20, 1 << 20),
            (1 << 20, 1 << 20),
            metrics.clone(),
        ));
        SessionShared::new(
            crate::handshake::PeerIdentity::for_harness(),
            Arc::new(Config::default()),
            metrics,
            Arc::new(crate::rpc::Router::new()),
            node,
        )
    }

    /// A received chunk frame of `messages` (postcard byte strings), in a 16 KiB buffer (the
    /// pool keeps buffers from that size).
    fn chunk_frame(messages: &[&[u8]]) -> (Vec<u8>, usize, u32) {
        let encoded: Vec<Vec<u8>> = messages
            .iter()
            .map(|m| postcard::to_stdvec(&RawBytes::from(*m)).unwrap())
            .collect();
        let slices: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
        let mut frame = Vec::with_capacity(16 * 1024);
        frame.extend_from_slice(&crate::frame::chunk_head(true, 1, 0, 0)[..18]);
        let head = frame.len();
        crate::frame::encode_messages(&slices, &mut frame);
        let list_len = frame.len() - head;
        (frame, list_len, messages.len() as u32)
    }

    /// Raw messages of a frame that carried several are views of it (no copy); the frame
    /// goes back to the pool only when the last view is dropped, and its charge is handed out
    /// with the last message. Typed takes of one frame read the same messages.
    #[test]
    fn raw_messages_of_one_frame_share_it_until_the_last_view_is_dropped() {
        let shared = shared();
        let messages: [&[u8]; 3] = [b"first", b"", b"third one"];
        let (frame, list_len, count) = chunk_frame(&messages);
        let charge = crate::frame::charge(frame.len());
        let mut list = MessageList::new(Payload::tail_of(frame, list_len), count);
        let mut views = Vec::new();
        for (i, want) in messages.iter().enumerate() {
            let (raw, got_charge) = match list.next(Some(&shared)) {
                NextMessage::Shared(raw) => (raw, None),
                NextMessage::LastShared(raw, charge) => (raw, Some(charge)),
                _ => panic!("message {i} is not a view of the shared frame"),
            };
            assert_eq!(got_charge, (i == 2).then_some(charge), "message {i}");
            let bytes: RawBytes = decode_raw(raw).unwrap();
            assert_eq!(bytes.as_slice(), *want);
            views.push(bytes);
        }
        assert_eq!(list.left(), 0);
        drop(list);
        let last = views.pop().unwrap();
        assert_eq!(last.clone().into_vec(), b"third one");
        drop(views);
        assert_eq!(shared.recv.held(), 0, "recycled while a view is alive");
        drop(last);
        assert_eq!(
            shared.recv.held(),
            16 * 1024,
            "the frame went back to the pool"
        );

        // Without sharing, messages before the last are read in place and the last takes the
        // frame over.
        let (frame, list_len, count) = chunk_frame(&messages);
        let mut list = MessageList::new(Payload::tail_of(frame, list_len), count);
        let mut got = Vec::new();
        for _ in 0..3 {
            match list.next(None) {
                NextMessage::Inner(bytes) => {
                    got.push(postcard::from_bytes::<Vec<u8>>(bytes).unwrap());
                }
                NextMessage::Last(payload, c) => {
                    assert_eq!(c, charge);
                    got.push(postcard::from_bytes::<Vec<u8>>(payload.bytes()).unwrap());
                }
                _ => panic!("unexpected take"),
            }
        }
        assert_eq!(got, messages.map(<[u8]>::to_vec));

        // A single-message frame is taken over whole even when sharing is offered.
        let (frame, list_len, count) = chunk_frame(&[b"alone"]);
        let mut list = MessageList::new(Payload::tail_of(frame, list_len), count);
        assert!(matches!(list.next(Some(&shared)), NextMessage::Last(..)));
    }

    /// A miss drops the largest pooled buffer and gives its reserved bytes back; a hit takes
    /// the fitting buffer.
    #[test]
    fn a_pool_that_misses_drops_its_largest_buffer() {
        let mib = 1 << 20;
        let node = Arc::new(NodeBudgets::new(
            (64 * mib, 64 * mib),
            (64 * mib, 64 * mib),
            Arc::new(crate::rpc::Metrics::default()),
        ));
        let peer = node.peer(crate::handshake::PeerIdentity::for_harness().node_id());
        let budget = RecvBudget::new(64 * mib, peer, node);
        let mut pool = BufferPool::default();
        for capacity in [16 * mib, 2 * mib, 16 * mib] {
            let reservation = budget.reserve(capacity, capacity).unwrap();
            pool.buffers
                .push((Vec::with_capacity(capacity), reservation));
            pool.bytes += capacity;
        }
        assert_eq!(budget.held(), 34 * mib);

        assert!(pool.take_fitting(mib / 2).is_none());
        assert_eq!((pool.buffers.len(), pool.bytes), (2, 18 * mib));
        assert_eq!(budget.held(), 18 * mib);

        let buf = pool.take_fitting(mib + mib / 2).unwrap();
        assert!(buf.capacity() >= 2 * mib && buf.capacity() < 3 * mib);
        assert_eq!((pool.buffers.len(), pool.bytes), (1, 16 * mib));
        assert_eq!(budget.held(), 16 * mib);

        assert!(pool.take_fitting(mib / 2).is_none());
        assert!(pool.take_fitting(mib / 2).is_none());
        assert_eq!((pool.buffers.len(), pool.bytes, budget.held()), (0, 0, 0));
    }

    /// A frame gets a pooled buffer that holds it and at most twice its size, never a larger
    /// one left by a bigger frame (a queued message would hold all of it) nor a smaller one.
    #[test]
    fn a_frame_takes_only_a_pooled_buffer_of_about_its_size() {
        let mib = 1 << 20;
        let pool = [32 * mib, mib / 2, mib + 100, 2 * mib];
        assert_eq!(fitting(pool.into_iter(), mib), Some(2));
        assert_eq!(fitting(pool.into_iter(), mib + 100), Some(2));
        assert_eq!(fitting(pool.into_iter(), mib + 101), Some(3));
        assert_eq!(fitting([32 * mib, mib / 2].into_iter(), mib), None);
        assert_eq!(fitting([32 * mib].into_iter(), 16 * mib), Some(0));
        assert_eq!(fitting(std::iter::empty(), mib), None);
    }
}
