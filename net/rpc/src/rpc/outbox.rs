//! A session's outbox: outgoing frames waiting for the sealer, in order. Small frames (control
//! frames, and chunks serialized straight in) share stream buffers laid out as Noise messages
//! (no allocation per message; the sealer encrypts them in place); large frames are handed
//! over whole and sealed in their own buffer. Data frames carry the send budget they hold
//! until written; control frames count against a per-session cap.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, Semaphore};

use super::session::lock;
use super::{CONTROL_QUEUE_MAX, RpcError};
use crate::frame::{CHUNK_PAYLOAD_OFFSET, ErrorKind, MESSAGE_LEN_PREFIX, chunk_head};
use crate::transport::{IN_PLACE_MIN, StreamBuf};

/// Queued outgoing frames. Small ones are copied, with their length prefixes, into a stream
/// buffer shared by many frames (no allocation per message); large ones are handed over whole
/// and sealed in place. Data frames carry the send budget they hold until written.
#[derive(Debug)]
pub(crate) enum OutItem {
    Stream {
        stream: StreamBuf,
        charges: Vec<SendCharge>,
        /// Bytes of control frames in `stream` (they count against the control cap).
        control: usize,
    },
    Owned {
        frame: Vec<u8>,
        charge: Option<SendCharge>,
    },
}

impl OutItem {
    fn len(&self) -> usize {
        match self {
            OutItem::Stream { stream, .. } => stream.wire_len(),
            OutItem::Owned { frame, .. } => frame.len(),
        }
    }
}

/// A frame to queue: borrowed (copied into a stream buffer; must be small) or owned.
pub(crate) enum Outgoing<'a> {
    Borrowed(&'a [u8]),
    Owned(Vec<u8>),
}

impl Outgoing<'_> {
    fn len(&self) -> usize {
        match self {
            Outgoing::Borrowed(b) => b.len(),
            Outgoing::Owned(v) => v.len(),
        }
    }
}

/// A stream buffer is closed for appends at this size (a batch takes whole items).
const STREAM_ITEM_MAX: usize = 128 * 1024;
/// Emptied stream buffers kept for reuse.
const STREAM_SPARES: usize = 4;

/// A chunk frame grows by appended messages while it stays below this length (so a merged
/// frame is never one that would be sealed in place, and fits a pooled receive buffer).
const APPEND_MAX: usize = IN_PLACE_MIN;

/// Which call and message a small chunk is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChunkAddress {
    pub(crate) request: bool,
    pub(crate) call_id: u64,
    pub(crate) seq: u64,
}

/// The chunk frame written last into the outbox's last stream buffer, while a message of the
/// same call may still be appended to it.
#[derive(Debug, Clone, Copy)]
struct OpenChunk {
    /// The call, and the seq the next appended message must have.
    chunk: ChunkAddress,
    /// Where the frame's length prefix is in the stream buffer (`None`: it was split across
    /// two Noise messages and cannot be rewritten, so nothing is appended).
    prefix_at: Option<usize>,
    frame_len: usize,
    /// The stream buffer's length right after the frame: appends are possible only while
    /// nothing followed it.
    end: usize,
}

/// Send budget held by a queued data frame until it is written.
#[derive(Debug)]
pub(crate) struct SendCharge {
    pub(crate) call: Option<Arc<Semaphore>>,
    pub(crate) bytes: usize,
}

/// What the outbox holds, under its lock.
#[derive(Debug, Default)]
struct State {
    items: VecDeque<OutItem>,
    control_bytes: usize,
    spare_bufs: Vec<Vec<u8>>,
    spare_charges: Vec<Vec<SendCharge>>,
    /// See [`OpenChunk`]; cleared by anything else queued and by the sealer taking items.
    open_chunk: Option<OpenChunk>,
    closed: bool,
}

/// Frames the sealer takes into one batch (bytes).
const BATCH_BYTES: usize = 256 * 1024;

