//! The request window of a streamed call is the server's choice: the caller reads it with
//! `grant_request_window` (size and what is free), cannot enlarge it, and a message whose
//! charge exceeds the whole window fails locally with `ResourceExhausted` (nothing is sent).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use net_mesh_rpc::frame::FRAME_CHARGE_OVERHEAD;
use net_mesh_rpc::rpc::{CallOptions, Config, ErrorKind, Metrics, RequestWindow};

const WINDOW: u32 = 32 * 1024;

#[tokio::test]
async fn callers_see_the_granted_window_and_cannot_exceed_it() {
    let mut h = harness_with(Config {
        call_window: WINDOW,
        min_call_window: WINDOW,
        ..Config::default()
    })
    .await;
    let mut call = h
        .session
        .call_duplex::<Vec<u8>, Vec<u8>>("echo_stream_gated", CallOptions::default())
        .unwrap();
    let _ctx = within(h.contexts.recv()).await.unwrap();
    eventually(|| call.grant_request_window().window == WINDOW).await;
    assert_eq!(
        call.grant_request_window(),
        RequestWindow {
            window: WINDOW,
            available: WINDOW as usize
        }
    );
    // A message that could never fit the window fails at once.
    let err = within(call.send(&vec![0u8; WINDOW as usize]))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::ResourceExhausted, "{err}");
    assert!(err.message.contains("window"), "{err}");
    // One that fits takes its charge from what is free.
    within(call.send(&vec![1u8; 1000])).await.unwrap();
    let charge = net_mesh_rpc::frame::CHUNK_PAYLOAD_OFFSET + 2 + 1000 + FRAME_CHARGE_OVERHEAD;
    assert_eq!(
        call.grant_request_window().available,
        WINDOW as usize - charge
    );
    assert_eq!(Metrics::get(&h.server.metrics().credit_violations), 0);
}
