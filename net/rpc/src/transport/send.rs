//! The sending half: frames into sealed Noise messages, written in batches.

use std::io::IoSlice;

use aws_lc_rs::aead::Aad;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::{CipherKey, MAX_NOISE_PLAINTEXT, NOISE_TAG_LEN, TransportError};
use crate::frame::MAX_FRAME_LEN;

/// Sending half: frames → encrypted Noise messages.
#[derive(Debug)]
pub struct FrameSender<W> {
    pub(super) writer: W,
    key: CipherKey,
    /// Sealed Noise messages ready to write, then possibly one open (not yet sealed) message.
    wire: Vec<u8>,
    /// Offset in `wire` of the open message's 2-byte length, if a message is open.
    open: Option<usize>,
    /// Output in order: sealed `wire` bytes and large frames sealed in place (see
    /// [`FrameSender::queue_owned_frame`]). `wire` itself is always last.
    segments: Vec<Segment>,
    /// Frame buffers already written, for the caller to recycle.
    spent: Vec<Vec<u8>>,
}

/// A block of output queued ahead of `wire`.
#[derive(Debug)]
enum Segment {
    /// Sealed Noise messages (a former `wire`).
    Wire(Vec<u8>),
    /// A frame whose bytes were sealed in place as consecutive Noise messages of
    /// [`MAX_NOISE_PLAINTEXT`] bytes; `meta` holds each message's 2-byte length followed by
    /// its 16-byte tag.
    Sealed { frame: Vec<u8>, meta: Vec<u8> },
}

impl Segment {
    fn len(&self) -> usize {
        match self {
            Segment::Wire(w) => w.len(),
            Segment::Sealed { frame, meta } => frame.len().saturating_add(meta.len()),
        }
    }
}

/// Frames at least this large, when handed over owned, are sealed in place in their own buffer
/// and written with vectored I/O instead of being copied into the wire buffer.
pub const IN_PLACE_MIN: usize = 32 * 1024;
/// Most I/O slices per vectored write (below the kernel's `IOV_MAX`).
const MAX_IOV: usize = 512;
/// Wire buffers above this capacity are not kept for reuse.
const WIRE_KEEP: usize = 512 * 1024;
/// Per sealed-in-place message: 2-byte length + 16-byte tag.
const META_LEN: usize = 2 + NOISE_TAG_LEN;

/// Frame-stream bytes already laid out as Noise messages — a 2-byte length slot, up to
/// [`MAX_NOISE_PLAINTEXT`] bytes of plaintext, a 16-byte tag slot — so that
/// [`FrameSender::queue_stream_buf`] seals them in place: bytes appended here are copied once
/// and never again on their way to the socket. Appending needs no key, so many producers can
/// append (under their own lock) while one sealer holds the key.
#[derive(Debug, Default)]
pub struct StreamBuf {
    buf: Vec<u8>,
    /// Offset of the open message's length slot, if a message is open.
    open: Option<usize>,
    /// Offsets of the closed messages' length slots, and their plaintext lengths.
    closed: Vec<(usize, usize)>,
}

/// A point to roll a [`StreamBuf`] back to.
#[derive(Debug, Clone, Copy)]
pub struct StreamMark {
    len: usize,
    open: Option<usize>,
    closed: usize,
}

impl StreamBuf {
    /// An empty stream buffer reusing `buf`'s allocation.
    pub fn with_buffer(mut buf: Vec<u8>) -> Self {
        buf.clear();
        StreamBuf {
            buf,
            open: None,
            closed: Vec::new(),
        }
    }

