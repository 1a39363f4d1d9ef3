//! One identity opens downloads on six sessions and never reads them, so every answer it is
//! sent waits in the server's send queues. Each session may queue its own budget, but all of
//! that identity's sessions together hold at most `peer_send_budget` of the endpoint's: the
//! endpoint's budget is never all theirs, and another identity's download is served while
//! they stay stuck. (Without the per-peer budget the four sessions queue the whole endpoint
//! budget, and the other download waits until the stuck sessions time out.) Each session
//! queues three 1 MiB messages (its 4 MiB budget): six sessions could hold 18 MiB, more than
//! the endpoint's 16.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

use futures_util::StreamExt;

use common::*;
use net_mesh_rpc::frame::{CallHeader, CallKind, Frame, TraceContext};
use net_mesh_rpc::rpc::{CallOptions, Config, Metrics, RawBytes};

const MIB: usize = 1 << 20;
const SESSION_SEND: usize = 4 * MIB;
const PEER_SEND: usize = 8 * MIB;
const NODE_SEND: usize = 16 * MIB;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_on_many_sessions_leaves_the_others_their_share() {
    let config = Config {
        call_send_budget: 2 * MIB,
        session_send_budget: SESSION_SEND,
        peer_send_budget: PEER_SEND,
        node_send_budget: NODE_SEND,
        // The stuck sessions outlive the test: only the budgets decide who is served.
        stall_timeout: Duration::from_secs(120),
        ..Config::default()
    };
    let h = harness_with(config).await;
    honest_round(&h.session).await;

    // Six sessions of one identity, each with eight downloads of 1 MiB messages it never
    // reads (a call queues at most its own budget, 2 MiB: eight fill the session's).
    let mut attackers = Vec::new();
    for _ in 0..6 {
        let (peer, served) = within(async {
            tokio::join!(RawPeer::connect(h.addr, 9), h.server.accept(&h.listener))
        })
        .await;
        let mut peer = peer;
        for call_id in 1..=8 {
            peer.send(&Frame::Request {
                call_id,
                header: CallHeader {
                    kind: CallKind::ServerStreaming,
                    timeout_us: 0,
                    trace: TraceContext::default(),
                    response_window: u32::MAX,
                    method: "firehose",
                    metadata: &[],
                },
                payload: &[],
            })
            .await;
        }
        attackers.push((peer, served.unwrap()));
    }
    let metrics = h.server.metrics();
    // Their queues fill up to their identity's share (the sockets' buffers fill first), and
    // stop there.
    eventually(|| Metrics::get(&metrics.send_bytes_queued) as usize >= PEER_SEND - MIB).await;
    let mut last = 0;
    within(async {
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let queued = Metrics::get(&metrics.send_bytes_queued);
            if queued == last {
                break;
            }
            last = queued;
        }
    })
    .await;

    // Another identity downloads 16 MiB meanwhile.
    let mut download = within(h.session.call_server_streaming::<(), RawBytes>(
        "firehose",
        &(),
        CallOptions::default(),
    ))
    .await
    .unwrap();
    for _ in 0..16 {
        let piece = within(download.next()).await.unwrap().unwrap();
        assert_eq!(piece.as_slice().len(), MIB);
    }
    drop(download);
    honest_round(&h.session).await;

    let peak = Metrics::get(&metrics.send_bytes_peak) as usize;
    eprintln!("send queue peak {peak} B (peer budget {PEER_SEND}, endpoint {NODE_SEND})");
    // The stuck identity's share, plus what the other session queued (its own budget).
    assert!(
        peak <= PEER_SEND + SESSION_SEND + MIB,
        "send queue peak {peak}"
    );
    drop(attackers);
}
