//! A `send` takes its message's bytes from the call's window before it takes send budget; when
//! the send then fails (here: the message is larger than the call's send budget, which fails
//! at once, never waits) or its future is dropped (a caller's own timeout: the same guard),
//! the bytes it took go back to the call, so the sender's next messages still fill the whole
//! window. (They were lost before: the peer never returns bytes that were never sent, so each
//! such send shrank the call's window for good, down to a stream that stalls.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

use common::*;
use net_mesh_rpc::rpc::{CallOptions, Config, ErrorKind};

const WINDOW: u32 = 64 * 1024;

fn config() -> Config {
    Config {
        call_window: WINDOW,
        min_call_window: WINDOW,
        // Below the failing message, which still fits the window.
        call_send_budget: 4 * 1024,
        ..Config::default()
    }
}

/// Opens a call to a handler that never consumes, optionally first sends a 40 KB message that
/// fails, then counts the 1 KB messages sent before the window stops the sender.
async fn sent_before_the_window_stops(h: &mut Harness, fail_a_big_send: bool) -> usize {
    let mut call = h
        .session
        .call_client_streaming::<Vec<u8>, Vec<u32>>("collect_gated", CallOptions::default())
        .unwrap();
    let _ctx = within(h.contexts.recv()).await.unwrap();
    if fail_a_big_send {
        // A hang guard, not a timing: the send must fail at once.
        let err = within(call.send(&vec![7u8; 40_000])).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::ResourceExhausted, "{err}");
        assert!(err.message.contains("send budget"), "{err}");
    }
    let mut sent = 0;
    // A send that does not complete in a second is stopped by the window (the handler never
    // consumes); a hang guard, not a timing.
    while let Ok(done) =
        tokio::time::timeout(Duration::from_secs(1), call.send(&vec![1u8; 1_000])).await
    {
        done.unwrap();
        sent += 1;
        assert!(sent < 10_000, "the window never stopped the sender");
    }
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_that_failed_after_taking_its_window_gives_it_back() {
    let mut h = harness_with(config()).await;
    let without = sent_before_the_window_stops(&mut h, false).await;
    let with = sent_before_the_window_stops(&mut h, true).await;
    eprintln!(
        "1 KB messages before the window stops them: {without} alone, {with} after the failed 40 KB send"
    );
    // Messages appended to a queued frame cost a little less, so counts differ by a few; the
    // 40 KB a lost send would keep are ~39 messages.
    assert!(
        with + 8 >= without,
        "after the failed send only {with} messages fit, against {without}"
    );
}