    /// Appends frame-stream bytes (a length prefix, frame bytes).
    pub fn append(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let (rest, full) = fill_open(&mut self.buf, &mut self.open, bytes);
            if full {
                self.close();
            }
            bytes = rest;
        }
    }

    /// Appends 4 bytes (a frame's length prefix) and returns their offset in the buffer when
    /// they landed in one Noise message, so that [`StreamBuf::patch`] can rewrite them.
    pub fn append_patchable(&mut self, bytes: [u8; 4]) -> Option<usize> {
        let at = match self.open {
            Some(slot) => {
                let body = self.buf.len().saturating_sub(slot.saturating_add(2));
                (MAX_NOISE_PLAINTEXT.saturating_sub(body) >= bytes.len()).then_some(self.buf.len())
            }
            // A new message starts: its 2-byte length slot comes first.
            None => Some(self.buf.len().saturating_add(2)),
        };
        self.append(&bytes);
        at
    }

    /// Rewrites 4 bytes appended with [`StreamBuf::append_patchable`] at offset `at`.
    pub fn patch(&mut self, at: usize, bytes: [u8; 4]) {
        if let Some(dst) = self.buf.get_mut(at..at.saturating_add(bytes.len())) {
            dst.copy_from_slice(&bytes);
        }
    }

    /// The frame-stream bytes appended so far (without length slots and tag room).
    #[cfg(test)]
    pub(crate) fn plaintext(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let open = self
            .open
            .map(|at| (at, self.buf.len().saturating_sub(at.saturating_add(2))));
        for &(at, len) in self.closed.iter().chain(open.iter()) {
            out.extend_from_slice(&self.buf[at + 2..at + 2 + len]);
        }
        out
    }

    /// Closes the open message (reserving its tag slot).
    fn close(&mut self) {
        if let Some(at) = self.open.take() {
            let body = self.buf.len().saturating_sub(at.saturating_add(2));
            self.buf.extend_from_slice(&[0; NOISE_TAG_LEN]);
            self.closed.push((at, body));
        }
    }

    /// Bytes on the wire once sealed (so far).
    pub fn wire_len(&self) -> usize {
        self.buf.len()
    }

    /// True when nothing was appended.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The current end, to roll back to if an append fails halfway.
    pub fn mark(&self) -> StreamMark {
        StreamMark {
            len: self.buf.len(),
            open: self.open,
            closed: self.closed.len(),
        }
    }

    /// Drops everything appended since `mark`.
    pub fn rollback(&mut self, mark: StreamMark) {
        self.buf.truncate(mark.len);
        self.open = mark.open;
        self.closed.truncate(mark.closed);
    }
}

impl<W> FrameSender<W> {
    pub(super) fn new(writer: W, key: CipherKey) -> Self {
        FrameSender {
            writer,
            key,
            wire: Vec::new(),
            open: None,
            segments: Vec::new(),
            spent: Vec::new(),
        }
    }

    /// Queues one frame (length prefix + bytes) for the next [`FrameSender::flush`]. The frame
    /// stream is cut into maximum-size Noise messages, each sealed in place in the wire buffer
    /// (one copy of the frame bytes, no intermediate plaintext buffer); small frames share
    /// Noise messages.
    pub fn queue_frame(&mut self, frame: &[u8]) -> Result<(), TransportError> {
        if frame.len() > MAX_FRAME_LEN {
            return Err(TransportError::FrameTooLarge {
                len: frame.len() as u64,
            });
        }
        let len = u32::try_from(frame.len()).map_err(|_| TransportError::FrameTooLarge {
            len: frame.len() as u64,
        })?;
        self.append_stream(&len.to_le_bytes())?;
        self.append_stream(frame)
    }

    /// Queues raw frame-stream bytes, bypassing the length prefix (lets tests act as a
    /// misbehaving peer, e.g. announce an oversized frame).
    pub fn queue_raw_stream_bytes(&mut self, bytes: &[u8]) -> Result<(), TransportError> {
        self.append_stream(bytes)
    }

    /// Like [`FrameSender::queue_frame`], taking the frame's buffer: a frame of at least
    /// [`IN_PLACE_MIN`] bytes is sealed in place (no copy) and written with vectored I/O; the
    /// buffer comes back through [`FrameSender::take_spent`] after the flush. The frame stream
    /// is the same; only the cut into Noise messages differs (the length prefix and anything
    /// batched before it end one message, the frame starts the next).
    pub fn queue_owned_frame(&mut self, mut frame: Vec<u8>) -> Result<(), TransportError> {
        if frame.len() < IN_PLACE_MIN {
            let result = self.queue_frame(&frame);
            self.spent.push(frame);
            return result;
        }
        if frame.len() > MAX_FRAME_LEN {
            return Err(TransportError::FrameTooLarge {
                len: frame.len() as u64,
            });
        }
        let len = u32::try_from(frame.len()).map_err(|_| TransportError::FrameTooLarge {
            len: frame.len() as u64,
        })?;
        self.append_stream(&len.to_le_bytes())?;
        self.seal_open()?;
        let pieces = frame.len().div_ceil(MAX_NOISE_PLAINTEXT);
        let mut meta = Vec::with_capacity(pieces.saturating_mul(META_LEN));
        for piece in frame.chunks_mut(MAX_NOISE_PLAINTEXT) {
            let msg_len = u16::try_from(piece.len().saturating_add(NOISE_TAG_LEN))
                .map_err(|_| snow::Error::Input)?;
            let nonce = self.key.next_nonce()?;
            let tag = self
                .key
                .key
                .seal_in_place_separate_tag(nonce, Aad::empty(), piece)
                .map_err(|_| snow::Error::Input)?;
            meta.extend_from_slice(&msg_len.to_le_bytes());
            meta.extend_from_slice(tag.as_ref());
        }
        if !self.wire.is_empty() {
            self.segments
                .push(Segment::Wire(std::mem::take(&mut self.wire)));
        }
        self.segments.push(Segment::Sealed { frame, meta });
        Ok(())
    }

