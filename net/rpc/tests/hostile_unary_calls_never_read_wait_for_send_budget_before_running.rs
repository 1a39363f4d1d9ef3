//! A peer opens many unary calls whose answers are large and reads none of them. A handler
//! that declares its largest answer (`max_answer_bytes`) runs only once the send budget holds
//! that answer, so the calls past the session's budget wait before their handlers run and
//! this side holds at most its send budget of answers, not one answer per call. (Without the
//! reservation every handler ran at once and each encoded answer waited in memory for a
//! budget that never came: 96 calls held 96 MiB on a 4 MiB session budget.) Meanwhile
//! another identity is served, an answer larger than its handler declared fails with
//! `ResourceExhausted`, and those failures give their reservations back.
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
use net_mesh_rpc::frame::{ErrorKind, Frame};
use net_mesh_rpc::rpc::{CallOptions, Config, Metrics};

const MIB: usize = 1 << 20;
const SESSION_SEND: usize = 4 * MIB;
const CALLS: u64 = 96;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_calls_never_read_wait_for_send_budget_before_running() {
    let config = Config {
        session_send_budget: SESSION_SEND,
        peer_send_budget: 8 * MIB,
        node_send_budget: 16 * MIB,
        // The stuck session outlives the test: only the budgets decide what runs.
        stall_timeout: Duration::from_secs(120),
        ..Config::default()
    };
    let h = harness_with(config).await;
    let (peer, attacked) =
        within(async { tokio::join!(RawPeer::connect(h.addr, 9), h.server.accept(&h.listener)) })
            .await;
    let (mut peer, _attacked) = (peer, attacked.unwrap());

    // 96 calls, each asking for an answer just under 1 MiB, never read.
    let answer = u32::try_from(BOUNDED_ANSWER - 64).unwrap();
    let request = postcard::to_stdvec(&answer).unwrap();
    for call_id in 1..=CALLS {
        peer.send(&Frame::Request {
            call_id,
            header: unary_header("bounded"),
            payload: &request,
        })
        .await;
    }
    let metrics = h.server.metrics();
    // The session's queue fills (after the socket's buffers), and then nothing more runs.
    eventually(|| Metrics::get(&metrics.send_bytes_queued) as usize >= SESSION_SEND - 2 * MIB)
        .await;
    let mut ran = 0;
    within(async {
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let now = h.probe.answered.load(Ordering::SeqCst);
            if now == ran {
                break;
            }
            ran = now;
        }
    })
    .await;
    let peak = Metrics::get(&metrics.send_bytes_peak) as usize;
    eprintln!("{ran} of {CALLS} handlers ran; send queue peak {peak} B");
    // What the session's budget holds (4) plus what the socket's buffers took while nothing
    // read them (a few MiB on loopback): far fewer than the calls opened.
    assert!(ran <= 16, "{ran} of {CALLS} handlers ran");
    assert!(peak <= SESSION_SEND, "send queue peak {peak}");

    // Another identity is served meanwhile.
    let small: Vec<u8> = within(
        h.session
            .call_unary("bounded", &1000u32, CallOptions::default()),
    )
    .await
    .unwrap();
    assert_eq!(small.len(), 1000);
    // An answer larger than declared fails, and gives its reservation back: eight of them
    // would otherwise hold twice the session's budget and the next call would never run.
    for _ in 0..8 {
        let over = within(h.session.call_unary::<u32, Vec<u8>>(
            "bounded",
            &u32::try_from(2 * MIB).unwrap(),
            CallOptions::default(),
        ))
        .await
        .unwrap_err();
        assert_eq!(over.kind, ErrorKind::ResourceExhausted, "{over}");
    }
    let full: Vec<u8> = within(
        h.session
            .call_unary("bounded", &answer, CallOptions::default()),
    )
    .await
    .unwrap();
    assert_eq!(full.len(), answer as usize);
    honest_round(&h.session).await;
    drop(peer);
}
