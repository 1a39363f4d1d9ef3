//! Entry points for the fuzz targets in `net/rpc/fuzz/` (thin harnesses call these). Each takes
//! arbitrary bytes and must never panic except on a broken invariant (which is the finding).
#![allow(
    clippy::panic,
    reason = "a fuzz harness reports a broken invariant by panicking"
)]

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::FutureExt;
use tokio::io::{AsyncRead, ReadBuf};

use crate::frame::{Frame, MAX_FRAME_LEN};
use crate::handshake::HandshakePayload;
use crate::transport::{self, Admit, Incoming, SessionKeys, TransportError};

/// Decodes `data` as an nRPC frame; a successful decode must re-encode to the same bytes.
pub fn frame_decoder(data: &[u8]) {
    if let Ok(frame) = Frame::decode(data) {
        let reencoded = frame.to_vec();
        assert_eq!(reencoded.as_deref(), Ok(data), "frame did not round-trip");
    }
}

/// Decodes `data` as a handshake payload; a successful decode must re-encode to the same bytes
/// and signature verification must not panic.
pub fn handshake_payload_decoder(data: &[u8]) {
    if let Ok(payload) = HandshakePayload::decode(data) {
        assert_eq!(
            payload.encode().as_slice(),
            data,
            "payload did not round-trip"
        );
        let _ = payload.verify(crate::handshake::ROLE_INITIATOR, &[0u8; 32], &[0u8; 32]);
    }
}

/// Decodes `data` as a permission token, a token chain and a token text. Whatever decodes must
/// re-encode to the same bytes (and text), and checking signatures or verifying the chain
/// against a context that trusts the root must not panic; a chain that verifies must have
/// been signed, so with arbitrary bytes it never does.
pub fn token_decoder(data: &[u8]) {
    use std::collections::{HashMap, HashSet};

    use crate::token::{self, PermissionToken, Scope, VerifyContext};

    if let Ok(token) = PermissionToken::decode(data) {
        assert_eq!(token.encode().as_slice(), data, "token did not round-trip");
        let text = token.to_text();
        assert_eq!(text.len(), token::TOKEN_TEXT_LEN, "token text length");
        assert_eq!(
            text.parse::<PermissionToken>().as_ref(),
            Ok(&token),
            "token text did not round-trip"
        );
        let _ = token.verify_signature();
    }
    if let Ok(chain) = token::decode_chain(data) {
        assert_eq!(
            token::encode_chain(&chain),
            data,
            "chain did not round-trip"
        );
        let text = token::chain_to_text(&chain);
        assert_eq!(
            token::chain_from_text(&text).as_ref(),
            Ok(&chain),
            "chain text did not round-trip"
        );
        if let (Some(root), Some(last)) = (chain.first(), chain.last()) {
            let trusted = HashSet::from([root.issuer_node_id()]);
            let floors = HashMap::new();
            let ctx = VerifyContext::new(
                &trusted,
                &floors,
                last.claims().subject,
                "default",
                Scope::NONE,
                last.claims().not_before,
            );
            let verified = token::verify(&chain, &ctx);
            assert!(
                verified.is_err() || chain.iter().all(|t| t.verify_signature().is_ok()),
                "a chain verified with a bad signature"
            );
        }
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(chain) = token::chain_from_text(text)
    {
        assert_eq!(token::chain_to_text(&chain), text, "text is not canonical");
    }
}

/// A reader that hands out its bytes in pieces of the given sizes (cycled), never pending.
struct Pieces<'a> {
    data: &'a [u8],
    sizes: &'a [u8],
    next: usize,
}

impl AsyncRead for Pieces<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let size = self
            .sizes
            .get(self.next % self.sizes.len().max(1))
            .map_or(4096, |&s| usize::from(s).saturating_mul(97).max(1));
        self.next = self.next.wrapping_add(1);
        let n = size.min(buf.remaining()).min(self.data.len());
        let (now, rest) = self.data.split_at(n);
        buf.put_slice(now);
        self.data = rest;
        Poll::Ready(Ok(()))
    }
}

