//! Call semantics over real TCP + Noise sessions.
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
use futures_util::StreamExt;
use net_mesh_rpc::RpcError;
use net_mesh_rpc::rpc::{CallOptions, Encoded, ErrorKind, Metrics, TraceContext};

#[tokio::test]
async fn unary_echo_and_context_carry_peer_call_id_and_trace() {
    let h = harness().await;
    let out: String = h
        .session
        .call_unary("echo", &"hi".to_string(), CallOptions::default())
        .await
        .unwrap();
    assert_eq!(out, "hi");
    let trace = TraceContext {
        trace_id: [7; 16],
        span_id: [8; 8],
    };
    let opts = CallOptions {
        trace,
        ..CallOptions::default()
    };
    let (peer, call_id, trace_id): ([u8; 32], u64, [u8; 16]) =
        within(h.session.call_unary("whoami", &(), opts))
            .await
            .unwrap();
    assert_eq!(
        peer,
        *h.client.identity().node_id().as_bytes(),
        "handler sees the authenticated peer"
    );
    assert_ne!(call_id, 0);
    assert_eq!(trace_id, [7; 16]);
    assert_eq!(h.session.peer().node_id(), h.server.identity().node_id());
}

#[tokio::test]
async fn handler_error_becomes_response_error_with_its_kind() {
    let h = harness().await;
    let err = within(
        h.session
            .call_unary::<(), ()>("fail", &(), CallOptions::default()),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
    assert_eq!(err.message, "no such thing");
}

#[tokio::test]
async fn unknown_method_is_a_typed_error() {
    let h = harness().await;
    let err = within(
        h.session
            .call_unary::<(), ()>("nope", &(), CallOptions::default()),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::UnknownMethod);
    // Right name, wrong kind.
    let err = within(
        h.session
            .call_unary::<u32, u32>("count", &1, CallOptions::default()),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::UnknownMethod);
}

#[tokio::test]
async fn handler_panic_becomes_handler_panic_and_server_keeps_serving() {
    let h = harness().await;
    let err = within(
        h.session
            .call_unary::<(), ()>("panic", &(), CallOptions::default()),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::HandlerPanic);
    assert!(err.message.contains("blew up"), "{err}");
    assert_eq!(Metrics::get(&h.server.metrics().handler_panics), 1);
    honest_round(&h.session).await;
}

#[tokio::test]
async fn caller_cancel_stops_handler_and_it_sees_cancelled() {
    let mut h = harness().await;
    let mut call = h
        .session
        .call_client_streaming::<u32, Vec<u32>>("collect", CallOptions::default())
        .unwrap();
    call.send(&1).await.unwrap();
    let ctx = within(h.contexts.recv()).await.unwrap();
    call.cancel();
    within(ctx.token().cancelled()).await;
    assert_eq!(ctx.cancel_reason(), Some(ErrorKind::Cancelled));
    eventually(|| h.server_session.served_calls() == 0).await;

    // Server-streaming: the handler's sink fails with Cancelled once the caller cancels.
    let stream = h
        .session
        .call_server_streaming::<u32, u32>("count", &1_000_000, CallOptions::default())
        .await
        .unwrap();
    let ctx = within(h.contexts.recv()).await.unwrap();
    stream.cancel();
    within(ctx.token().cancelled()).await;
    assert_eq!(ctx.cancel_reason(), Some(ErrorKind::Cancelled));
    eventually(|| h.server_session.served_calls() == 0).await;
    assert_eq!(h.session.open_calls(), 0);
}

#[tokio::test]
async fn server_cancel_reaches_caller_as_cancelled_in_both_directions() {
    let h = harness().await;
    let mut call = h
        .session
        .call_duplex::<u32, u32>("echo_stream", CallOptions::default())
        .unwrap();
    call.send(&5).await.unwrap();
    assert_eq!(within(call.next()).await.unwrap().unwrap(), 5);
    call.send(&u32::MAX).await.unwrap(); // the handler answers this with Err(Cancelled)
    let err = within(call.next()).await.unwrap().unwrap_err();
    assert_eq!(err.kind, ErrorKind::Cancelled);
    assert!(within(call.next()).await.is_none());
    // The request direction is stopped too.
    let err = within(call.send(&6)).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Cancelled);
}

