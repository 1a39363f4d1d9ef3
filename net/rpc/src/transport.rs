//! Encrypted transport of nRPC frames over a byte stream (docs/FORMAT.md section 5.3).
//!
//! Two layers:
//! * **Noise messages**: each is a u16 little-endian length followed by that many bytes of
//!   Noise ciphertext (plaintext ≤ [`MAX_NOISE_PLAINTEXT`] + 16-byte tag). Nonces are implicit
//!   counters starting at 0 in each direction.
//! * **Frame stream**: the concatenated plaintexts form a byte stream of frames, each a u32
//!   little-endian length followed by that many frame bytes. A frame may span many Noise messages
//!   and one Noise message may carry many frames. A length above [`crate::frame::MAX_FRAME_LEN`]
//!   is a fatal [`TransportError::FrameTooLarge`]; the receiver never buffers more than one
//!   maximum frame plus one read slab of ciphertext.
//!
//! The Noise cipher is `AESGCM` (Noise_XX_25519_AESGCM_BLAKE2s). The transport keys come from
//! the Noise `Split()` of the finished handshake and are used exactly as a Noise `CipherState`
//! would use them (nonce = 4 zero bytes ‖ 64-bit big-endian counter, empty associated data,
//! counter `2^64-1` reserved), but sealing and opening happen **in place**: the sender seals
//! straight inside its outgoing wire buffer; the receiver decrypts a message whose plaintext lies
//! inside the frame being reassembled straight from its read slab into the frame, and opens any
//! other in place in the slab and copies its plaintext out. The bytes on the wire are
//! identical to snow's `StatelessTransportState` (a unit test checks this).

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use std::io::IoSlice;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::frame::MAX_FRAME_LEN;

/// Largest plaintext per Noise message (65535 minus the 16-byte AEAD tag).
pub const MAX_NOISE_PLAINTEXT: usize = 65535 - 16;
/// Size of the AEAD tag.
pub const NOISE_TAG_LEN: usize = 16;
/// Receive buffer size: several maximum Noise messages per read syscall (must be at least
/// one maximum message plus its 2-byte length).
pub const READ_SLAB: usize = 4 * (MAX_NOISE_PLAINTEXT + NOISE_TAG_LEN + 2);
/// Size of the per-frame length prefix in the frame stream.
pub const FRAME_LEN_PREFIX: usize = 4;
/// Length of a Noise transport key.
pub const NOISE_KEY_LEN: usize = 32;

/// Transport failure; every variant ends the session.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Socket error.
    #[error("transport I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A Noise message failed to decrypt (bad tag, too short) or the nonce space ran out.
    #[error("noise transport error: {0}")]
    Noise(#[from] snow::Error),
    /// A frame length prefix exceeds the maximum frame size.
    #[error("peer announced a frame of {len} bytes (max {MAX_FRAME_LEN})")]
    FrameTooLarge { len: u64 },
    /// The stream ended in the middle of a Noise message or frame.
    #[error("stream ended mid-message")]
    Truncated,
    /// A write made no progress for the stall timeout (the peer stopped reading).
    #[error("write made no progress for {0:?}")]
    WriteStalled(std::time::Duration),
}

/// One direction's Noise `CipherState` key (AES-256-GCM) with its nonce counter.
struct CipherKey {
    key: LessSafeKey,
    nonce: u64,
}

impl std::fmt::Debug for CipherKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CipherKey")
            .field("nonce", &self.nonce)
            .finish_non_exhaustive()
    }
}

impl CipherKey {
    fn new(raw: &[u8; NOISE_KEY_LEN]) -> Result<Self, snow::Error> {
        let key = UnboundKey::new(&AES_256_GCM, raw).map_err(|_| snow::Error::Input)?;
        Ok(CipherKey {
            key: LessSafeKey::new(key),
            nonce: 0,
        })
    }

    /// The Noise AESGCM nonce for the current counter, then advances the counter. Counter
    /// `u64::MAX` is reserved by Noise, so the session fails instead of ever reusing a nonce.
    fn next_nonce(&mut self) -> Result<Nonce, snow::Error> {
        let n = self.nonce;
        if n == u64::MAX {
            return Err(snow::Error::State(snow::error::StateProblem::Exhausted));
        }
        self.nonce = n.saturating_add(1);
        let mut bytes = [0u8; 12];
        let (_, counter) = bytes.split_at_mut(4);
        counter.copy_from_slice(&n.to_be_bytes());
        Ok(Nonce::assume_unique_for_key(bytes))
    }
}

