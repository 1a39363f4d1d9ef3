//! A client that stops reading, then makes many handlers fail at once: each failure is a
//! RESPONSE_ERROR control frame queued as the handler finishes, until one crosses the
//! session's control-queue cap. That session is closed (`SendQueueOverflow`) and the server
//! goes on serving others. (The push that crosses the cap happens while the finishing handler
//! holds the session's table of served calls; closing the session from there took that lock
//! again on the same thread, which never returns: the handler's worker thread hung, and so
//! did every handler of the session after it, until no worker of the runtime was left.)
//!
//! The server runs on a runtime of its own, so a hung server shows as an honest call that
//! times out here rather than as a test that never ends.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

use common::*;
use net_mesh_rpc::Endpoint;
use net_mesh_rpc::Identity;
use net_mesh_rpc::frame::Frame;
use net_mesh_rpc::rpc::{Config, Metrics, Router};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[test]
fn a_control_queue_overflow_from_finishing_handlers_closes_only_that_session() {
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let test_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let config = Config {
        // Long enough that the stalled write does not end the session first.
        stall_timeout: Duration::from_secs(60),
        ..Config::default()
    };
    let (probe, _contexts) = probe();
    let server = Endpoint::new(Identity::from_seed([1; 32]), router(&probe), config.clone());
    let listener = server_rt
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    server_rt.spawn({
        let (server, stop) = (server.clone(), stop.clone());
        async move { server.serve(listener, stop).await }
    });

    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        test_rt.block_on(async {
            let client = Endpoint::new(Identity::from_seed([2; 32]), Router::new(), config);
            let honest = within(client.connect(addr)).await.unwrap();
            honest_round(&honest).await;

            let mut peer = RawPeer::connect(addr, 9).await;
            // Answers nobody reads fill the socket's buffers and block the server's writer.
            let big = postcard::to_stdvec(&"x".repeat(64 * 1024)).unwrap();
            for call_id in 1..=400u64 {
                peer.send(&Frame::Request {
                    call_id,
                    header: unary_header("echo"),
                    payload: &big,
                })
                .await;
            }
            // Then failures: one control frame each, queued by the finishing handler; in groups
            // well under the session's concurrent-call cap (a call over it is refused by the
            // reader, whose own control frame could cross the cap first), until the server
            // closes the session.
            let unit = postcard::to_stdvec(&()).unwrap();
            let mut call_id = 1_000u64;
            'send: for _ in 0..200 {
                for _ in 0..200 {
                    call_id += 1;
                    let request = Frame::Request {
                        call_id,
                        header: unary_header("fail"),
                        payload: &unit,
                    }
                    .to_vec()
                    .unwrap();
                    if peer.tx.send_frame(&request).await.is_err() {
                        break 'send;
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let metrics = server.metrics();
            eventually(|| Metrics::get(&metrics.send_queue_overflows) >= 1).await;
            // The server still serves: the honest session, and a new one.
            honest_round(&honest).await;
            let again = within(client.connect(addr)).await.unwrap();
            honest_round(&again).await;
            // The attacked session's handlers all finished.
            eventually(|| Metrics::get(&metrics.active_handlers) == 0).await;
            drop(peer);
        })
    }));
    stop.cancel();
    // Not a drop: dropping a runtime waits for its workers, which a hung server never gives.
    server_rt.shutdown_background();
    test_rt.shutdown_background();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