    /// Frame buffers handed over with [`FrameSender::queue_owned_frame`] that are no longer
    /// needed (their contents are ciphertext or stale).
    pub fn take_spent(&mut self) -> impl Iterator<Item = Vec<u8>> + '_ {
        self.spent.drain(..)
    }

    /// Bytes queued (sealed or not) and not yet written.
    pub fn queued_len(&self) -> usize {
        self.segments
            .iter()
            .map(Segment::len)
            .fold(self.wire.len(), usize::saturating_add)
    }

    fn append_stream(&mut self, mut bytes: &[u8]) -> Result<(), TransportError> {
        while !bytes.is_empty() {
            let (rest, full) = fill_open(&mut self.wire, &mut self.open, bytes);
            if full {
                self.seal_open()?;
            }
            bytes = rest;
        }
        Ok(())
    }

    /// Seals the open Noise message, if any, in place.
    fn seal_open(&mut self) -> Result<(), TransportError> {
        let Some(at) = self.open.take() else {
            return Ok(());
        };
        let body_at = at.saturating_add(2);
        let body_len = self.wire.len().saturating_sub(body_at);
        let msg_len = u16::try_from(body_len.saturating_add(NOISE_TAG_LEN))
            .map_err(|_| snow::Error::Input)?;
        let nonce = self.key.next_nonce()?;
        let body = self.wire.get_mut(body_at..).ok_or(snow::Error::Input)?;
        let tag = self
            .key
            .key
            .seal_in_place_separate_tag(nonce, Aad::empty(), body)
            .map_err(|_| snow::Error::Input)?;
        self.wire.extend_from_slice(tag.as_ref());
        let len_bytes = self.wire.get_mut(at..body_at).ok_or(snow::Error::Input)?;
        len_bytes.copy_from_slice(&msg_len.to_le_bytes());
        Ok(())
    }

    /// Seals a [`StreamBuf`] in place and queues it after everything queued so far.
    pub fn queue_stream_buf(&mut self, mut stream: StreamBuf) -> Result<(), TransportError> {
        self.seal_open()?;
        stream.close();
        for &(at, body) in &stream.closed {
            let msg_len = u16::try_from(body.saturating_add(NOISE_TAG_LEN))
                .map_err(|_| snow::Error::Input)?;
            let nonce = self.key.next_nonce()?;
            let body_at = at.saturating_add(2);
            let body_end = body_at.saturating_add(body);
            let plain = stream
                .buf
                .get_mut(body_at..body_end)
                .ok_or(snow::Error::Input)?;
            let tag = self
                .key
                .key
                .seal_in_place_separate_tag(nonce, Aad::empty(), plain)
                .map_err(|_| snow::Error::Input)?;
            stream
                .buf
                .get_mut(body_end..body_end.saturating_add(NOISE_TAG_LEN))
                .ok_or(snow::Error::Input)?
                .copy_from_slice(tag.as_ref());
            stream
                .buf
                .get_mut(at..body_at)
                .ok_or(snow::Error::Input)?
                .copy_from_slice(&msg_len.to_le_bytes());
        }
        if !self.wire.is_empty() {
            self.segments
                .push(Segment::Wire(std::mem::take(&mut self.wire)));
        }
        if !stream.buf.is_empty() {
            self.segments.push(Segment::Wire(stream.buf));
        }
        Ok(())
    }

    /// Seals everything queued into Noise messages, ready to be written.
    pub fn flush_blocking_encrypt(&mut self) -> Result<(), TransportError> {
        self.seal_open()
    }

    /// Seals everything queued and takes it out, in order, to be written by
    /// [`SealedBatch::write_to`] (possibly on another task): what is taken later must be written
    /// later.
    pub fn take_sealed(&mut self) -> Result<SealedBatch, TransportError> {
        self.seal_open()?;
        let mut segments = std::mem::take(&mut self.segments);
        if !self.wire.is_empty() {
            segments.push(Segment::Wire(std::mem::take(&mut self.wire)));
        }
        Ok(SealedBatch { segments })
    }

    /// Offers an emptied buffer to hold the next sealed messages, so batches of small frames
    /// do not allocate. It is kept if none is held yet and it is not oversized; otherwise it
    /// comes back.
    pub fn reuse_wire(&mut self, mut buf: Vec<u8>) -> Option<Vec<u8>> {
        if self.wire.capacity() == 0 && buf.capacity() <= WIRE_KEEP {
            buf.clear();
            self.wire = buf;
            None
        } else {
            Some(buf)
        }
    }

    /// The sealing half alone and the stream, for a session that seals on one task and
    /// writes on another.
    pub fn into_parts(self) -> (FrameSender<()>, W) {
        let FrameSender {
            writer,
            key,
            wire,
            open,
            segments,
            spent,
        } = self;
        let sealer = FrameSender {
            writer: (),
            key,
            wire,
            open,
            segments,
            spent,
        };
        (sealer, writer)
    }
}

