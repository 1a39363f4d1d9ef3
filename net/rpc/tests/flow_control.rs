//! A slow consumer bounds a fast producer's in-flight bytes, in both directions, for every call
//! kind. Assertions are on window accounting and queue lengths, never on timing: after the
//! producer has used its window we give it ample opportunity to overrun, then check it did not.
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
use futures_util::StreamExt;
use net_mesh_rpc::rpc::{CallOptions, Config, Metrics};

/// Messages per window: the windows below hold exactly this many small `u32` messages when
/// each travels in a chunk frame of its own.
const WINDOW: u32 = 8;
/// Charge of one small `u32` message (< 128, a 1-byte varint) in a frame of its own: 10-byte
/// header + 8-byte seq + 4-byte message length + 1 payload byte, plus the per-frame overhead.
const SMALL_CHARGE: u32 = (10 + 8 + 4 + 1 + net_mesh_rpc::frame::FRAME_CHARGE_OVERHEAD) as u32;
const WINDOW_BYTES: u32 = WINDOW * SMALL_CHARGE;

/// Waits until a producer that counts its sent messages in `sent` has stopped, and checks
/// that it stopped where a window of `window` bytes stops it: at least `window / SMALL_CHARGE`
/// messages (each in a frame of its own), at most what fits when every message after the
/// first was appended to a queued frame (5 bytes each).
async fn stalled_at_the_window(sent: impl Fn() -> usize, window: u32) -> usize {
    let fewest = (window / SMALL_CHARGE) as usize;
    eventually(|| sent() >= fewest).await;
    give_producer_a_chance().await;
    let stalled = sent();
    give_producer_a_chance().await;
    assert_eq!(sent(), stalled, "the producer is still sending");
    let most = 1 + (window - SMALL_CHARGE) as usize / (4 + 1);
    eprintln!("stalled at {stalled} messages ({fewest}..={most})");
    assert!(
        (fewest..=most).contains(&stalled),
        "{stalled} messages in flight, outside {fewest}..={most}"
    );
    stalled
}

fn config() -> Config {
    Config {
        call_window: WINDOW_BYTES,
        min_call_window: WINDOW_BYTES,
        ..Config::default()
    }
}

/// Lets a stalled producer run freely for a while (not an assertion on time: if flow control
/// were missing, the producer would finish thousands of sends in this interval).
async fn give_producer_a_chance() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn client_streaming_slow_handler_bounds_caller_in_flight() {
    let mut h = harness_with(config()).await;
    let mut call = h
        .session
        .call_client_streaming::<u32, Vec<u32>>("collect_gated", CallOptions::default())
        .unwrap();
    let _ctx = within(h.contexts.recv()).await.unwrap();
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    let producer = tokio::spawn(async move {
        for i in 0..1000u32 {
            call.send(&i).await.unwrap();
            counter.fetch_add(1, Ordering::SeqCst);
        }
        call.finish().await.unwrap()
    });
    stalled_at_the_window(|| sent.load(Ordering::SeqCst), WINDOW_BYTES).await;
    assert_eq!(h.server_session.recv_bytes_held(), WINDOW_BYTES as usize);
    h.probe.release.notify_one();
    let all = within(producer).await.unwrap();
    assert_eq!(all, (0..1000).collect::<Vec<_>>());
    assert_eq!(Metrics::get(&h.server.metrics().credit_violations), 0);
    assert!(Metrics::get(&h.server.metrics().recv_bytes_peak) <= u64::from(WINDOW_BYTES));
}

#[tokio::test]
async fn server_streaming_slow_caller_bounds_handler_in_flight() {
    let mut h = harness_with(config()).await;
    let mut stream = h
        .session
        .call_server_streaming::<u32, u32>("count", &1000, CallOptions::default())
        .await
        .unwrap();
    let _ctx = within(h.contexts.recv()).await.unwrap();
    let stalled =
        stalled_at_the_window(|| h.probe.produced.load(Ordering::SeqCst), WINDOW_BYTES).await;
    assert!(stream.queued() <= stalled);
    let mut expected = 0u32;
    while let Some(item) = within(stream.next()).await {
        assert_eq!(item.unwrap(), expected);
        expected += 1;
        assert!(stream.queued() <= stalled + 1);
    }
    assert_eq!(expected, 1000);
    assert_eq!(Metrics::get(&h.client.metrics().credit_violations), 0);
    assert!(Metrics::get(&h.client.metrics().recv_bytes_peak) <= u64::from(WINDOW_BYTES));
}