/// What the frame stream `stream` must yield, frame by frame: `Ok(frames)` when it ends on a
/// frame boundary, else the frames before the failure and the failure.
fn model_frames(mut stream: &[u8]) -> (Vec<Vec<u8>>, Option<&'static str>) {
    let mut frames = Vec::new();
    loop {
        if stream.is_empty() {
            return (frames, None);
        }
        let Some((prefix, rest)) = stream.split_first_chunk::<4>() else {
            return (frames, Some("truncated"));
        };
        let len = u32::from_le_bytes(*prefix) as usize;
        if len > MAX_FRAME_LEN {
            return (frames, Some("too large"));
        }
        let Some((frame, rest)) = rest.split_at_checked(len) else {
            return (frames, Some("truncated"));
        };
        frames.push(frame.to_vec());
        stream = rest;
    }
}

/// Frame reassembly: `data` is `[n_cuts][cuts..][n_reads][reads..][frame stream..]`. The frame
/// stream (arbitrary, lengths included) is sealed into Noise messages cut at the given sizes
/// (copied by the sender, or laid out in `StreamBuf`s and sealed in place when `n_cuts` is
/// odd),
/// read back in pieces of the given sizes, and reassembled with an admission that stores or
/// discards frames by their head; the frames (or discards) must be exactly what a plain parse
/// of the stream gives, with the same failure at the same point.
pub fn frame_reassembly(data: &[u8]) {
    fn take(data: &[u8]) -> Option<(&[u8], &[u8])> {
        let (&n, rest) = data.split_first()?;
        rest.split_at_checked(usize::from(n % 16))
    }
    let Some((cuts, rest)) = take(data) else {
        return;
    };
    let Some((reads, stream)) = take(rest) else {
        return;
    };
    let (k1, k2) = ([7u8; 32], [9u8; 32]);
    let (Ok(send_keys), Ok(recv_keys)) = (
        SessionKeys::from_split(true, &k1, &k2),
        SessionKeys::from_split(false, &k1, &k2),
    ) else {
        return;
    };
    let (mut tx, _) = transport::split(send_keys, tokio::io::empty(), Vec::new());
    let in_place = data.first().is_some_and(|n| n % 2 == 1);
    let mut rest = stream;
    let mut cut = cuts.iter().cycle();
    while !rest.is_empty() {
        let size = cut
            .next()
            .map_or(rest.len(), |&c| usize::from(c).saturating_mul(131).max(1));
        let (piece, tail) = rest.split_at(size.min(rest.len()));
        let queued = if in_place {
            let mut buf = transport::StreamBuf::default();
            buf.append(piece);
            tx.queue_stream_buf(buf)
        } else {
            tx.queue_raw_stream_bytes(piece)
                .and_then(|()| tx.flush_blocking_encrypt())
        };
        if queued.is_err() {
            return;
        }
        rest = tail;
    }
    if tx.flush().now_or_never().is_none_or(|r| r.is_err()) {
        return;
    }
    let (_, writer) = tx.into_parts();
    let reader = Pieces {
        data: &writer,
        sizes: reads,
        next: 0,
    };
    let (_, mut rx) = transport::split(recv_keys, reader, ());
    let (expected, failure) = model_frames(stream);
    for frame in &expected {
        // Store frames whose first byte is even, read past the others.
        let keep = frame.first().is_none_or(|b| b % 2 == 0);
        let next = rx
            .recv_frame_admitted(|len, head| {
                assert_eq!(len, frame.len(), "announced length");
                assert_eq!(head, frame.get(..head.len()).unwrap_or_default(), "head");
                Ok::<_, TransportError>(if keep {
                    Admit::Store(Vec::new())
                } else {
                    Admit::Discard
                })
            })
            .now_or_never();
        match next {
            Some(Ok(Some(Incoming::Frame(got)))) => {
                assert!(keep, "a discarded frame was stored");
                assert_eq!(&got, frame, "frame bytes");
            }
            Some(Ok(Some(Incoming::Discarded { len }))) => {
                assert!(!keep, "a stored frame was discarded");
                assert_eq!(len, frame.len());
            }
            other => panic!("expected a frame, got {other:?}"),
        }
    }
    let end = rx
        .recv_frame_admitted(|_, _| Ok::<_, TransportError>(Admit::Store(Vec::new())))
        .now_or_never();
    match (failure, end) {
        (None, Some(Ok(None))) => {}
        (Some("truncated"), Some(Err(TransportError::Truncated))) => {}
        (Some("too large"), Some(Err(TransportError::FrameTooLarge { .. }))) => {}
        (failure, end) => panic!("stream end: expected {failure:?}, got {end:?}"),
    }
}