#[tokio::test]
async fn deadline_exceeded_on_both_sides_and_handler_token_fires() {
    let mut h = harness().await;
    let opts = CallOptions::with_timeout(Duration::from_millis(200));
    let err = within(h.session.call_unary::<(), ()>("wait_cancel", &(), opts))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::DeadlineExceeded);
    let ctx = within(h.contexts.recv()).await.unwrap();
    assert!(ctx.deadline().is_some());
    within(ctx.token().cancelled()).await;
    assert_eq!(ctx.cancel_reason(), Some(ErrorKind::DeadlineExceeded));

    // Streaming kinds: a duplex call whose handler never answers.
    let opts = CallOptions::with_timeout(Duration::from_millis(200));
    let mut call = h
        .session
        .call_duplex::<u32, u32>("echo_stream_gated", opts)
        .unwrap();
    let ctx = within(h.contexts.recv()).await.unwrap();
    let err = within(call.next()).await.unwrap().unwrap_err();
    assert_eq!(err.kind, ErrorKind::DeadlineExceeded);
    within(ctx.token().cancelled()).await;
    assert_eq!(ctx.cancel_reason(), Some(ErrorKind::DeadlineExceeded));
    let err = within(call.send(&1)).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::DeadlineExceeded);
}

#[tokio::test]
async fn dropping_one_split_half_does_not_cancel_but_dropping_both_does() {
    let mut h = harness().await;
    // Drop the receiver: the sender keeps working and the handler keeps receiving.
    let call = h
        .session
        .call_duplex::<u32, u32>("echo_stream", CallOptions::default())
        .unwrap();
    let (mut tx, rx) = call.into_split();
    let ctx = within(h.contexts.recv()).await.unwrap();
    drop(rx);
    for i in 0..5 {
        within(tx.send(&i)).await.unwrap();
    }
    eventually(|| h.probe.produced.load(Ordering::SeqCst) == 5).await;
    assert!(
        !ctx.token().is_cancelled(),
        "dropping the receiver alone must not cancel"
    );
    drop(tx);
    within(ctx.token().cancelled()).await;
    assert_eq!(ctx.cancel_reason(), Some(ErrorKind::Cancelled));

    // Drop the sender: responses to what was sent still arrive.
    let call = h
        .session
        .call_duplex::<u32, u32>("echo_stream", CallOptions::default())
        .unwrap();
    let (mut tx, mut rx) = call.into_split();
    let ctx = within(h.contexts.recv()).await.unwrap();
    within(tx.send(&41)).await.unwrap();
    within(tx.send(&42)).await.unwrap();
    drop(tx);
    assert_eq!(within(rx.next()).await.unwrap().unwrap(), 41);
    assert_eq!(within(rx.next()).await.unwrap().unwrap(), 42);
    assert!(
        !ctx.token().is_cancelled(),
        "dropping the sender alone must not cancel"
    );
    drop(rx);
    within(ctx.token().cancelled()).await;
}