#[tokio::test]
async fn duplex_upload_is_bounded_when_the_handler_does_not_read() {
    let mut h = harness_with(config()).await;
    let call = h
        .session
        .call_duplex::<u32, u32>("echo_stream_gated", CallOptions::default())
        .unwrap();
    let _ctx = within(h.contexts.recv()).await.unwrap();
    let (mut tx, mut rx) = call.into_split();
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    let producer = tokio::spawn(async move {
        for i in 0..500u32 {
            tx.send(&i).await.unwrap();
            counter.fetch_add(1, Ordering::SeqCst);
        }
        tx
    });
    stalled_at_the_window(|| sent.load(Ordering::SeqCst), WINDOW_BYTES).await;
    h.probe.release.notify_one();
    for expected in 0..500u32 {
        assert_eq!(within(rx.next()).await.unwrap().unwrap(), expected);
    }
    // Every message was consumed and the handler waits for more, so it returned what it
    // consumed: the whole window is back, less at most what the last appended message saved
    // (the sender keeps that toward its next message). The accounting of appended messages
    // is exact: bytes they saved and were not counted would be missing here for good.
    let mut tx = within(producer).await.unwrap();
    eventually(|| {
        let w = tx.grant_request_window();
        w.available + net_mesh_rpc::frame::APPENDED_MESSAGE_SAVING >= w.window as usize
    })
    .await;
    tx.finish().unwrap();
    assert!(within(rx.next()).await.is_none());
    assert_eq!(Metrics::get(&h.server.metrics().credit_violations), 0);
}

#[tokio::test]
async fn duplex_download_is_bounded_when_the_caller_does_not_read() {
    let mut h = harness_with(config()).await;
    let mut call = h
        .session
        .call_duplex::<u32, u32>("flood", CallOptions::default())
        .unwrap();
    let _ctx = within(h.contexts.recv()).await.unwrap();
    stalled_at_the_window(|| h.probe.produced.load(Ordering::SeqCst), WINDOW_BYTES).await;
    for expected in 0..100u32 {
        assert_eq!(within(call.next()).await.unwrap().unwrap(), expected);
    }
    assert_eq!(Metrics::get(&h.client.metrics().credit_violations), 0);
}

#[tokio::test]
async fn per_call_response_window_overrides_the_default() {
    let mut h = harness_with(Config {
        min_call_window: 1,
        ..config()
    })
    .await;
    let opts = CallOptions {
        response_window: Some(3 * SMALL_CHARGE),
        ..CallOptions::default()
    };
    let _stream = h
        .session
        .call_server_streaming::<u32, u32>("count", &1000, opts)
        .await
        .unwrap();
    let _ctx = within(h.contexts.recv()).await.unwrap();
    stalled_at_the_window(|| h.probe.produced.load(Ordering::SeqCst), 3 * SMALL_CHARGE).await;
}

#[tokio::test]
async fn unary_calls_beyond_the_concurrency_limit_get_resource_exhausted() {
    let mut h = harness_with(Config {
        max_concurrent_calls: 2,
        ..config()
    })
    .await;
    let mut pending = Vec::new();
    for _ in 0..2 {
        let session = h.session.clone();
        pending.push(tokio::spawn(async move {
            session
                .call_unary::<(), ()>("wait_cancel", &(), CallOptions::default())
                .await
        }));
        let _ctx = within(h.contexts.recv()).await.unwrap();
    }
    let err = within(
        h.session
            .call_unary::<(), ()>("wait_cancel", &(), CallOptions::default()),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, net_mesh_rpc::rpc::ErrorKind::ResourceExhausted);
    assert_eq!(h.server_session.served_calls(), 2);
    for task in pending {
        task.abort();
    }
}