/// The two transport keys of a finished handshake (sending and receiving direction).
pub struct SessionKeys {
    send: CipherKey,
    recv: CipherKey,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKeys").finish_non_exhaustive()
    }
}

impl SessionKeys {
    /// Keys from the Noise `Split()` output `(k1, k2)`: the initiator sends with `k1` and
    /// receives with `k2`, the responder the other way round.
    pub fn from_split(
        initiator: bool,
        k1: &[u8; NOISE_KEY_LEN],
        k2: &[u8; NOISE_KEY_LEN],
    ) -> Result<Self, snow::Error> {
        let (send, recv) = if initiator { (k1, k2) } else { (k2, k1) };
        Ok(SessionKeys {
            send: CipherKey::new(send)?,
            recv: CipherKey::new(recv)?,
        })
    }
}

/// Sending half: frames → encrypted Noise messages.
#[derive(Debug)]
pub struct FrameSender<W> {
    writer: W,
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
            let at = match self.open {
                Some(at) => at,
                None => {
                    let at = self.buf.len();
                    self.buf.extend_from_slice(&[0, 0]);
                    self.open = Some(at);
                    at
                }
            };
            let body = self.buf.len().saturating_sub(at.saturating_add(2));
            let room = MAX_NOISE_PLAINTEXT.saturating_sub(body);
            let (now, rest) = bytes.split_at(room.min(bytes.len()));
            self.buf.extend_from_slice(now);
            if now.len() == room {
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

/// Receiving half: encrypted Noise messages → frames.
#[derive(Debug)]
pub struct FrameReceiver<R> {
    reader: R,
    key: CipherKey,
    /// Read slab (empty while released, see [`FrameReceiver::release_idle_slab`]).
    /// `cipher_start..cipher_end` is ciphertext not yet opened; `plain_start..plain_end` (always
    /// before `cipher_start`) is plaintext opened in place, not yet consumed.
    slab: Vec<u8>,
    plain_start: usize,
    plain_end: usize,
    cipher_start: usize,
    cipher_end: usize,
    /// The current frame's length prefix, then its first [`FRAME_HEAD_LEN`] bytes (fewer for a
    /// shorter frame), as received so far; the frame is admitted once they are complete.
    head: [u8; FRAME_LEN_PREFIX + FRAME_HEAD_LEN],
    head_len: usize,
    /// Length of the admitted frame being reassembled, its buffer (already that long, empty
    /// when discarding) and how much of it is filled.
    want: Option<usize>,
    discard: bool,
    frame: Vec<u8>,
    filled: usize,
    /// Ciphertext bytes read from the stream so far.
    bytes_read: u64,
}

/// How many leading bytes of a frame [`FrameReceiver::recv_frame_admitted`] shows its admission
/// function before any buffer for the frame exists (the nRPC frame header: version, dispatch,
/// call id).
pub const FRAME_HEAD_LEN: usize = crate::frame::HEADER_LEN;

/// An admission decision for one incoming frame, made from its length and head.
#[derive(Debug)]
pub enum Admit {
    /// Reassemble the frame into this buffer (overwritten, resized to the frame length).
    Store(Vec<u8>),
    /// Read the frame's bytes and drop them without buffering the frame.
    Discard,
}

/// One frame out of [`FrameReceiver::recv_frame_admitted`].
#[derive(Debug)]
pub enum Incoming {
    /// A whole frame that was admitted with [`Admit::Store`].
    Frame(Vec<u8>),
    /// A frame of `len` bytes that was read past and dropped ([`Admit::Discard`]).
    Discarded { len: usize },
}

/// Splits an established Noise transport over a stream's two halves.
pub fn split<R, W>(keys: SessionKeys, reader: R, writer: W) -> (FrameSender<W>, FrameReceiver<R>) {
    (
        FrameSender {
            writer,
            key: keys.send,
            wire: Vec::new(),
            open: None,
            segments: Vec::new(),
            spent: Vec::new(),
        },
        FrameReceiver {
            reader,
            key: keys.recv,
            slab: vec![0u8; READ_SLAB],
            plain_start: 0,
            plain_end: 0,
            cipher_start: 0,
            cipher_end: 0,
            head: [0; FRAME_LEN_PREFIX + FRAME_HEAD_LEN],
            head_len: 0,
            want: None,
            discard: false,
            frame: Vec::new(),
            filled: 0,
            bytes_read: 0,
        },
    )
}

impl<W> FrameSender<W> {
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
            let at = match self.open {
                Some(at) => at,
                None => {
                    let at = self.wire.len();
                    self.wire.extend_from_slice(&[0, 0]);
                    self.open = Some(at);
                    at
                }
            };
            let body = self.wire.len().saturating_sub(at.saturating_add(2));
            let room = MAX_NOISE_PLAINTEXT.saturating_sub(body);
            let (now, rest) = bytes.split_at(room.min(bytes.len()));
            self.wire.extend_from_slice(now);
            if now.len() == room {
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

/// Frames at least this long get a zeroed buffer up front when none is supplied (fresh zero
/// pages from the allocator, so the direct-decrypt path can write anywhere in it).
const PRESIZE_MIN: usize = 64 * 1024;

/// `buf` prepared for a frame of `len` bytes, in one of two modes. *Presized* (`len()` is the
/// frame length, bytes land at their offsets): a recycled buffer at least that long keeps its
/// old bytes (every one is overwritten before the frame is handed out), so it is not zeroed; a
/// large fresh one comes zeroed from the allocator. *Append* (empty, capacity reserved): bytes
/// are appended, so a small frame's buffer is never zero-filled first.
fn frame_buffer(mut buf: Vec<u8>, len: usize) -> Vec<u8> {
    if buf.len() >= len {
        buf.truncate(len);
        return buf;
    }
    if len >= PRESIZE_MIN && buf.capacity() < len {
        return vec![0; len];
    }
    buf.clear();
    buf.reserve(len);
    buf
}

impl<R> FrameReceiver<R> {
    /// True while part of a Noise message or of a frame has arrived and the rest has not (a
    /// peer that stops here is making no progress).
    pub fn is_mid_frame(&self) -> bool {
        self.cipher_start != self.cipher_end
            || self.plain_start != self.plain_end
            || self.head_len != 0
            || self.want.is_some()
    }

    /// Frees the read slab when nothing is buffered in it, so an idle session holds no receive
    /// buffer; the next read allocates a fresh one. Returns whether it was freed.
    pub fn release_idle_slab(&mut self) -> bool {
        if self.slab.is_empty()
            || self.cipher_start != self.cipher_end
            || self.plain_start != self.plain_end
        {
            return false;
        }
        self.slab = Vec::new();
        self.cipher_start = 0;
        self.cipher_end = 0;
        self.plain_start = 0;
        self.plain_end = 0;
        true
    }

    /// Ciphertext bytes read from the stream so far (progress, for stall detection).
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// Bytes this receiver currently holds in its slab and the frame being reassembled.
    pub fn buffered_capacity(&self) -> usize {
        self.slab.capacity().saturating_add(self.frame.capacity())
    }
}

impl<R: AsyncRead + Unpin> FrameReceiver<R> {
    /// The next whole frame, or `None` on a clean end of stream at a frame boundary.
    pub async fn recv_frame(&mut self) -> Result<Option<Vec<u8>>, TransportError> {
        self.recv_frame_with(|_| Vec::new()).await
    }

    /// Like [`FrameReceiver::recv_frame`], but fills `buf` (overwritten) so a caller can
    /// recycle frame buffers instead of allocating one per frame.
    pub async fn recv_frame_into(
        &mut self,
        buf: Vec<u8>,
    ) -> Result<Option<Vec<u8>>, TransportError> {
        let mut buf = Some(buf);
        self.recv_frame_with(move |_| buf.take().unwrap_or_default())
            .await
    }

    /// Like [`FrameReceiver::recv_frame`]; `alloc(len)` supplies the buffer for a frame of
    /// `len` bytes once its head has arrived (so a caller can pool large buffers and right-size
    /// small ones). Whatever it holds is overwritten, so a recycled buffer need not be cleared.
    pub async fn recv_frame_with(
        &mut self,
        mut alloc: impl FnMut(usize) -> Vec<u8>,
    ) -> Result<Option<Vec<u8>>, TransportError> {
        let next = self
            .recv_frame_admitted(|len, _head| Ok::<_, TransportError>(Admit::Store(alloc(len))))
            .await?;
        match next {
            Some(Incoming::Frame(frame)) => Ok(Some(frame)),
            // Every frame was admitted with `Store`.
            Some(Incoming::Discarded { .. }) | None => Ok(None),
        }
    }

    /// The next frame, admitted by `admit(len, head)` before any buffer for it exists: `head`
    /// is its first [`FRAME_HEAD_LEN`] bytes (all of it when shorter). `admit` may store the
    /// frame, have it read past and dropped, or fail (the error is returned as is). A length
    /// above [`MAX_FRAME_LEN`] fails before `admit` is asked. `None` on a clean end of stream
    /// at a frame boundary.
    ///
    /// Cancel-safe: dropping the future between polls loses nothing (the only await is the
    /// socket read, and all state lives in `self`), so a caller may race it against timers.
    pub async fn recv_frame_admitted<E: From<TransportError>>(
        &mut self,
        mut admit: impl FnMut(usize, &[u8]) -> Result<Admit, E>,
    ) -> Result<Option<Incoming>, E> {
        loop {
            if let Some(incoming) = self.take_frame(&mut admit)? {
                return Ok(Some(incoming));
            }
            if !self.open_next_message().await? {
                return if self.head_len == 0 && self.want.is_none() {
                    Ok(None)
                } else {
                    Err(TransportError::Truncated.into())
                };
            }
        }
    }

    /// Moves opened plaintext into the frame being reassembled; a whole frame when one is done.
    fn take_frame<E: From<TransportError>>(
        &mut self,
        admit: &mut impl FnMut(usize, &[u8]) -> Result<Admit, E>,
    ) -> Result<Option<Incoming>, E> {
        loop {
            let plain = self
                .slab
                .get(self.plain_start..self.plain_end)
                .unwrap_or_default();
            if let Some(len) = self.want {
                let missing = len.saturating_sub(self.filled);
                let n = missing.min(plain.len());
                let end = self.filled.saturating_add(n);
                if !self.discard {
                    let bytes = plain.get(..n).unwrap_or_default();
                    if self.frame.len() >= len {
                        self.frame
                            .get_mut(self.filled..end)
                            .ok_or(TransportError::Truncated)?
                            .copy_from_slice(bytes);
                    } else {
                        self.frame.extend_from_slice(bytes);
                    }
                }
                self.filled = end;
                self.plain_start = self.plain_start.saturating_add(n);
                return Ok(self.finish_if_filled());
            }
            // Collect the length prefix, then the head; admit the frame once both are complete.
            let target = if self.head_len < FRAME_LEN_PREFIX {
                FRAME_LEN_PREFIX
            } else {
                FRAME_LEN_PREFIX.saturating_add(self.announced_len().min(FRAME_HEAD_LEN))
            };
            if self.head_len >= target {
                self.admit_frame(admit)?;
                continue;
            }
            if plain.is_empty() {
                return Ok(None);
            }
            let room = self.head.get_mut(self.head_len..target).unwrap_or_default();
            let n = room.len().min(plain.len());
            if let (Some(dst), Some(src)) = (room.get_mut(..n), plain.get(..n)) {
                dst.copy_from_slice(src);
            }
            self.plain_start = self.plain_start.saturating_add(n);
            self.head_len = self.head_len.saturating_add(n);
            if self.head_len == FRAME_LEN_PREFIX && self.announced_len() > MAX_FRAME_LEN {
                let len = u64::try_from(self.announced_len()).unwrap_or(u64::MAX);
                return Err(TransportError::FrameTooLarge { len }.into());
            }
        }
    }

    /// The frame length announced by the (complete) length prefix.
    fn announced_len(&self) -> usize {
        let mut prefix = [0u8; FRAME_LEN_PREFIX];
        if let Some(bytes) = self.head.get(..FRAME_LEN_PREFIX) {
            prefix.copy_from_slice(bytes);
        }
        usize::try_from(u32::from_le_bytes(prefix)).unwrap_or(usize::MAX)
    }

    /// Asks `admit` about the frame whose prefix and head are complete, and starts it.
    fn admit_frame<E: From<TransportError>>(
        &mut self,
        admit: &mut impl FnMut(usize, &[u8]) -> Result<Admit, E>,
    ) -> Result<(), E> {
        let len = self.announced_len();
        let head = self
            .head
            .get(FRAME_LEN_PREFIX..self.head_len)
            .unwrap_or_default();
        let head_len = head.len();
        match admit(len, head)? {
            Admit::Store(buf) => {
                self.frame = frame_buffer(buf, len);
                let head = self
                    .head
                    .get(FRAME_LEN_PREFIX..self.head_len)
                    .unwrap_or_default();
                if self.frame.len() >= len {
                    self.frame
                        .get_mut(..head_len)
                        .ok_or(TransportError::Truncated)?
                        .copy_from_slice(head);
                } else {
                    self.frame.extend_from_slice(head);
                }
                self.discard = false;
            }
            Admit::Discard => {
                self.frame = Vec::new();
                self.discard = true;
            }
        }
        self.filled = head_len;
        self.want = Some(len);
        self.head_len = 0;
        Ok(())
    }

    /// The finished frame, once every byte of it arrived.
    fn finish_if_filled(&mut self) -> Option<Incoming> {
        let len = self.want?;
        if self.filled < len {
            return None;
        }
        self.want = None;
        if std::mem::take(&mut self.discard) {
            Some(Incoming::Discarded { len })
        } else {
            Some(Incoming::Frame(std::mem::take(&mut self.frame)))
        }
    }

    /// Reads (if needed) and opens the next Noise message. `false` on clean EOF. Ciphertext is
    /// read in large slabs (up to [`READ_SLAB`]) to keep syscalls few. A message whose
    /// plaintext lies wholly inside the frame being reassembled is decrypted straight from the
    /// slab into the frame (one pass, no copy); any other is opened in place in the slab and
    /// its plaintext taken from there.
    async fn open_next_message(&mut self) -> Result<bool, TransportError> {
        let (msg_at, msg_len) = loop {
            let buffered = self
                .slab
                .get(self.cipher_start..self.cipher_end)
                .unwrap_or_default();
            if let Some((prefix, rest)) = buffered.split_first_chunk::<2>() {
                let len = usize::from(u16::from_le_bytes(*prefix));
                if rest.len() >= len {
                    break (self.cipher_start.saturating_add(2), len);
                }
            }
            // Need more bytes (all opened plaintext has been consumed): compact, then read.
            if self.slab.is_empty() {
                self.slab = vec![0u8; READ_SLAB];
            }
            if self.cipher_start > 0 {
                self.slab.copy_within(self.cipher_start..self.cipher_end, 0);
                self.cipher_end = self.cipher_end.saturating_sub(self.cipher_start);
                self.cipher_start = 0;
                self.plain_start = 0;
                self.plain_end = 0;
            }
            let room = self
                .slab
                .get_mut(self.cipher_end..)
                .ok_or(TransportError::Truncated)?;
            let n = self.reader.read(room).await?;
            if n == 0 {
                return if self.cipher_end == 0 {
                    Ok(false)
                } else {
                    Err(TransportError::Truncated)
                };
            }
            self.cipher_end = self.cipher_end.saturating_add(n);
            self.bytes_read = self.bytes_read.saturating_add(n as u64);
        };
        let msg_end = msg_at.saturating_add(msg_len);
        if msg_len < NOISE_TAG_LEN {
            return Err(snow::Error::Decrypt.into());
        }
        let nonce = self.key.next_nonce()?;
        let body = msg_len.saturating_sub(NOISE_TAG_LEN);
        if let Some(len) = self.want
            && !self.discard
            && self.plain_start == self.plain_end
            && body <= len.saturating_sub(self.filled)
        {
            let at = self.filled;
            self.filled = at.saturating_add(body);
            let msg = self
                .slab
                .get(msg_at..msg_end)
                .ok_or(TransportError::Truncated)?;
            let (ciphertext, tag) = msg.split_at(body.min(msg.len()));
            if self.frame.len() < self.filled {
                // Append mode: make room for the message's plaintext.
                self.frame.resize(self.filled, 0);
            }
            let out = self
                .frame
                .get_mut(at..self.filled)
                .ok_or(TransportError::Truncated)?;
            self.key
                .key
                .open_separate_gather(nonce, Aad::empty(), ciphertext, tag, out)
                .map_err(|_| snow::Error::Decrypt)?;
            self.plain_start = msg_end;
            self.plain_end = msg_end;
            self.cipher_start = msg_end;
            return Ok(true);
        }
        let msg = self
            .slab
            .get_mut(msg_at..msg_end)
            .ok_or(TransportError::Truncated)?;
        let plain = self
            .key
            .key
            .open_in_place(nonce, Aad::empty(), msg)
            .map_err(|_| snow::Error::Decrypt)?;
        self.plain_start = msg_at;
        self.plain_end = msg_at.saturating_add(plain.len());
        self.cipher_start = msg_end;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake;
    use crate::identity::Identity;
    use std::time::Duration;

    type PipeTx = FrameSender<tokio::io::WriteHalf<tokio::io::DuplexStream>>;
    type PipeRx = FrameReceiver<tokio::io::ReadHalf<tokio::io::DuplexStream>>;

    /// A sender (one side) and a receiver (the other) over an in-memory pipe of `capacity`
    /// bytes, after a real handshake; the two unused halves come back too, to keep the pipe open.
    async fn pipe_pair(capacity: usize) -> (PipeTx, PipeRx, (PipeRx, PipeTx)) {
        let (mut a, mut b) = tokio::io::duplex(capacity);
        let t = Duration::from_secs(10);
        let (ia, ib) = (Identity::from_seed([1; 32]), Identity::from_seed([2; 32]));
        let (ea, eb) = tokio::join!(
            handshake::initiate(&mut a, (&ia).into(), None, t),
            handshake::respond(&mut b, (&ib).into(), t)
        );
        let (ar, aw) = tokio::io::split(a);
        let (br, bw) = tokio::io::split(b);
        let (tx, arx) = split(ea.unwrap().transport, ar, aw);
        let (btx, rx) = split(eb.unwrap().transport, br, bw);
        (tx, rx, (arx, btx))
    }

    #[tokio::test]
    async fn frames_larger_than_a_noise_message_are_split_and_reassembled() {
        let (mut tx, mut rx, _unused) = pipe_pair(1 << 20).await;
        let sizes = [
            0usize,
            1,
            MAX_NOISE_PLAINTEXT - 4,
            MAX_NOISE_PLAINTEXT,
            200_000,
            3,
            1 << 20,
        ];
        let frames: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| vec![i as u8; n])
            .collect();
        let sender = tokio::spawn(async move {
            for frame in &frames {
                tx.queue_frame(frame).unwrap();
            }
            tx.flush().await.unwrap();
            tx.send_frame(b"last").await.unwrap();
            tx
        });
        for (i, &n) in sizes.iter().enumerate() {
            assert_eq!(rx.recv_frame().await.unwrap().unwrap(), vec![i as u8; n]);
        }
        assert_eq!(rx.recv_frame().await.unwrap().unwrap(), b"last");
        drop(sender.await.unwrap());
    }

    fn snow_pair() -> (snow::HandshakeState, snow::HandshakeState) {
        let params: snow::params::NoiseParams = handshake::NOISE_PARAMS.parse().unwrap();
        let b = || snow::Builder::new(params.clone());
        let (ki, kr) = (
            b().generate_keypair().unwrap(),
            b().generate_keypair().unwrap(),
        );
        let mut i = b()
            .local_private_key(&ki.private)
            .unwrap()
            .build_initiator()
            .unwrap();
        let mut r = b()
            .local_private_key(&kr.private)
            .unwrap()
            .build_responder()
            .unwrap();
        let (mut buf, mut out) = (vec![0u8; 1024], vec![0u8; 1024]);
        for step in 0..3 {
            let (w, rd) = if step == 1 {
                (&mut r, &mut i)
            } else {
                (&mut i, &mut r)
            };
            let n = w.write_message(&[], &mut buf).unwrap();
            rd.read_message(&buf[..n], &mut out).unwrap();
        }
        (i, r)
    }

    /// In-place sealing produces exactly the bytes snow's own transport state would, and
    /// snow can open what we seal (the wire format is unchanged).
    #[tokio::test]
    async fn in_place_sealing_is_byte_identical_to_snow() {
        let (mut i, mut r) = snow_pair();
        let (k1, k2) = i.dangerously_get_raw_split();
        let ours_i = SessionKeys::from_split(true, &k1, &k2).unwrap();
        let (k1, k2) = r.dangerously_get_raw_split();
        let ours_r = SessionKeys::from_split(false, &k1, &k2).unwrap();
        let snow_i = i.into_stateless_transport_mode().unwrap();
        let snow_r = r.into_stateless_transport_mode().unwrap();

        let frames = [vec![7u8; 100_000], vec![1, 2, 3], Vec::new()];
        let (mut tx, _) = split(ours_i, tokio::io::empty(), Vec::new());
        let mut stream = Vec::new();
        for frame in &frames {
            tx.queue_frame(frame).unwrap();
            stream.extend_from_slice(&(frame.len() as u32).to_le_bytes());
            stream.extend_from_slice(frame);
        }
        tx.flush().await.unwrap();
        let mut expected = Vec::new();
        for (nonce, piece) in stream.chunks(MAX_NOISE_PLAINTEXT).enumerate() {
            let mut msg = vec![0u8; piece.len() + NOISE_TAG_LEN];
            let n = snow_i.write_message(nonce as u64, piece, &mut msg).unwrap();
            expected.extend_from_slice(&(n as u16).to_le_bytes());
            expected.extend_from_slice(&msg[..n]);
        }
        assert_eq!(tx.writer, expected);

        // snow opens ours ...
        let mut at = 0;
        let mut opened = Vec::new();
        for nonce in 0u64.. {
            if at == expected.len() {
                break;
            }
            let len = u16::from_le_bytes([expected[at], expected[at + 1]]) as usize;
            let mut out = vec![0u8; len];
            let n = snow_r
                .read_message(nonce, &expected[at + 2..at + 2 + len], &mut out)
                .unwrap();
            opened.extend_from_slice(&out[..n]);
            at += 2 + len;
        }
        assert_eq!(opened, stream);
        // ... and our receiver reassembles the frames.
        let (_, mut rx) = split(ours_r, &expected[..], tokio::io::sink());
        for frame in &frames {
            assert_eq!(&rx.recv_frame().await.unwrap().unwrap(), frame);
        }
        assert!(rx.recv_frame().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn tampered_short_or_truncated_messages_are_errors() {
        let keys = || {
            let (mut i, mut r) = snow_pair();
            let (a1, a2) = i.dangerously_get_raw_split();
            let (b1, b2) = r.dangerously_get_raw_split();
            (
                SessionKeys::from_split(true, &a1, &a2).unwrap(),
                SessionKeys::from_split(false, &b1, &b2).unwrap(),
            )
        };
        let (ki, kr) = keys();
        let (mut tx, _) = split(ki, tokio::io::empty(), Vec::new());
        tx.send_frame(b"hello").await.unwrap();
        let wire = tx.writer;
        let mut bad = wire.clone();
        *bad.last_mut().unwrap() ^= 1;
        let (_, mut rx) = split(kr, &bad[..], tokio::io::sink());
        assert!(matches!(
            rx.recv_frame().await,
            Err(TransportError::Noise(snow::Error::Decrypt))
        ));
        let (_, kr) = keys();
        let short = [3u8, 0, 1, 2, 3];
        let (_, mut rx) = split(kr, &short[..], tokio::io::sink());
        assert!(matches!(
            rx.recv_frame().await,
            Err(TransportError::Noise(snow::Error::Decrypt))
        ));
        // Truncated mid-message and mid-frame.
        let (ki, kr) = keys();
        let (mut tx, _) = split(ki, tokio::io::empty(), Vec::new());
        tx.send_frame(b"hello").await.unwrap();
        let cut = &tx.writer[..tx.writer.len() - 1];
        let (_, mut rx) = split(kr, cut, tokio::io::sink());
        assert!(matches!(
            rx.recv_frame().await,
            Err(TransportError::Truncated)
        ));
        let (ki, kr) = keys();
        let (mut tx, _) = split(ki, tokio::io::empty(), Vec::new());
        tx.queue_raw_stream_bytes(&[10, 0, 0, 0, 1]).unwrap();
        tx.flush().await.unwrap();
        let (_, mut rx) = split(kr, &tx.writer[..], tokio::io::sink());
        assert!(matches!(
            rx.recv_frame().await,
            Err(TransportError::Truncated)
        ));
    }

    /// Owned frames sealed in place (vectored writes, partial progress through a small pipe)
    /// interleave correctly with copied ones.
    #[tokio::test]
    async fn owned_frames_sealed_in_place_round_trip() {
        let (mut tx, mut rx, _unused) = pipe_pair(4096).await;
        let sizes = [
            5usize,
            IN_PLACE_MIN,
            1 << 20,
            0,
            MAX_NOISE_PLAINTEXT,
            3 * MAX_NOISE_PLAINTEXT + 1,
            7,
            IN_PLACE_MIN - 1,
        ];
        let frames: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| (0..n).map(|j| (i + j) as u8).collect())
            .collect();
        let to_send = frames.clone();
        let sender = tokio::spawn(async move {
            for (i, frame) in to_send.into_iter().enumerate() {
                tx.queue_owned_frame(frame).unwrap();
                if i % 3 == 2 {
                    tx.flush().await.unwrap();
                }
            }
            tx.flush().await.unwrap();
            assert_eq!(tx.queued_len(), 0);
            assert_eq!(tx.take_spent().count(), sizes.len());
            tx
        });
        for frame in &frames {
            assert_eq!(&rx.recv_frame().await.unwrap().unwrap(), frame);
        }
        drop(sender.await.unwrap());
    }

    /// One frame as a test sends it: its size and how the sender queues it.
    #[derive(Debug, Clone)]
    struct Send {
        len: usize,
        /// 0: copied with `queue_frame`, 1: handed over owned, 2: through a `StreamBuf`.
        mode: u8,
        flush_after: bool,
    }

    fn send_strategy() -> impl proptest::strategy::Strategy<Value = Send> {
        use proptest::prelude::*;
        let len = prop_oneof![0usize..100, 100usize..70_000, 60_000usize..400_000];
        (len, 0u8..3, any::<bool>()).prop_map(|(len, mode, flush_after)| Send {
            len,
            mode,
            flush_after,
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 48, .. Default::default() })]
        /// Any mix of frame sizes, however the sender cuts them into Noise messages (copied,
        /// sealed in place, or laid out in a `StreamBuf`) and however the stream fragments
        /// reads, arrives intact: this drives both ways of opening a
        /// message (straight into the frame when its plaintext lies inside it, in the slab when
        /// it spans frame boundaries) and the switches between them.
        #[test]
        fn any_frames_over_any_fragmentation_arrive_intact(
            sends in proptest::collection::vec(send_strategy(), 1..12),
            pipe in 1usize..300_000,
        ) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap();
            rt.block_on(async move {
                let (mut tx, mut rx, _unused) = pipe_pair(pipe).await;
                let frames: Vec<Vec<u8>> = sends
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (0..s.len).map(|j| (i * 31 + j * 7) as u8).collect())
                    .collect();
                let to_send = frames.clone();
                let plan = sends.clone();
                let sender = async move {
                    for (frame, s) in to_send.into_iter().zip(plan) {
                        match s.mode {
                            0 => tx.queue_frame(&frame).unwrap(),
                            1 => tx.queue_owned_frame(frame).unwrap(),
                            _ => {
                                let mut stream = StreamBuf::default();
                                // A rolled-back partial append leaves no trace.
                                let mark = stream.mark();
                                stream.append(&[9; 70_000]);
                                stream.rollback(mark);
                                stream.append(&(frame.len() as u32).to_le_bytes());
                                stream.append(&frame);
                                tx.queue_stream_buf(stream).unwrap();
                            }
                        }
                        if s.flush_after {
                            tx.flush().await.unwrap();
                        }
                    }
                    tx.flush().await.unwrap();
                    // End of stream: a receiver still missing bytes fails at once.
                    tx.shutdown().await.unwrap();
                    tx
                };
                let receiver = async {
                    for (i, frame) in frames.iter().enumerate() {
                        let got = rx.recv_frame().await.unwrap().unwrap();
                        assert!(&got == frame, "frame {i} of {} bytes differs", frame.len());
                    }
                };
                // A lost byte would leave the receiver waiting: fail instead of hanging.
                let both = tokio::time::timeout(Duration::from_secs(20), async {
                    tokio::join!(sender, receiver)
                });
                let (tx, ()) = both.await.expect("frames stalled: bytes lost on the way");
                drop(tx);
            });
        }
    }
}
