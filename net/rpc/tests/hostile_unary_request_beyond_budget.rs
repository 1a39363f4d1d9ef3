//! Unary requests larger than what is left of the receive budget are refused with
//! `ResourceExhausted` and read past without being buffered; a peer that then stops halfway
//! through such a frame is disconnected at the stall timeout. Memory never exceeds the budget,
//! and an honest client is served meanwhile.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

use common::*;
use net_mesh_rpc::frame::{ErrorKind, Frame};
use net_mesh_rpc::rpc::{Config, Metrics, SessionError};

const BUDGET: usize = 1 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_unary_requests_are_refused_unread_and_a_stalled_frame_times_out() {
    let config = Config {
        session_recv_budget: BUDGET,
        min_call_window: 64 * 1024,
        stall_timeout: Duration::from_millis(300),
        ..Config::default()
    };
    let h = harness_with(config).await;
    let rss_before = current_rss();
    reset_peak_rss();
    let (peer, attacked) =
        within(async { tokio::join!(RawPeer::connect(h.addr, 9), h.server.accept(&h.listener)) })
            .await;
    let (mut peer, attacked) = (peer, attacked.unwrap());

    // Eight whole 4 MiB echo requests: each is refused and read past.
    let big = postcard::to_stdvec(&"y".repeat(4 << 20)).unwrap();
    for call_id in 1..=8u64 {
        peer.send(&Frame::Request {
            call_id,
            header: unary_header("echo"),
            payload: &big,
        })
        .await;
    }
    let mut refused = 0;
    while refused < 8 {
        let bytes = peer.recv().await.unwrap();
        if let Frame::ResponseError { kind, .. } = Frame::decode(&bytes).unwrap() {
            assert_eq!(kind, ErrorKind::ResourceExhausted);
            refused += 1;
        }
    }
    honest_round(&h.session).await;
    assert!(attacked.end_reason().is_none(), "refusals keep the session");

    // A ninth one stops after its first 100 KiB.
    let frame = Frame::Request {
        call_id: 9,
        header: unary_header("echo"),
        payload: &big,
    }
    .to_vec()
    .unwrap();
    let mut partial = (frame.len() as u32).to_le_bytes().to_vec();
    partial.extend_from_slice(&frame[..100 * 1024]);
    peer.tx.queue_raw_stream_bytes(&partial).unwrap();
    peer.tx.flush().await.unwrap();
    let reason = within(attacked.closed()).await;
    assert!(matches!(*reason, SessionError::Stalled(_)), "{reason}");

    let metrics = h.server.metrics();
    assert!(Metrics::get(&metrics.budget_refusals) >= 9);
    assert!(Metrics::get(&metrics.stalled_closes) >= 1);
    let peak = Metrics::get(&metrics.recv_bytes_peak) as usize;
    assert!(peak <= BUDGET, "receive peak {peak}");
    let growth = peak_rss().saturating_sub(rss_before);
    eprintln!("receive peak {peak} B, RSS growth {growth} B for 36 MiB of refused requests");
    // The attacker's own 4 MiB request buffers and frames are in this process too.
    assert!(growth < 24 << 20, "RSS grew by {growth} bytes");
    eventually(|| Metrics::get(&metrics.session_tasks) == 3).await;
    honest_round(&h.session).await;
}