/// Why a frame was not queued; the caller settles the charge it carried.
#[derive(Debug)]
pub(crate) enum PushError {
    /// The session is closed.
    Closed(Option<SendCharge>),
    /// Control frames would exceed [`CONTROL_QUEUE_MAX`] (this many bytes).
    ControlOverflow(usize),
    /// The message could not be serialized.
    Encode(SendCharge, RpcError),
}

/// The outbox and the signal the sealer waits on.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    state: Mutex<State>,
    ready: Notify,
}

impl Outbox {
    /// Queues a frame (see the module docs) and wakes the sealer if nothing was queued (the
    /// sealer takes batches until the outbox is empty before it waits, so a frame queued
    /// behind others is taken without a wake).
    pub(crate) fn push(
        &self,
        frame: Outgoing<'_>,
        charge: Option<SendCharge>,
    ) -> Result<(), PushError> {
        let len = frame.len();
        let mut state = lock(&self.state);
        if state.closed {
            return Err(PushError::Closed(charge));
        }
        state.open_chunk = None;
        if charge.is_none() {
            let queued = state.control_bytes.saturating_add(len);
            if queued > CONTROL_QUEUE_MAX {
                return Err(PushError::ControlOverflow(queued));
            }
            state.control_bytes = queued;
        }
        let wake = state.items.is_empty();
        if len < IN_PLACE_MIN {
            let prefix = u32::try_from(len).unwrap_or(u32::MAX);
            if let Some(OutItem::Stream {
                stream,
                charges,
                control,
            }) = open_stream(&mut state)
            {
                stream.append(&prefix.to_le_bytes());
                match &frame {
                    Outgoing::Borrowed(b) => stream.append(b),
                    Outgoing::Owned(v) => stream.append(v),
                }
                match charge {
                    Some(charge) => add_charge(charges, charge.call.as_ref(), charge.bytes),
                    None => *control = control.saturating_add(len),
                }
            }
        } else {
            let frame = match frame {
                Outgoing::Borrowed(b) => b.to_vec(),
                Outgoing::Owned(v) => v,
            };
            state.items.push_back(OutItem::Owned { frame, charge });
        }
        drop(state);
        if wake {
            self.ready.notify_one();
        }
        Ok(())
    }

