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
    ciphertext: Vec<u8>,
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
            ciphertext: vec![0u8; MAX_NOISE_PLAINTEXT + NOISE_TAG_LEN],
        },
    )
}

impl<W: AsyncWrite + Unpin> FrameSender<W> {
    /// Queues one frame (length prefix + bytes) for the next [`FrameSender::flush`].
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
        self.stream_bytes.extend_from_slice(frame);
        Ok(())
    }

    /// Queues raw frame-stream bytes, bypassing the length prefix (lets tests act as a
    /// misbehaving peer, e.g. announce an oversized frame).
    pub fn queue_raw_stream_bytes(&mut self, bytes: &[u8]) {
        self.stream_bytes.extend_from_slice(bytes);
    }

    /// Bytes queued and not yet flushed.
    pub fn queued_len(&self) -> usize {
        self.stream_bytes.len()
    }

    /// Encrypts everything queued into Noise messages and writes them out.
    pub fn flush_blocking_encrypt(&mut self) -> Result<(), TransportError> {
        self.wire.clear();
        for piece in self.stream_bytes.chunks(MAX_NOISE_PLAINTEXT) {
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
        self.stream_bytes.clear();
        Ok(())
    }

    /// Encrypts and writes everything queued.
    pub async fn flush(&mut self) -> Result<(), TransportError> {
        self.flush_blocking_encrypt()?;
        self.writer.write_all(&self.wire).await?;
        self.writer.flush().await?;
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
        loop {
            if let Some(frame) = self.take_frame()? {
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

    fn take_frame(&mut self) -> Result<Option<Vec<u8>>, TransportError> {
        let unread = self.plain.get(self.start..).unwrap_or_default();
        let Some((prefix, rest)) = unread.split_first_chunk::<FRAME_LEN_PREFIX>() else {
            return Ok(None);
        };
        let len64 = u64::from(u32::from_le_bytes(*prefix));
        let len =
            usize::try_from(len64).map_err(|_| TransportError::FrameTooLarge { len: len64 })?;
        if len > MAX_FRAME_LEN {
            return Err(TransportError::FrameTooLarge { len: len64 });
        }
        let Some(frame) = rest.get(..len) else {
            return Ok(None);
        };
        let frame = frame.to_vec();
        self.start = self
            .start
            .saturating_add(FRAME_LEN_PREFIX)
            .saturating_add(len);
        if self.start == self.plain.len() {
            self.plain.clear();
            self.start = 0;
        }
        Ok(Some(frame))
    }

    /// Reads and decrypts one Noise message onto the plaintext buffer. `false` on clean EOF.
    async fn read_noise_message(&mut self) -> Result<bool, TransportError> {
        let mut len = [0u8; 2];
        match self.reader.read_exact(&mut len).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        let len = usize::from(u16::from_le_bytes(len));
        let msg = self
            .ciphertext
            .get_mut(..len)
            .ok_or(TransportError::Truncated)?;
        match self.reader.read_exact(msg).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(TransportError::Truncated);
            }
            Err(e) => return Err(e.into()),
        }
        if self.start > 0 {
            self.plain.drain(..self.start);
            self.start = 0;
        }
        let at = self.plain.len();
        self.plain.resize(at.saturating_add(len), 0);
        let out = self.plain.get_mut(at..).ok_or(TransportError::Truncated)?;
        let msg = self
            .ciphertext
            .get(..len)
            .ok_or(TransportError::Truncated)?;
        let n = match self.state.read_message(self.nonce, msg, out) {
            Ok(n) => n,
            Err(e) => {
                self.plain.truncate(at);
                return Err(e.into());
            }
        };
        self.plain.truncate(at.saturating_add(n));
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
        let sizes = [0usize, 1, MAX_NOISE_PLAINTEXT - 4, MAX_NOISE_PLAINTEXT, 200_000, 3, 1 << 20];
        let frames: Vec<Vec<u8>> =
            sizes.iter().enumerate().map(|(i, &n)| vec![i as u8; n]).collect();
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