#[tokio::test]
async fn session_loss_fails_every_open_call_with_disconnected() {
    let mut h = harness().await;
    let unary = {
        let session = h.session.clone();
        tokio::spawn(async move {
            session
                .call_unary::<(), ()>("wait_cancel", &(), CallOptions::default())
                .await
        })
    };
    let mut server_stream = h
        .session
        .call_server_streaming::<u32, u32>("count", &1_000_000, CallOptions::default())
        .await
        .unwrap();
    let mut client_stream = h
        .session
        .call_client_streaming::<u32, Vec<u32>>("collect_gated", CallOptions::default())
        .unwrap();
    let mut duplex = h
        .session
        .call_duplex::<u32, u32>("echo_stream_gated", CallOptions::default())
        .unwrap();
    let mut server_contexts = Vec::new();
    for _ in 0..4 {
        server_contexts.push(within(h.contexts.recv()).await.unwrap());
    }
    // Drain a little of the server stream so it is mid-flight.
    assert_eq!(within(server_stream.next()).await.unwrap().unwrap(), 0);

    h.server_session.close();

    let err = within(unary).await.unwrap().unwrap_err();
    assert_eq!(err.kind, ErrorKind::Disconnected);
    // The server stream may still yield already-delivered chunks, then Disconnected.
    let mut last = None;
    while let Some(item) = within(server_stream.next()).await {
        last = Some(item);
    }
    assert_eq!(last.unwrap().unwrap_err().kind, ErrorKind::Disconnected);
    // Sends fail once the session is gone (they may first use remaining credit).
    let mut send_err = None;
    for i in 0..1000 {
        if let Err(e) = within(client_stream.send(&i)).await {
            send_err = Some(e);
            break;
        }
    }
    assert_eq!(send_err.unwrap().kind, ErrorKind::Disconnected);
    let err = within(client_stream.finish()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Disconnected);
    let err = within(duplex.next()).await.unwrap().unwrap_err();
    assert_eq!(err.kind, ErrorKind::Disconnected);
    // New calls fail fast too.
    let err: RpcError = within(
        h.session
            .call_unary::<(), ()>("echo", &(), CallOptions::default()),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Disconnected);
    // Server-side handlers see their tokens fire.
    for ctx in &server_contexts {
        within(ctx.token().cancelled()).await;
    }
}

#[tokio::test]
async fn thousand_chunk_round_trips_arrive_complete_and_in_order() {
    let h = harness().await;
    let expected: Vec<u32> = (0..1000).collect();

    let mut up = h
        .session
        .call_client_streaming::<u32, Vec<u32>>("collect", CallOptions::default())
        .unwrap();
    for i in &expected {
        within(up.send(i)).await.unwrap();
    }
    assert_eq!(within(up.finish()).await.unwrap(), expected);

    let down = h
        .session
        .call_server_streaming::<u32, u32>("count", &1000, CallOptions::default())
        .await
        .unwrap();
    let got: Vec<u32> = within(down.map(|r| r.unwrap()).collect::<Vec<_>>()).await;
    assert_eq!(got, expected);

    let call = h
        .session
        .call_duplex::<u32, u32>("echo_stream", CallOptions::default())
        .unwrap();
    let (mut tx, rx) = call.into_split();
    let sender = tokio::spawn(async move {
        for i in 0..1000u32 {
            tx.send(&i).await.unwrap();
        }
        tx.finish().unwrap();
        tx
    });
    let got: Vec<u32> = within(rx.map(|r| r.unwrap()).collect::<Vec<_>>()).await;
    assert_eq!(got, expected);
    drop(within(sender).await.unwrap());
}

#[tokio::test]
async fn call_ids_are_random_not_sequential() {
    let h = harness().await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        let call = h
            .session
            .call_duplex::<u32, u32>("echo_stream", CallOptions::default())
            .unwrap();
        ids.push(call.call_id());
    }
    let sequential = ids.windows(2).all(|w| w[1].wrapping_sub(w[0]) == 1);
    assert!(!sequential, "{ids:?}");
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 4);
}

#[tokio::test]
async fn chunk_veneer_yields_init_then_numbered_data_then_end() {
    let h = harness().await;
    let mut call = h
        .session
        .call_client_streaming::<u32, (u64, Vec<(u64, u32)>, bool)>(
            "chunk_view",
            CallOptions::default(),
        )
        .unwrap();
    let call_id = call.call_id();
    for i in [10u32, 20, 30] {
        within(call.send(&i)).await.unwrap();
    }
    let (seen_id, data, end_repeats) = within(call.finish()).await.unwrap();
    assert_eq!(seen_id, call_id);
    assert_eq!(data, vec![(0, 10), (1, 20), (2, 30)]);
    assert!(end_repeats);
}

#[tokio::test]
async fn messages_larger_than_one_noise_message_round_trip() {
    let h = harness().await;
    let big: String = "x".repeat(3 << 20);
    let out: String = within(h.session.call_unary("echo", &big, CallOptions::default()))
        .await
        .unwrap();
    assert_eq!(out.len(), big.len());
    assert_eq!(out, big);
    eventually(|| Metrics::get(&h.server.metrics().active_handlers) == 0).await;
}