    /// Serializes a small chunk message straight into a stream buffer: appended to the chunk
    /// frame queued last when that one belongs to the same call, continues its sequence, is
    /// still in the outbox with nothing after it and stays below [`APPEND_MAX`] (returns
    /// `true`), else as a chunk frame of its own (`false`). `frame_len` is the length of a frame
    /// of its own, measured, and checked against what was written (a mismatch, or a
    /// serialization error, rolls the buffer back).
    pub(crate) fn push_chunk<T: serde::Serialize + ?Sized>(
        &self,
        chunk: ChunkAddress,
        item: &T,
        frame_len: usize,
        budget: &Arc<Semaphore>,
        bytes: usize,
    ) -> Result<bool, PushError> {
        let charge = || SendCharge {
            call: Some(budget.clone()),
            bytes,
        };
        let size = frame_len.saturating_sub(CHUNK_PAYLOAD_OFFSET);
        let size_field = u32::try_from(size).unwrap_or(u32::MAX);
        let mut guard = lock(&self.state);
        let state = &mut *guard;
        if state.closed {
            return Err(PushError::Closed(Some(charge())));
        }
        let wake = state.items.is_empty();
        let open = state.open_chunk.take().filter(|open| {
            open.chunk == chunk
                && open
                    .frame_len
                    .saturating_add(MESSAGE_LEN_PREFIX)
                    .saturating_add(size)
                    < APPEND_MAX
                && matches!(
                    state.items.back(),
                    Some(OutItem::Stream { stream, .. }) if stream.wire_len() == open.end
                )
        });
        let target = match open {
            Some(_) => state.items.back_mut(),
            None => open_stream(state),
        };
        let Some(OutItem::Stream {
            stream, charges, ..
        }) = target
        else {
            return Err(PushError::Encode(
                charge(),
                RpcError::new(ErrorKind::Internal, "no stream buffer open"),
            ));
        };
        let mark = stream.mark();
        let (opened, head_len) = match open {
            Some(open) => {
                stream.append(&size_field.to_le_bytes());
                (open, MESSAGE_LEN_PREFIX)
            }
            None => {
                let prefix = u32::try_from(frame_len).unwrap_or(u32::MAX);
                let prefix_at = stream.append_patchable(prefix.to_le_bytes());
                let head = chunk_head(chunk.request, chunk.call_id, chunk.seq, size_field);
                stream.append(&head);
                let open = OpenChunk {
                    chunk,
                    prefix_at,
                    frame_len: 0,
                    end: 0,
                };
                (open, frame_len.saturating_sub(size))
            }
        };
        let written = postcard::serialize_with_flavor(item, StreamFlavor { stream, written: 0 });
        let error = match written {
            Ok(n) if n == size => {
                add_charge(charges, Some(budget), bytes);
                let appended = open.is_some();
                let mut next = opened;
                next.frame_len = next.frame_len.saturating_add(head_len).saturating_add(n);
                if let (true, Some(at)) = (appended, next.prefix_at) {
                    let len = u32::try_from(next.frame_len).unwrap_or(u32::MAX);
                    stream.patch(at, len.to_le_bytes());
                }
                next.chunk.seq = next.chunk.seq.saturating_add(1);
                next.end = stream.wire_len();
                // Only a frame whose length prefix can be rewritten takes appends.
                state.open_chunk = next.prefix_at.map(|_| next);
                drop(guard);
                if wake {
                    self.ready.notify_one();
                }
                return Ok(appended);
            }
            Ok(_) => RpcError::new(ErrorKind::Internal, "message size changed while encoding"),
            Err(e) => RpcError::new(ErrorKind::Decode, format!("encode: {e}")),
        };
        stream.rollback(mark);
        if wake {
            // Only the stream opened above is queued, and it is empty again: no frame is
            // queued, so the next push must wake the sealer.
            state.items.clear();
        }
        // A failed append leaves the frame as it was, still open for the next message.
        state.open_chunk = open;
        Err(PushError::Encode(charge(), error))
    }

    /// Takes queued items (up to [`BATCH_BYTES`], at least one) for the sealer; `None` when
    /// the outbox is empty.
    pub(crate) fn take_batch(&self) -> Option<Vec<OutItem>> {
        let mut state = lock(&self.state);
        if state.items.is_empty() {
            return None;
        }
        state.open_chunk = None;
        let mut taken = Vec::new();
        let mut bytes = 0usize;
        while bytes < BATCH_BYTES {
            let Some(item) = state.items.pop_front() else {
                break;
            };
            bytes = bytes.saturating_add(item.len());
            taken.push(item);
        }
        // Control bytes leave the cap once taken (they are written next).
        let control = taken
            .iter()
            .map(|item| match item {
                OutItem::Stream { control, .. } => *control,
                OutItem::Owned {
                    frame,
                    charge: None,
                } => frame.len(),
                OutItem::Owned { .. } => 0,
            })
            .fold(0usize, usize::saturating_add);
        state.control_bytes = state.control_bytes.saturating_sub(control);
        Some(taken)
    }

    /// Resolves once something was queued since the sealer last looked.
    pub(crate) async fn ready(&self) {
        self.ready.notified().await;
    }

    /// Closes the outbox (later pushes fail) and hands back what was queued.
    pub(crate) fn close(&self) -> VecDeque<OutItem> {
        let items = {
            let mut state = lock(&self.state);
            state.closed = true;
            state.open_chunk = None;
            state.control_bytes = 0;
            state.spare_bufs.clear();
            state.spare_charges.clear();
            std::mem::take(&mut state.items)
        };
        self.ready.notify_one();
        items
    }

