//! A unary call whose answer is ready while the session's send budget is full (a peer that
//! stopped reading while a download filled it) waits for room only until the call's deadline:
//! then the call ends with `DeadlineExceeded` (a control frame, not budgeted) and no longer
//! counts as served, long before the stall timeout ends the session. (It waited with no
//! deadline: a served call, its encoded answer and its `max_concurrent_calls` slot held until
//! the session died.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

use common::*;
use net_mesh_rpc::frame::{CallHeader, CallKind, Frame, TraceContext};
use net_mesh_rpc::rpc::{Config, Metrics};

const MIB: usize = 1 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unary_answer_waiting_for_send_budget_ends_at_its_deadline() {
    let config = Config {
        session_send_budget: 4 * MIB,
        call_send_budget: 4 * MIB,
        // Far beyond the hang guard: only the deadline can end the waiting answer in time.
        stall_timeout: Duration::from_secs(300),
        ..Config::default()
    };
    let h = harness_with(config).await;
    let (peer, attacked) =
        within(async { tokio::join!(RawPeer::connect(h.addr, 9), h.server.accept(&h.listener)) })
            .await;
    let (mut peer, attacked) = (peer, attacked.unwrap());
    // A download of 1 MiB messages with a 4 GiB window, never read: it fills the budget.
    peer.send(&Frame::Request {
        call_id: 1,
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
    let metrics = h.server.metrics();
    eventually(|| Metrics::get(&metrics.send_bytes_queued) as usize >= 3 * MIB).await;

    // A 1 MiB echo with a 300 ms deadline: its answer cannot be queued.
    let big = postcard::to_stdvec(&"x".repeat(MIB)).unwrap();
    let mut header = unary_header("echo");
    header.timeout_us = 300_000;
    peer.send(&Frame::Request {
        call_id: 2,
        header,
        payload: &big,
    })
    .await;
    eventually(|| attacked.served_calls() == 2).await;
    eventually(|| attacked.served_calls() == 1).await;
    assert!(attacked.end_reason().is_none(), "the session lives on");
    drop(peer);
}
