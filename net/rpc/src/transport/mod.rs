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
//!
//! * `send`: the sending half ([`FrameSender`]): frames sealed into Noise messages, in place
//!   when large, written in batches;
//! * `receive`: the receiving half ([`FrameReceiver`]): messages read and opened, frames
//!   admitted by their head and reassembled.

use aws_lc_rs::aead::{AES_256_GCM, LessSafeKey, Nonce, UnboundKey};

use crate::frame::MAX_FRAME_LEN;

mod receive;
mod send;

pub use receive::{Admit, FRAME_HEAD_LEN, FrameReceiver, Incoming};
pub use send::{FrameSender, IN_PLACE_MIN, SealedBatch, Spent, StreamBuf, StreamMark};

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

/// Splits an established Noise transport over a stream's two halves.
pub fn split<R, W>(keys: SessionKeys, reader: R, writer: W) -> (FrameSender<W>, FrameReceiver<R>) {
    (
        FrameSender::new(writer, keys.send),
        FrameReceiver::new(reader, keys.recv),
    )
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