    /// True when nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        lock(&self.state).items.is_empty()
    }

    /// Gives a written stream buffer back for reuse.
    pub(crate) fn return_stream_buffer(&self, mut bytes: Vec<u8>) {
        if bytes.capacity() > 2 * STREAM_ITEM_MAX || bytes.capacity() == 0 {
            return;
        }
        bytes.clear();
        let mut state = lock(&self.state);
        if state.spare_bufs.len() < STREAM_SPARES && !state.closed {
            state.spare_bufs.push(bytes);
        }
    }

    /// Gives an emptied charge list back for reuse.
    pub(crate) fn return_charge_list(&self, mut charges: Vec<SendCharge>) {
        charges.clear();
        let mut state = lock(&self.state);
        if state.spare_charges.len() < STREAM_SPARES && !state.closed {
            state.spare_charges.push(charges);
        }
    }

    /// Frees the spare buffers (a quiet session holds none).
    pub(crate) fn drain_spares(&self) {
        let spares = {
            let mut state = lock(&self.state);
            (
                std::mem::take(&mut state.spare_bufs),
                std::mem::take(&mut state.spare_charges),
            )
        };
        drop(spares);
    }
}

/// The outbox's last item if it is a stream buffer with room, else a new one (from the spares).
fn open_stream(outbox: &mut State) -> Option<&mut OutItem> {
    let open = matches!(
        outbox.items.back(),
        Some(OutItem::Stream { stream, .. }) if stream.wire_len() < STREAM_ITEM_MAX
    );
    if !open {
        let bytes = outbox.spare_bufs.pop().unwrap_or_default();
        let charges = outbox.spare_charges.pop().unwrap_or_default();
        outbox.items.push_back(OutItem::Stream {
            stream: StreamBuf::with_buffer(bytes),
            charges,
            control: 0,
        });
    }
    outbox.items.back_mut()
}

/// Adds `bytes` drawn on `call` (a call budget, or none) to a stream item's charge list,
/// merged into the last charge when that one draws on the same budget. The budget's `Arc` is
/// cloned only for a new entry (no reference-count traffic per message of a stream).
fn add_charge(charges: &mut Vec<SendCharge>, call: Option<&Arc<Semaphore>>, bytes: usize) {
    match charges.last_mut() {
        Some(last) if same_budget(last.call.as_ref(), call) => {
            last.bytes = last.bytes.saturating_add(bytes);
        }
        _ => charges.push(SendCharge {
            call: call.cloned(),
            bytes,
        }),
    }
}

/// A postcard output that appends to a [`StreamBuf`], counting what it wrote.
struct StreamFlavor<'a> {
    stream: &'a mut StreamBuf,
    written: usize,
}

impl postcard::ser_flavors::Flavor for StreamFlavor<'_> {
    type Output = usize;

    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.stream.append(&[byte]);
        self.written = self.written.saturating_add(1);
        Ok(())
    }

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.stream.append(data);
        self.written = self.written.saturating_add(data.len());
        Ok(())
    }

    fn finalize(self) -> postcard::Result<usize> {
        Ok(self.written)
    }
}

