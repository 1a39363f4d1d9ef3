//! One identity opens streamed calls on four sessions and sends nothing on them, so each holds
//! the request window it was granted. Each session may reserve its own receive budget, but
//! all of that identity's sessions together hold at most `peer_recv_budget` of the endpoint's:
//! another identity's streamed call still gets a full window. (Without the per-peer budget the
//! idle windows take the whole endpoint budget and the other call gets none.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

use common::*;
use net_mesh_rpc::rpc::{CallOptions, Config, Metrics, Router};
use net_mesh_rpc::{Endpoint, Identity};

const MIB: usize = 1 << 20;
const WINDOW: u32 = 4 * MIB as u32;
const PEER_RECV: usize = 16 * MIB;
const NODE_RECV: usize = 32 * MIB;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_windows_on_many_sessions_leave_the_others_their_share() {
    let config = Config {
        call_window: WINDOW,
        min_call_window: MIB as u32,
        session_recv_budget: 16 * MIB,
        peer_recv_budget: PEER_RECV,
        node_recv_budget: NODE_RECV,
        ..Config::default()
    };
    let mut h = harness_with(config).await;
    let metrics = h.server.metrics();
    let before = Metrics::get(&metrics.recv_bytes_held) as usize;

    // Four sessions of one identity, four idle streamed calls on each: 64 MiB of windows
    // asked for.
    // (Its own endpoint keeps the default budgets for the response windows it grants.)
    let greedy = Endpoint::new(
        Identity::from_seed([9; 32]),
        Router::new(),
        Config::default(),
    );
    let (mut idle, mut sessions) = (Vec::new(), Vec::new());
    for _ in 0..4 {
        let (session, served) =
            within(async { tokio::join!(greedy.connect(h.addr), h.server.accept(&h.listener)) })
                .await;
        let session = session.unwrap();
        for _ in 0..4 {
            idle.push(
                session
                    .call_duplex::<Vec<u8>, Vec<u8>>("echo_stream_gated", CallOptions::default())
                    .unwrap(),
            );
        }
        sessions.push((session, served.unwrap()));
    }
    // Their windows are granted (or refused) and stay.
    let mut last = usize::MAX;
    within(async {
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let held = Metrics::get(&metrics.recv_bytes_held) as usize;
            if held == last {
                break;
            }
            last = held;
        }
    })
    .await;
    eprintln!("the idle identity holds {} B", last - before);
    assert!(last - before <= PEER_RECV, "{last} held");

    // Another identity's streamed call gets a full window.
    let mut call = h
        .session
        .call_duplex::<Vec<u8>, Vec<u8>>("echo_stream_gated", CallOptions::default())
        .unwrap();
    eventually(|| call.grant_request_window().window == WINDOW).await;
    within(call.send(&vec![1u8; 1000])).await.unwrap();
    while h.contexts.try_recv().is_ok() {}
    drop((idle, sessions));
}
