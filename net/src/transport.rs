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
//!   maximum frame plus one Noise message.

use std::sync::Arc;

use snow::StatelessTransportState;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::frame::MAX_FRAME_LEN;

/// Largest plaintext per Noise message (65535 minus the 16-byte AEAD tag).
pub const MAX_NOISE_PLAINTEXT: usize = 65535 - 16;
/// Size of the AEAD tag.
pub const NOISE_TAG_LEN: usize = 16;
/// Receive buffer size: several maximum Noise messages per read syscall (must be at least
/// one maximum message plus its 2-byte length).
pub const READ_SLAB: usize = 4 * (MAX_NOISE_PLAINTEXT + NOISE_TAG_LEN + 2);
/// Frames at least this large are encrypted directly from their buffer instead of being
/// copied into the batch first.
pub const DIRECT_ENCRYPT_MIN: usize = 16 * 1024;
/// Size of the per-frame length prefix in the frame stream.
pub const FRAME_LEN_PREFIX: usize = 4;

/// Transport failure; every variant ends the session.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Socket error.
    #[error("transport I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A Noise message failed to decrypt or encrypt.
    #[error("noise transport error: {0}")]
    Noise(#[from] snow::Error),
    /// A frame length prefix exceeds the maximum frame size.
    #[error("peer announced a frame of {len} bytes (max {MAX_FRAME_LEN})")]
    FrameTooLarge { len: u64 },
    /// The stream ended in the middle of a Noise message or frame.
    #[error("stream ended mid-message")]
    Truncated,
}

/// Sending half: frames → encrypted Noise messages.
#[derive(Debug)]
pub struct FrameSender<W> {
    writer: W,
    state: Arc<StatelessTransportState>,
    nonce: u64,
    stream_bytes: Vec<u8>,
    wire: Vec<u8>,
}

/// Receiving half: encrypted Noise messages → frames.
#[derive(Debug)]
pub struct FrameReceiver<R> {
    reader: R,
    state: Arc<StatelessTransportState>,
    nonce: u64,
    /// Decrypted frame-stream bytes not yet returned; `start` marks the unread part.
    plain: Vec<u8>,
    start: usize,
    /// Ciphertext read from the socket; `cipher_start..cipher_end` is not yet decrypted.
    ciphertext: Vec<u8>,
    cipher_start: usize,
    cipher_end: usize,
}

/// Splits an established Noise transport over a stream's two halves.
pub fn split<R, W>(
    state: StatelessTransportState,
    reader: R,
    writer: W,
) -> (FrameSender<W>, FrameReceiver<R>) {
    let state = Arc::new(state);
    (
        FrameSender {
            writer,
            state: state.clone(),
            nonce: 0,
            stream_bytes: Vec::new(),
            wire: Vec::new(),
        },
        FrameReceiver {
            reader,
            state,
            nonce: 0,
            plain: Vec::new(),
            start: 0,
            ciphertext: vec![0u8; READ_SLAB],
            cipher_start: 0,
            cipher_end: 0,
        },
    )
}

impl<W: AsyncWrite + Unpin> FrameSender<W> {
    /// Queues one frame (length prefix + bytes) for the next [`FrameSender::flush`]. Small
    /// frames are batched into shared Noise messages; a large frame is encrypted straight from
    /// `frame` (after sealing what was batched before it), saving a copy. Either way the frame
    /// stream on the wire is the same.
    pub fn queue_frame(&mut self, frame: &[u8]) -> Result<(), TransportError> {
        if frame.len() > MAX_FRAME_LEN {
            return Err(TransportError::FrameTooLarge {
                len: frame.len() as u64,
            });
        }
        let len = u32::try_from(frame.len()).map_err(|_| TransportError::FrameTooLarge {
            len: frame.len() as u64,
        })?;
        self.stream_bytes.extend_from_slice(&len.to_le_bytes());
        if frame.len() < DIRECT_ENCRYPT_MIN {
            self.stream_bytes.extend_from_slice(frame);
            return Ok(());
        }
        self.seal_batched()?;
        self.encrypt_into_wire(frame)
    }

    /// Queues raw frame-stream bytes, bypassing the length prefix (lets tests act as a
    /// misbehaving peer, e.g. announce an oversized frame).
    pub fn queue_raw_stream_bytes(&mut self, bytes: &[u8]) {
        self.stream_bytes.extend_from_slice(bytes);
    }

    /// Bytes queued (plaintext batched plus ciphertext ready) and not yet written.
    pub fn queued_len(&self) -> usize {
        self.stream_bytes.len().saturating_add(self.wire.len())
    }

    fn seal_batched(&mut self) -> Result<(), TransportError> {
        let batched = std::mem::take(&mut self.stream_bytes);
        let result = self.encrypt_into_wire(&batched);
        self.stream_bytes = batched;
        self.stream_bytes.clear();
        result
    }

    fn encrypt_into_wire(&mut self, plaintext: &[u8]) -> Result<(), TransportError> {
        for piece in plaintext.chunks(MAX_NOISE_PLAINTEXT) {
            let at = self.wire.len();
            let msg_len = piece.len().saturating_add(NOISE_TAG_LEN);
            let len16 = u16::try_from(msg_len).map_err(|_| snow::Error::Input)?;
            self.wire.extend_from_slice(&len16.to_le_bytes());
            let body_at = at.saturating_add(2);
            self.wire.resize(body_at.saturating_add(msg_len), 0);
            let out = self.wire.get_mut(body_at..).ok_or(snow::Error::Input)?;
            self.state.write_message(self.nonce, piece, out)?;
            self.nonce = self.nonce.checked_add(1).ok_or(snow::Error::Input)?;
        }
        Ok(())
    }