/// True when two charges draw on the same call budget (or both on none).
fn same_budget(a: Option<&Arc<Semaphore>>, b: Option<&Arc<Semaphore>>) -> bool {
    match (a, b) {
        (Some(x), Some(y)) => Arc::ptr_eq(x, y),
        (None, None) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use futures_util::FutureExt;

    use super::*;

    /// A message whose serialization fails.
    struct Unencodable;

    impl serde::Serialize for Unencodable {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("refused"))
        }
    }

    /// Chunk `seq` of call `call_id` (a request chunk).
    fn at(call_id: u64, seq: u64) -> ChunkAddress {
        ChunkAddress {
            request: true,
            call_id,
            seq,
        }
    }

    /// The length of a frame of its own for a one-byte message.
    const ONE_BYTE: usize = CHUNK_PAYLOAD_OFFSET + 1;

    /// The frames queued in `items`, decoded: (call id, first seq, messages).
    fn frames(items: &[OutItem]) -> Vec<(u64, u64, Vec<Vec<u8>>)> {
        let mut plain = Vec::new();
        for item in items {
            match item {
                OutItem::Stream { stream, .. } => plain.extend(stream.plaintext()),
                OutItem::Owned { frame, .. } => {
                    plain.extend((frame.len() as u32).to_le_bytes());
                    plain.extend(frame);
                }
            }
        }
        let mut out = Vec::new();
        let mut rest = &plain[..];
        while !rest.is_empty() {
            let len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
            let frame = crate::frame::Frame::decode(&rest[4..4 + len]).unwrap();
            if let crate::frame::Frame::RequestChunk {
                call_id,
                seq,
                messages,
            } = frame
            {
                out.push((call_id, seq, messages.iter().map(<[u8]>::to_vec).collect()));
            }
            rest = &rest[4 + len..];
        }
        out
    }

    /// A message continues the chunk frame queued last when it is the same call's next one and
    /// nothing was queued after the frame or taken by the sealer since; a failed append
    /// leaves the frame as it was.
    #[test]
    fn a_message_of_the_same_call_is_appended_to_its_queued_chunk_frame() {
        let outbox = Outbox::default();
        let budget = Arc::new(Semaphore::new(1 << 20));
        let push = |addr, byte: u8| {
            outbox
                .push_chunk(addr, &byte, ONE_BYTE, &budget, 9)
                .unwrap()
        };
        assert!(!push(at(1, 0), 10));
        assert!(
            push(at(1, 1), 11),
            "the same call's next message is appended"
        );
        assert!(push(at(1, 2), 12));
        assert!(!push(at(1, 4), 14), "a gap in seq starts a frame");
        assert!(!push(at(2, 0), 20), "another call's message starts a frame");
        assert!(
            !push(at(1, 5), 15),
            "a frame of another call came in between"
        );
        assert!(matches!(
            outbox.push_chunk(at(1, 6), &Unencodable, ONE_BYTE, &budget, 9),
            Err(PushError::Encode(..))
        ));
        assert!(push(at(1, 6), 16), "a failed append leaves the frame open");
        outbox
            .push(Outgoing::Borrowed(&[3, 0x12, 0, 0, 0, 0, 0, 0, 0, 1]), None)
            .unwrap();
        assert!(!push(at(1, 7), 17), "a control frame came in between");
        let taken = outbox.take_batch().unwrap();
        assert!(!push(at(1, 8), 18), "the sealer took the frame");
        let mut want = vec![
            (1, 0, vec![vec![10], vec![11], vec![12]]),
            (1, 4, vec![vec![14]]),
            (2, 0, vec![vec![20]]),
            (1, 5, vec![vec![15], vec![16]]),
            (1, 7, vec![vec![17]]),
        ];
        assert_eq!(frames(&taken), want);
        want = vec![(1, 8, vec![vec![18]])];
        assert_eq!(frames(&outbox.take_batch().unwrap()), want);
        // Each message keeps the budget it was charged.
        let charged: usize = taken
            .iter()
            .map(|item| match item {
                OutItem::Stream { charges, .. } => charges.iter().map(|c| c.bytes).sum(),
                OutItem::Owned { .. } => 0,
            })
            .sum();
        assert_eq!(charged, 8 * 9);
    }

    /// A frame grows only while it stays below `APPEND_MAX`, and only when its length prefix
    /// can be rewritten (it did not straddle two Noise messages).
    #[test]
    fn a_chunk_frame_stops_growing_at_its_limit_or_when_its_prefix_is_split() {
        let outbox = Outbox::default();
        let budget = Arc::new(Semaphore::new(1 << 30));
        let message = vec![7u8; 1000];
        let frame_len = CHUNK_PAYLOAD_OFFSET + 2 + message.len(); // postcard: 2-byte varint
        let mut appended = 0;
        for seq in 0..40 {
            if outbox
                .push_chunk(at(1, seq), &message, frame_len, &budget, 1)
                .unwrap()
            {
                appended += 1;
            }
        }
        let taken = outbox.take_batch().unwrap();
        let got = frames(&taken);
        assert!(got.len() >= 2, "{} frames", got.len());
        assert_eq!(got.iter().map(|f| f.2.len()).sum::<usize>(), 40);
        assert_eq!(appended, 40 - got.len());
        for (_, _, messages) in &got {
            let len = CHUNK_PAYLOAD_OFFSET
                + (messages.len() - 1) * 4
                + messages.iter().map(Vec::len).sum::<usize>();
            assert!(len < APPEND_MAX, "frame of {len} bytes");
        }

        // A prefix that would straddle the end of a Noise message cannot be rewritten; one
        // that just fits can.
        let filler = vec![0u8; crate::transport::MAX_NOISE_PLAINTEXT - 2];
        let mut stream = StreamBuf::default();
        stream.append(&filler);
        assert!(stream.append_patchable([1, 2, 3, 4]).is_none());
        let mut stream = StreamBuf::default();
        stream.append(&filler[2..]);
        let prefix_at = stream.append_patchable([1, 2, 3, 4]).unwrap();
        stream.append(&[9]);
        stream.patch(prefix_at, [5, 6, 7, 8]);
        let plain = stream.plaintext();
        assert_eq!(&plain[filler.len() - 2..], &[5, 6, 7, 8, 9]);
    }

    #[test]
    fn only_a_push_into_an_empty_outbox_wakes_the_sealer() {
        let outbox = Outbox::default();
        let budget = Arc::new(Semaphore::new(1 << 20));
        outbox
            .push_chunk(at(1, 0), &7u8, ONE_BYTE, &budget, 2)
            .unwrap();
        assert!(outbox.ready().now_or_never().is_some(), "first frame wakes");
        outbox
            .push_chunk(at(2, 0), &8u8, ONE_BYTE, &budget, 2)
            .unwrap();
        assert!(
            outbox.ready().now_or_never().is_none(),
            "a frame behind a queued one does not"
        );
        assert_eq!(outbox.take_batch().unwrap().len(), 1);
        assert!(outbox.take_batch().is_none());
        // A failed push into the empty outbox leaves nothing queued, so the next one wakes.
        assert!(matches!(
            outbox.push_chunk(at(3, 0), &Unencodable, ONE_BYTE, &budget, 2),
            Err(PushError::Encode(..))
        ));
        assert!(
            outbox.is_empty(),
            "the failed frame's stream is not left queued"
        );
        outbox
            .push_chunk(at(3, 0), &9u8, ONE_BYTE, &budget, 2)
            .unwrap();
        assert!(outbox.ready().now_or_never().is_some());
    }

    #[test]
    fn chunk_charges_of_one_call_merge_without_cloning_its_budget() {
        let a = Arc::new(Semaphore::new(100));
        let b = Arc::new(Semaphore::new(100));
        let mut charges = Vec::new();
        for (budget, bytes) in [(&a, 10), (&a, 5), (&b, 7), (&a, 1)] {
            add_charge(&mut charges, Some(budget), bytes);
        }
        let got: Vec<(bool, usize)> = charges
            .iter()
            .map(|c| (Arc::ptr_eq(c.call.as_ref().unwrap(), &a), c.bytes))
            .collect();
        assert_eq!(got, [(true, 15), (false, 7), (true, 1)]);
        assert_eq!(Arc::strong_count(&a), 3, "one clone per charge entry");
        // Frames that draw on no call budget merge with each other, not with a call's.
        add_charge(&mut charges, None, 2);
        add_charge(&mut charges, None, 3);
        let last = charges.last().unwrap();
        assert_eq!(
            (charges.len(), last.call.is_none(), last.bytes),
            (4, true, 5)
        );
    }
}
