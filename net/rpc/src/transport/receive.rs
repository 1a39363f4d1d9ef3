//! The receiving half: Noise messages read and opened, frames admitted and reassembled.

use aws_lc_rs::aead::Aad;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{CipherKey, FRAME_LEN_PREFIX, NOISE_TAG_LEN, READ_SLAB, TransportError};
use crate::frame::MAX_FRAME_LEN;

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
    pub(super) fn new(reader: R, key: CipherKey) -> Self {
        FrameReceiver {
            reader,
            key,
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
        }
    }

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