/// Sealed Noise messages taken out of a [`FrameSender`], in order.
#[derive(Debug)]
pub struct SealedBatch {
    segments: Vec<Segment>,
}

impl SealedBatch {
    /// Writes the batch with vectored writes and hands back its buffers for reuse.
    pub async fn write_to<W: AsyncWrite + Unpin>(
        self,
        writer: &mut W,
    ) -> Result<Spent, TransportError> {
        self.write_to_within(writer, None).await
    }

    /// Bytes in the batch.
    pub fn len(&self) -> usize {
        self.segments.iter().map(Segment::len).sum()
    }

    /// True when the batch holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Like [`SealedBatch::write_to`]; with `stall = Some(t)` every write must make progress
    /// within `t`, or the batch fails with [`TransportError::WriteStalled`] (a peer that stops
    /// reading cannot hold the writer forever).
    pub async fn write_to_within<W: AsyncWrite + Unpin>(
        self,
        writer: &mut W,
        stall: Option<std::time::Duration>,
    ) -> Result<Spent, TransportError> {
        let mut slices: Vec<IoSlice<'_>> = Vec::new();
        for segment in &self.segments {
            match segment {
                Segment::Wire(w) => slices.push(IoSlice::new(w)),
                Segment::Sealed { frame, meta } => {
                    for (piece, m) in frame.chunks(MAX_NOISE_PLAINTEXT).zip(meta.chunks(META_LEN)) {
                        let (len, tag) = m.split_at(2.min(m.len()));
                        slices.push(IoSlice::new(len));
                        slices.push(IoSlice::new(piece));
                        slices.push(IoSlice::new(tag));
                    }
                }
            }
        }
        let mut rest: &mut [IoSlice<'_>] = &mut slices;
        while !rest.is_empty() {
            let batch = rest.len().min(MAX_IOV);
            let write = writer.write_vectored(rest.get(..batch).unwrap_or_default());
            let n = match stall {
                Some(limit) => tokio::time::timeout(limit, write)
                    .await
                    .map_err(|_| TransportError::WriteStalled(limit))??,
                None => write.await?,
            };
            if n == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::WriteZero).into());
            }
            IoSlice::advance_slices(&mut rest, n);
        }
        drop(slices);
        writer.flush().await?;
        let mut spent = Spent::default();
        for segment in self.segments {
            match segment {
                Segment::Wire(w) => spent.wire.push(w),
                Segment::Sealed { frame, .. } => spent.frames.push(frame),
            }
        }
        Ok(spent)
    }
}

/// Buffers of a written [`SealedBatch`]: frame buffers handed over with
/// [`FrameSender::queue_owned_frame`], and wire buffers (see [`FrameSender::reuse_wire`]).
#[derive(Debug, Default)]
pub struct Spent {
    /// Frame buffers whose bytes were sealed in place (now ciphertext, free to reuse).
    pub frames: Vec<Vec<u8>>,
    /// Buffers that held sealed Noise messages.
    pub wire: Vec<Vec<u8>>,
}

impl<W: AsyncWrite + Unpin> FrameSender<W> {
    /// Encrypts and writes everything queued.
    pub async fn flush(&mut self) -> Result<(), TransportError> {
        let batch = self.take_sealed()?;
        let spent = batch.write_to(&mut self.writer).await?;
        self.spent.extend(spent.frames);
        // One wire buffer is kept for the next batch; spent holds only handed-over frames.
        for wire in spent.wire {
            drop(self.reuse_wire(wire));
        }
        Ok(())
    }

    /// Convenience: queue one frame and flush.
    pub async fn send_frame(&mut self, frame: &[u8]) -> Result<(), TransportError> {
        self.queue_frame(frame)?;
        self.flush().await
    }

    /// Shuts the write side down.
    pub async fn shutdown(&mut self) -> Result<(), TransportError> {
        self.writer.shutdown().await?;
        Ok(())
    }
}

/// Appends to the open Noise message in `buf` (at `open`: its 2-byte length slot; opened at
/// the end of `buf` when none is) as much of `bytes` as it has room for. Returns the bytes
/// left over and whether the message is now full (the caller closes or seals it).
fn fill_open<'b>(buf: &mut Vec<u8>, open: &mut Option<usize>, bytes: &'b [u8]) -> (&'b [u8], bool) {
    let at = *open.get_or_insert_with(|| {
        let at = buf.len();
        buf.extend_from_slice(&[0, 0]);
        at
    });
    let body = buf.len().saturating_sub(at.saturating_add(2));
    let room = MAX_NOISE_PLAINTEXT.saturating_sub(body);
    let (now, rest) = bytes.split_at(room.min(bytes.len()));
    buf.extend_from_slice(now);
    (rest, now.len() == room)
}