    /// Encrypts everything batched into Noise messages, ready to be written.
    pub fn flush_blocking_encrypt(&mut self) -> Result<(), TransportError> {
        self.seal_batched()
    }

    /// Encrypts and writes everything queued.
    pub async fn flush(&mut self) -> Result<(), TransportError> {
        self.flush_blocking_encrypt()?;
        self.writer.write_all(&self.wire).await?;
        self.writer.flush().await?;
        self.wire.clear();
        if self.wire.capacity() > 4 * MAX_FRAME_LEN / 16 {
            self.wire = Vec::new();
            self.stream_bytes = Vec::new();
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

impl<R: AsyncRead + Unpin> FrameReceiver<R> {
    /// The next whole frame, or `None` on a clean end of stream at a frame boundary.
    pub async fn recv_frame(&mut self) -> Result<Option<Vec<u8>>, TransportError> {
        self.recv_frame_into(Vec::new()).await
    }

    /// Like [`FrameReceiver::recv_frame`], but fills `buf` (cleared first) so a caller can
    /// recycle frame buffers instead of allocating one per frame.
    pub async fn recv_frame_into(
        &mut self,
        mut buf: Vec<u8>,
    ) -> Result<Option<Vec<u8>>, TransportError> {
        loop {
            if self.take_frame(&mut buf)? {
                let frame = buf;
                return Ok(Some(frame));
            }
            if !self.read_noise_message().await? {
                return if self.plain.len() == self.start {
                    Ok(None)
                } else {
                    Err(TransportError::Truncated)
                };
            }
        }
    }

    fn take_frame(&mut self, out: &mut Vec<u8>) -> Result<bool, TransportError> {
        let unread = self.plain.get(self.start..).unwrap_or_default();
        let Some((prefix, rest)) = unread.split_first_chunk::<FRAME_LEN_PREFIX>() else {
            return Ok(false);
        };
        let len64 = u64::from(u32::from_le_bytes(*prefix));
        let len =
            usize::try_from(len64).map_err(|_| TransportError::FrameTooLarge { len: len64 })?;
        if len > MAX_FRAME_LEN {
            return Err(TransportError::FrameTooLarge { len: len64 });
        }
        let Some(frame) = rest.get(..len) else {
            return Ok(false);
        };
        out.clear();
        out.reserve(len);
        out.extend_from_slice(frame);
        self.start = self
            .start
            .saturating_add(FRAME_LEN_PREFIX)
            .saturating_add(len);
        if self.start == self.plain.len() {
            self.plain.clear();
            self.start = 0;
        }
        Ok(true)
    }

    /// Reads and decrypts one Noise message onto the plaintext buffer. `false` on clean EOF.
    /// Ciphertext is read in large slabs (up to [`READ_SLAB`]) to keep syscalls few.
    async fn read_noise_message(&mut self) -> Result<bool, TransportError> {
        let (msg_at, msg_len) = loop {
            let buffered = self
                .ciphertext
                .get(self.cipher_start..self.cipher_end)
                .unwrap_or_default();
            if let Some((prefix, rest)) = buffered.split_first_chunk::<2>() {
                let len = usize::from(u16::from_le_bytes(*prefix));
                if rest.len() >= len {
                    break (self.cipher_start.saturating_add(2), len);
                }
            }
            // Need more bytes: compact, then read.
            if self.cipher_start > 0 {
                self.ciphertext
                    .copy_within(self.cipher_start..self.cipher_end, 0);
                self.cipher_end = self.cipher_end.saturating_sub(self.cipher_start);
                self.cipher_start = 0;
            }
            let room = self
                .ciphertext
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
        };
        if self.start > 0 {
            self.plain.drain(..self.start);
            self.start = 0;
        }
        let at = self.plain.len();
        self.plain.resize(at.saturating_add(msg_len), 0);
        let out = self.plain.get_mut(at..).ok_or(TransportError::Truncated)?;
        let msg_end = msg_at.saturating_add(msg_len);
        let msg = self
            .ciphertext
            .get(msg_at..msg_end)
            .ok_or(TransportError::Truncated)?;
        let n = match self.state.read_message(self.nonce, msg, out) {
            Ok(n) => n,
            Err(e) => {
                self.plain.truncate(at);
                return Err(e.into());
            }
        };
        self.plain.truncate(at.saturating_add(n));
        self.cipher_start = msg_end;
        self.nonce = self.nonce.checked_add(1).ok_or(snow::Error::Input)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake;
    use crate::identity::Identity;
    use std::time::Duration;

    #[tokio::test]
    async fn frames_larger_than_a_noise_message_are_split_and_reassembled() {
        let (mut a, mut b) = tokio::io::duplex(1 << 20);
        let t = Duration::from_secs(10);
        let (ia, ib) = (Identity::from_seed([1; 32]), Identity::from_seed([2; 32]));
        let (ea, eb) = tokio::join!(
            handshake::initiate(&mut a, &ia, t),
            handshake::respond(&mut b, &ib, t)
        );
        let (ar, aw) = tokio::io::split(a);
        let (br, bw) = tokio::io::split(b);
        let (mut tx, _arx) = split(ea.unwrap().transport, ar, aw);
        let (_btx, mut rx) = split(eb.unwrap().transport, br, bw);
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
}
