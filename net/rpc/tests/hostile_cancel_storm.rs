//! A cancel storm: thousands of calls opened and cancelled at once, on a handler that ignores
//! its cancellation. Cancelled calls keep counting against `max_concurrent_calls` until their
//! handler has actually ended (here: dropped after the cancel grace), so the running handlers
//! never exceed the limit; all of them end, memory stays bounded, and an honest client is
//! served meanwhile.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use net_mesh_rpc::frame::{ErrorKind, Frame};
use net_mesh_rpc::rpc::{Config, Metrics};

const MAX_CALLS: usize = 32;
const STORM: u64 = 5000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_calls_hold_their_slot_until_the_handler_ends() {
    let config = Config {
        max_concurrent_calls: MAX_CALLS,
        cancel_grace: Duration::from_millis(200),
        ..Config::default()
    };
    let h = harness_with(config).await;
    let tasks_before = alive_tasks();
    let rss_before = current_rss();
    reset_peak_rss();
    let (peer, attacked) =
        within(async { tokio::join!(RawPeer::connect(h.addr, 9), h.server.accept(&h.listener)) })
            .await;
    let attacked = attacked.unwrap();
    let RawPeer { mut tx, mut rx } = peer;
    let exhausted = Arc::new(AtomicUsize::new(0));
    let reader = {
        let exhausted = exhausted.clone();
        tokio::spawn(async move {
            while let Ok(Some(bytes)) = rx.recv_frame().await {
                if let Ok(Frame::ResponseError {
                    kind: ErrorKind::ResourceExhausted,
                    ..
                }) = Frame::decode(&bytes)
                {
                    exhausted.fetch_add(1, Ordering::SeqCst);
                }
            }
        })
    };
    let mut most_running = 0;
    for call_id in 1..=STORM {
        let open = Frame::Request {
            call_id,
            header: unary_header("stubborn"),
            payload: &[],
        };
        let cancel = Frame::RequestCancel {
            call_id,
            reason: ErrorKind::Cancelled,
        };
        tx.queue_frame(&open.to_vec().unwrap()).unwrap();
        tx.queue_frame(&cancel.to_vec().unwrap()).unwrap();
        if call_id % 50 == 0 {
            tx.flush().await.unwrap();
            most_running = most_running.max(attacked.running_handlers());
            assert!(attacked.running_handlers() <= MAX_CALLS);
        }
        if call_id % 1000 == 0 {
            honest_round(&h.session).await;
        }
    }
    tx.flush().await.unwrap();
    eprintln!(
        "most handlers running at once: {most_running}; refused: {}",
        exhausted.load(Ordering::SeqCst)
    );
    assert!(most_running <= MAX_CALLS);
    // The storm filled the limit, and the calls beyond it were refused, not queued.
    eventually(|| exhausted.load(Ordering::SeqCst) > 0).await;
    assert_eq!(attacked.served_calls(), 0, "every call was cancelled");

    // Every handler ends after the grace; the attacker's session is still open and idle.
    eventually(|| attacked.running_handlers() == 0).await;
    eventually(|| Metrics::get(&h.server.metrics().active_handlers) == 0).await;
    assert!(attacked.end_reason().is_none());
    let growth = peak_rss().saturating_sub(rss_before);
    eprintln!("RSS growth during the storm: {growth} bytes");
    assert!(growth < 16 << 20, "RSS grew by {growth} bytes");
    honest_round(&h.session).await;

    attacked.close();
    drop(tx);
    within(reader).await.unwrap();
    eventually(|| alive_tasks() <= tasks_before).await;
}
