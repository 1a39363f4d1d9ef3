//! A unary call whose answer is ready while the session's send budget is spent waits for room
//! only until the call's deadline: then the call ends with `DeadlineExceeded` (a control frame,
//! not budgeted) and no longer counts as served, long before the stall timeout ends the
//! session. (It waited with no deadline: a served call, its encoded answer and its
//! `max_concurrent_calls` slot held until the session died.) The budget is held by another
//! call's answer reservation, not by bytes a non-reading peer left queued: how much of a queue
//! the kernel's socket buffers still take is up to the kernel and the scheduler, and an answer
//! that found room would never wait.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

use common::*;
use net_mesh_rpc::frame::Frame;
use net_mesh_rpc::rpc::{Config, Metrics};

const MIB: usize = 1 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unary_answer_waiting_for_send_budget_ends_at_its_deadline() {
    let config = Config {
        session_send_budget: 4 * MIB,
        // Far beyond the hang guard: only the deadline can end the waiting answer in time.
        stall_timeout: Duration::from_secs(300),
        ..Config::default()
    };
    let h = harness_with(config).await;
    let (peer, attacked) =
        within(async { tokio::join!(RawPeer::connect(h.addr, 9), h.server.accept(&h.listener)) })
            .await;
    let (mut peer, attacked) = (peer, attacked.unwrap());
    // A call that takes 3 MiB of the 4 MiB budget for an answer it never gives.
    peer.send(&Frame::Request {
        call_id: 1,
        header: unary_header("hold_budget"),
        payload: &postcard::to_stdvec(&()).unwrap(),
    })
    .await;
    let metrics = h.server.metrics();
    eventually(|| Metrics::get(&metrics.send_bytes_peak) as usize >= HELD_ANSWER).await;

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
    // The echo ends at its deadline (counted when it does) and is no longer served.
    eventually(|| Metrics::get(&metrics.deadlines_exceeded) == 1).await;
    eventually(|| attacked.served_calls() == 1).await;
    assert!(attacked.end_reason().is_none(), "the session lives on");
    drop(peer);
}
