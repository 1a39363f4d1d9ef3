//! A client opens downloads with huge windows and floods requests, then never reads: the server
//! queues no more than its send and receive budgets, the stalled write ends that session within
//! the stall timeout, every task, socket and buffer of the session is released, and an honest
//! client on another session is served meanwhile.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use net_mesh_rpc::frame::{CallHeader, CallKind, Frame, TraceContext};
use net_mesh_rpc::rpc::{Config, Metrics, SessionError};

const MIB: usize = 1 << 20;
const SESSION_SEND: usize = 4 * MIB;
const SESSION_RECV: usize = 8 * MIB;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_memory_stays_bounded_and_the_stalled_session_is_freed() {
    let config = Config {
        session_send_budget: SESSION_SEND,
        call_send_budget: 2 * MIB,
        node_send_budget: 16 * MIB,
        session_recv_budget: SESSION_RECV,
        stall_timeout: Duration::from_millis(500),
        ..Config::default()
    };
    let h = harness_with(config).await;
    honest_round(&h.session).await;
    let fds_before = open_fds();
    let rss_before = current_rss();
    reset_peak_rss();

    let (peer, attacked) =
        within(async { tokio::join!(RawPeer::connect(h.addr, 9), h.server.accept(&h.listener)) })
            .await;
    let (mut peer, attacked) = (peer, attacked.unwrap());
    // Four downloads of 1 MiB messages, each announcing a 4 GiB receive window.
    for call_id in 1..=4u64 {
        let header = CallHeader {
            kind: CallKind::ServerStreaming,
            timeout_us: 0,
            trace: TraceContext::default(),
            response_window: u32::MAX,
            method: "firehose",
            metadata: &[],
        };
        peer.send(&Frame::Request {
            call_id,
            header,
            payload: &[],
        })
        .await;
    }
    // And a thousand 64 KiB echo requests (64 MiB) whose answers nobody reads.
    let big = postcard::to_stdvec(&"x".repeat(64 * 1024)).unwrap();
    for call_id in 100..1100u64 {
        peer.send(&Frame::Request {
            call_id,
            header: unary_header("echo"),
            payload: &big,
        })
        .await;
    }

    // The honest client is served while the attacker's session is stuck.
    honest_round(&h.session).await;

    let reason = within(attacked.closed()).await;
    assert!(
        matches!(*reason, SessionError::Stalled(_)),
        "expected a stalled write, got {reason}"
    );
    let metrics = h.server.metrics();
    // Everything of the attacked session is released, while the attacker still holds its
    // socket open: its server-side tasks, handlers, queued bytes and descriptor.
    eventually(|| Metrics::get(&metrics.session_tasks) == 3).await;
    eventually(|| Metrics::get(&metrics.active_handlers) == 0).await;
    eventually(|| Metrics::get(&metrics.send_bytes_queued) == 0).await;
    eventually(|| attacked.recv_bytes_held() == 0).await;
    eventually(|| open_fds() == fds_before + 1).await;

    let send_peak = Metrics::get(&metrics.send_bytes_peak) as usize;
    let recv_peak = Metrics::get(&metrics.recv_bytes_peak) as usize;
    let rss_growth = peak_rss().saturating_sub(rss_before);
    eprintln!(
        "send queue peak {send_peak} B (budget {SESSION_SEND}), receive peak {recv_peak} B \
         (budget {SESSION_RECV}), RSS growth {rss_growth} B"
    );
    assert!(send_peak <= SESSION_SEND + MIB, "send queue {send_peak}");
    assert!(recv_peak <= SESSION_RECV + MIB, "receive queue {recv_peak}");
    // Budgets, the handlers' own 1 MiB messages and encoded answers, buffers and slack; a
    // queue without a budget would have held the 64 MiB of requests and gigabytes of stream.
    assert!(rss_growth < 48 * MIB, "RSS grew by {rss_growth} bytes");
    assert!(Metrics::get(&metrics.budget_refusals) > 0);

    // The attacker finds its session gone when it finally reads.
    let mut frames = 0usize;
    while within(peer.rx.recv_frame()).await.ok().flatten().is_some() {
        frames += 1;
    }
    eprintln!("attacker read {frames} frames before the reset");
    drop(peer);
    eventually(|| open_fds() == fds_before).await;
    honest_round(&h.session).await;
    let _ = h.probe.produced.load(Ordering::SeqCst);
}