/// The call dispatcher: `data` is a sequence of `[len u16 LE][frame bytes]` records fed, as
/// decrypted frames, through the admission and dispatch of a session (no socket) whose router
/// has a handler of every kind; between frames the handlers run. Invariants: nothing panics;
/// the receive budget and the handler limit are never exceeded; once the session is closed
/// every handler ends and every reserved or queued byte is returned.
pub fn dispatcher(data: &[u8]) {
    crate::rpc::dispatch::fuzz_session(data);
}

/// The router of the dispatcher harness: one handler of every kind (methods `u`, `s`, `c`,
/// `d`), a unary one declaring its largest answer (`b`) and one that never returns (`p`).
pub(crate) fn harness_router() -> crate::rpc::Router {
    use crate::RpcError;
    use crate::rpc::{
        RequestStreamTyped, ResponseSink, RpcClientStreamingHandler, RpcContext, RpcDuplexHandler,
        RpcServerStreamingHandler, RpcUnaryHandler,
    };
    use futures_util::StreamExt;

    struct Unary;
    impl RpcUnaryHandler for Unary {
        type Req = Vec<u8>;
        type Resp = Vec<u8>;
        async fn call(&self, _ctx: RpcContext, req: Vec<u8>) -> Result<Vec<u8>, RpcError> {
            Ok(req)
        }
    }
    /// An echo declaring answers of at most 256 bytes: its send budget is taken before it
    /// runs, and a longer answer fails.
    struct Bounded;
    impl RpcUnaryHandler for Bounded {
        type Req = Vec<u8>;
        type Resp = Vec<u8>;
        async fn call(&self, _ctx: RpcContext, req: Vec<u8>) -> Result<Vec<u8>, RpcError> {
            Ok(req)
        }
        fn max_answer_bytes(&self) -> usize {
            256
        }
    }
    struct Pending;
    impl RpcUnaryHandler for Pending {
        type Req = ();
        type Resp = ();
        async fn call(&self, _ctx: RpcContext, _req: ()) -> Result<(), RpcError> {
            std::future::pending().await
        }
    }
    struct Stream;
    impl RpcServerStreamingHandler for Stream {
        type Req = u8;
        type Resp = Vec<u8>;
        async fn call(
            &self,
            _ctx: RpcContext,
            n: u8,
            mut out: ResponseSink<Vec<u8>>,
        ) -> Result<(), RpcError> {
            for i in 0..n {
                out.send(&vec![i; usize::from(i) * 64]).await?;
            }
            Ok(())
        }
    }
    struct Client;
    impl RpcClientStreamingHandler for Client {
        type Req = Vec<u8>;
        type Resp = u64;
        async fn call(
            &self,
            _ctx: RpcContext,
            mut requests: RequestStreamTyped<Vec<u8>>,
        ) -> Result<u64, RpcError> {
            let mut total = 0u64;
            while let Some(item) = requests.next().await {
                total = total.saturating_add(item?.len() as u64);
            }
            Ok(total)
        }
    }
    struct Duplex;
    impl RpcDuplexHandler for Duplex {
        type Req = Vec<u8>;
        type Resp = Vec<u8>;
        async fn call(
            &self,
            _ctx: RpcContext,
            mut requests: RequestStreamTyped<Vec<u8>>,
            mut out: ResponseSink<Vec<u8>>,
        ) -> Result<(), RpcError> {
            while let Some(item) = requests.next().await {
                out.send(&item?).await?;
            }
            Ok(())
        }
    }
    crate::rpc::Router::new()
        .unary("u", Unary)
        .unary("p", Pending)
        .unary("b", Bounded)
        .server_streaming("s", Stream)
        .client_streaming("c", Client)
        .duplex("d", Duplex)
}