/// `RawBytes` is wire-compatible with serde byte strings and is decoded strictly.
/// A typed message is decoded whole: bytes after its encoding are a Decode error, for a
/// request (the handler never runs) and for an answer.
#[tokio::test]
async fn a_message_with_bytes_after_it_is_a_decode_error() {
    let h = harness().await;
    let err = within(h.session.call_unary::<(String, u8), String>(
        "echo",
        &("hi".to_string(), 7),
        CallOptions::default(),
    ))
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Decode, "{err}");
    assert!(err.message.contains("1 bytes after the message"), "{err}");
    // The answer "hi" read as an empty string followed by bytes.
    let err = within(h.session.call_unary::<String, ()>(
        "echo",
        &"hi".to_string(),
        CallOptions::default(),
    ))
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Decode, "{err}");
    // The session goes on.
    honest_round(&h.session).await;
}

/// A typed message has one encoding: a varint written with more bytes than it needs (which
/// postcard would read) is a Decode error, for a request, an answer and a streamed message.
#[tokio::test]
async fn an_over_long_varint_is_a_decode_error() {
    let h = harness().await;
    let echo = |bytes: Vec<u8>| {
        let session = h.session.clone();
        async move {
            let request = Encoded::from(bytes);
            session
                .call_unary::<Encoded, String>("echo", &request, CallOptions::default())
                .await
        }
    };
    // "hi" with its length as [0x82, 0x00] instead of [0x02].
    let err = within(echo(vec![0x82, 0x00, b'h', b'i']))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Decode, "{err}");
    assert!(err.message.contains("own encoding"), "{err}");
    assert_eq!(within(echo(vec![0x02, b'h', b'i'])).await.unwrap(), "hi");

    // The answer to "Ā\0" is [3, 0xc4, 0x80, 0x00]: read as (u8, u8, u32), its u32 is 0
    // written in two bytes.
    let ask = |s: &str| s.to_string();
    let err = within(h.session.call_unary::<String, (u8, u8, u32)>(
        "echo",
        &ask("\u{100}\0"),
        CallOptions::default(),
    ))
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Decode, "{err}");
    let bytes = within(h.session.call_unary::<String, (u8, u8, u8, u8)>(
        "echo",
        &ask("\u{100}\0"),
        CallOptions::default(),
    ))
    .await
    .unwrap();
    assert_eq!(bytes, (3, 0xc4, 0x80, 0x00));

    // A streamed u32 10 as [0x8a, 0x00].
    let mut call = h
        .session
        .call_client_streaming::<Encoded, (u64, Vec<(u64, u32)>, bool)>(
            "chunk_view",
            CallOptions::default(),
        )
        .unwrap();
    within(call.send(&Encoded::from(vec![0x8a, 0x00])))
        .await
        .unwrap();
    let err = within(call.finish()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Decode, "{err}");
    honest_round(&h.session).await;
}

#[tokio::test]
async fn raw_bytes_requests_interoperate_and_decode_strictly() {
    let h = harness().await;
    let mut call = h
        .session
        .call_client_streaming::<serde_bytes::ByteBuf, Vec<(usize, Option<u8>)>>(
            "raw_lens",
            CallOptions::default(),
        )
        .unwrap();
    for n in [0usize, 1, 200, 70_000, 1 << 20] {
        let msg = serde_bytes::ByteBuf::from(vec![n as u8; n]);
        within(call.send(&msg)).await.unwrap();
    }
    let got = within(call.finish()).await.unwrap();
    assert_eq!(
        got,
        [0usize, 1, 200, 70_000, 1 << 20]
            .iter()
            .map(|&n| (n, (n > 0).then_some(n as u8)))
            .collect::<Vec<_>>()
    );

    // A payload that is not exactly one byte string is a Decode error, not a panic.
    let mut bad = h
        .session
        .call_client_streaming::<(u32, u8), Vec<(usize, Option<u8>)>>(
            "raw_lens",
            CallOptions::default(),
        )
        .unwrap();
    within(bad.send(&(3, 7))).await.unwrap();
    let err = within(bad.finish()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Decode, "{err}");
}
