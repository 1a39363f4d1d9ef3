//! A sender that goes past the window the server granted: chunks within the window are taken,
//! and the first chunk whose charge does not fit ends the session from its head alone, before
//! any of its bytes are buffered; the server never holds more than the window for the call, and
//! an honest client is served throughout.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use net_mesh_rpc::frame::{CallHeader, CallKind, FRAME_CHARGE_OVERHEAD, Frame, TraceContext};
use net_mesh_rpc::rpc::{Config, Metrics, SessionError};

const WINDOW: u32 = 64 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_past_the_window_ends_the_session_before_it_is_buffered() {
    let config = Config {
        call_window: WINDOW,
        min_call_window: WINDOW,
        ..Config::default()
    };
    let mut h = harness_with(config).await;
    let (peer, attacked) =
        within(async { tokio::join!(RawPeer::connect(h.addr, 9), h.server.accept(&h.listener)) })
            .await;
    let (mut peer, attacked) = (peer, attacked.unwrap());
    let header = CallHeader {
        kind: CallKind::ClientStreaming,
        timeout_us: 0,
        trace: TraceContext::default(),
        response_window: 0,
        method: "collect_gated",
        metadata: &[],
    };
    peer.send(&Frame::RequestInit { call_id: 5, header }).await;
    let grant = peer.recv().await.unwrap();
    let Frame::RequestWindowGrant {
        call_id: 5,
        credits,
    } = Frame::decode(&grant).unwrap()
    else {
        panic!("expected the request window first");
    };
    assert_eq!(credits, WINDOW);
    let _ctx = within(h.contexts.recv()).await.unwrap();

    // Chunks that fit the window exactly (the handler is gated: nothing is consumed).
    let per_chunk = 4096usize;
    let payload =
        vec![0u8; per_chunk - net_mesh_rpc::frame::CHUNK_PAYLOAD_OFFSET - FRAME_CHARGE_OVERHEAD];
    let fitting = WINDOW as usize / per_chunk;
    for seq in 0..fitting as u64 {
        peer.send(&Frame::RequestChunk {
            call_id: 5,
            seq,
            messages: net_mesh_rpc::frame::Messages::parse(&one_message(&payload)).unwrap(),
        })
        .await;
    }
    honest_round(&h.session).await;
    assert!(attacked.end_reason().is_none(), "chunks within the window");
    assert_eq!(attacked.recv_bytes_held(), WINDOW as usize);

    // One more chunk announcing 16 MiB: only its length prefix and header are sent.
    let mut head = Vec::new();
    head.extend_from_slice(&(16u32 << 20).to_le_bytes());
    head.extend_from_slice(&[net_mesh_rpc::frame::FRAME_VERSION, 0x11]);
    head.extend_from_slice(&5u64.to_le_bytes());
    peer.tx.queue_raw_stream_bytes(&head).unwrap();
    peer.tx.flush().await.unwrap();

    let reason = within(attacked.closed()).await;
    assert!(
        matches!(*reason, SessionError::CreditExceeded { call_id: 5 }),
        "{reason}"
    );
    let metrics = h.server.metrics();
    assert_eq!(Metrics::get(&metrics.credit_violations), 1);
    // The server never held more than the window for the call (plus what the honest client's
    // calls reserved), and nothing of the 16 MiB frame.
    let peak = Metrics::get(&metrics.recv_bytes_peak) as usize;
    assert!(peak < WINDOW as usize + (1 << 20), "receive peak {peak}");
    eventually(|| attacked.recv_bytes_held() == 0).await;
    eventually(|| Metrics::get(&metrics.session_tasks) == 3).await;
    honest_round(&h.session).await;
}