/// Runs a future that must complete within a bounded number of polls on a current-thread
/// runtime shared by the harness.
pub(crate) fn block_on<F: Future>(fut: F) -> Option<F::Output> {
    thread_local! {
        static RUNTIME: Option<tokio::runtime::Runtime> = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .ok();
    }
    RUNTIME.with(|rt| rt.as_ref().map(|rt| rt.block_on(fut)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::frame::{CallHeader, CallKind, ErrorKind, TraceContext};

    /// Records of well-formed frames from `(op, call, method, seq, payload)` tuples: calls of
    /// every kind, chunks (in and out of order), ends, cancels, grants.
    fn valid_frames(ops: &[(u8, u64, u8, u64, Vec<u8>)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (op, call_id, method, seq, payload) in ops {
            let (kind, name) = match method {
                0 => (CallKind::Unary, "u"),
                1 => (CallKind::ServerStreaming, "s"),
                2 => (CallKind::ClientStreaming, "c"),
                3 => (CallKind::Duplex, "d"),
                4 => (CallKind::Unary, "b"),
                _ => (CallKind::Unary, "p"),
            };
            let header = CallHeader {
                kind,
                timeout_us: 0,
                trace: TraceContext::default(),
                response_window: 4096,
                method: name,
                metadata: &[],
            };
            let body = postcard::to_stdvec(payload).unwrap();
            // Chunk frames carry one message, or two (the same one twice) for op 3.
            let mut list = Vec::new();
            let copies: &[&[u8]] = if *op == 3 { &[&body, &body] } else { &[&body] };
            crate::frame::encode_messages(copies, &mut list);
            let messages = crate::frame::Messages::parse(&list).unwrap();
            let frame = match op {
                0 | 1 if !kind.streams_requests() => Frame::Request {
                    call_id: *call_id,
                    header,
                    payload: &body,
                },
                0 | 1 => Frame::RequestInit {
                    call_id: *call_id,
                    header,
                },
                2..=4 => Frame::RequestChunk {
                    call_id: *call_id,
                    seq: *seq,
                    messages,
                },
                5 => Frame::RequestEnd { call_id: *call_id },
                6 => Frame::RequestCancel {
                    call_id: *call_id,
                    reason: ErrorKind::Cancelled,
                },
                7 => Frame::ResponseWindowGrant {
                    call_id: *call_id,
                    credits: 1 + *seq as u32 * 100,
                },
                8 => Frame::RequestWindowGrant {
                    call_id: *call_id,
                    credits: 1 + *seq as u32,
                },
                9 => Frame::Response {
                    call_id: *call_id,
                    payload: &body,
                },
                10 => Frame::ResponseEnd { call_id: *call_id },
                _ => Frame::ResponseChunk {
                    call_id: *call_id,
                    seq: *seq,
                    messages,
                },
            };
            let bytes = frame.to_vec().unwrap();
            out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
            out.extend_from_slice(&bytes);
        }
        out
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, .. Default::default() })]
        #[test]
        fn reassembly_harness_holds_on_random_streams(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048)) {
            frame_reassembly(&data);
        }

        #[test]
        fn reassembly_harness_holds_on_well_formed_streams(frames in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300), 0..8), cuts in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..8)) {
            let mut data = vec![cuts.len() as u8];
            data.extend_from_slice(&cuts);
            data.push(3);
            data.extend_from_slice(&[1, 7, 200]);
            for frame in &frames {
                data.extend_from_slice(&(frame.len() as u32).to_le_bytes());
                data.extend_from_slice(frame);
            }
            frame_reassembly(&data);
        }

        #[test]
        fn dispatcher_harness_holds_on_valid_frame_sequences(ops in proptest::collection::vec((0u8..12, 0u64..4, 0u8..5, 0u64..4, proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40)), 0..60)) {
            dispatcher(&valid_frames(&ops));
        }

        #[test]
        fn dispatcher_harness_holds_on_random_frames(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048)) {
            dispatcher(&data);
        }
    }
}
