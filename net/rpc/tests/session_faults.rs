//! A misbehaving peer (speaking raw frames over a real Noise session) is answered with typed
//! errors or disconnected and counted; it never crashes the server.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use net_mesh_rpc::Session;
use net_mesh_rpc::frame::{
    CallHeader, CallKind, ErrorKind, FRAME_VERSION, Frame, MAX_FRAME_LEN, TraceContext,
};
use net_mesh_rpc::rpc::{CallOptions, Metrics, SessionError};
use net_mesh_rpc::transport::TransportError;
use tokio::io::AsyncWriteExt;

fn header(kind: CallKind, method: &str) -> CallHeader<'_> {
    CallHeader {
        kind,
        timeout_us: 0,
        trace: TraceContext::default(),
        response_window: 8 * 1024,
        method,
        metadata: &[],
    }
}

/// Connects a raw peer to the harness server and returns it with the server's session.
async fn raw(h: &Harness, seed: u8) -> (RawPeer, Session) {
    let (peer, session) = within(async {
        tokio::join!(RawPeer::connect(h.addr, seed), h.server.accept(&h.listener))
    })
    .await;
    (peer, session.unwrap())
}

async fn expect_error(peer: &mut RawPeer, call_id: u64, kind: ErrorKind) {
    loop {
        let bytes = peer
            .recv()
            .await
            .expect("session ended before the error reply");
        match Frame::decode(&bytes).unwrap() {
            Frame::ResponseError {
                call_id: id,
                kind: k,
                ..
            } if id == call_id => {
                assert_eq!(k, kind);
                return;
            }
            _ => {}
        }
    }
}

#[tokio::test]
async fn duplicate_request_init_for_live_call_is_rejected() {
    let h = harness().await;
    let (mut peer, server_session) = raw(&h, 9).await;
    let init = Frame::RequestInit {
        call_id: 77,
        header: header(CallKind::ClientStreaming, "collect"),
    };
    peer.send(&init).await;
    // The first INIT is accepted: the server grants request credit.
    let grant = peer.recv().await.unwrap();
    assert!(matches!(
        Frame::decode(&grant).unwrap(),
        Frame::RequestWindowGrant { call_id: 77, .. }
    ));
    peer.send(&init).await;
    expect_error(&mut peer, 77, ErrorKind::ProtocolViolation).await;
    assert_eq!(Metrics::get(&h.server.metrics().protocol_violations), 1);
    // The original call is still live and completes normally.
    assert_eq!(server_session.served_calls(), 1);
    peer.send(&Frame::RequestChunk {
        call_id: 77,
        seq: 0,
        messages: net_mesh_rpc::frame::Messages::parse(&one_message(&[5])).unwrap(),
    })
    .await;
    peer.send(&Frame::RequestEnd { call_id: 77 }).await;
    loop {
        let bytes = peer.recv().await.unwrap();
        if let Frame::Response {
            call_id: 77,
            payload,
        } = Frame::decode(&bytes).unwrap()
        {
            assert_eq!(payload, &[1, 5]); // postcard Vec<u32> [5]
            break;
        }
    }
}

#[tokio::test]
async fn responses_are_accepted_only_from_the_peer_the_call_went_to() {
    let mut h = harness().await;
    // The caller side (h.client) also accepts an inbound session from an attacker.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (mut attacker, attacked) =
        within(async { tokio::join!(RawPeer::connect(addr, 66), h.client.accept(&listener)) })
            .await;
    let _attacked = attacked.unwrap();

    let mut call = h
        .session
        .call_client_streaming::<u32, Vec<u32>>("collect", CallOptions::default())
        .unwrap();
    let call_id = call.call_id();
    let _ctx = within(h.contexts.recv()).await.unwrap();
    // The attacker knows the call id and answers it on its own session.
    let forged = postcard::to_stdvec(&vec![666u32]).unwrap();
    attacker
        .send(&Frame::Response {
            call_id,
            payload: &forged,
        })
        .await;
    attacker
        .send(&Frame::ResponseError {
            call_id,
            kind: ErrorKind::Internal,
            message: "x",
        })
        .await;
    eventually(|| Metrics::get(&h.client.metrics().stray_frames) >= 2).await;
    call.send(&1).await.unwrap();
    assert_eq!(
        within(call.finish()).await.unwrap(),
        vec![1],
        "forged response was accepted"
    );
}

#[tokio::test]
async fn unknown_dispatch_gets_a_typed_error_reply() {
    let h = harness().await;
    let (mut peer, _s) = raw(&h, 9).await;
    let mut bytes = vec![FRAME_VERSION, 0x7f];
    bytes.extend_from_slice(&1234u64.to_le_bytes());
    peer.tx.send_frame(&bytes).await.unwrap();
    expect_error(&mut peer, 1234, ErrorKind::UnknownDispatch).await;
    assert_eq!(Metrics::get(&h.server.metrics().unknown_dispatch), 1);
}

#[tokio::test]
async fn request_chunk_seq_gap_or_duplicate_is_a_protocol_error_for_that_call() {
    let h = harness().await;
    let (mut peer, server_session) = raw(&h, 9).await;
    for (call_id, seqs) in [(5u64, [0u64, 2]), (6, [0, 0])] {
        peer.send(&Frame::RequestInit {
            call_id,
            header: header(CallKind::ClientStreaming, "collect"),
        })
        .await;
        for seq in seqs {
            peer.send(&Frame::RequestChunk {
                call_id,
                seq,
                messages: net_mesh_rpc::frame::Messages::parse(&one_message(&[1])).unwrap(),
            })
            .await;
        }
        expect_error(&mut peer, call_id, ErrorKind::ProtocolViolation).await;
    }
    assert_eq!(Metrics::get(&h.server.metrics().protocol_violations), 2);
    eventually(|| server_session.served_calls() == 0).await;
    assert!(
        server_session.end_reason().is_none(),
        "a per-call error must not end the session"
    );
}

#[tokio::test]
async fn server_enforces_the_deadline_carried_in_the_request() {
    let mut h = harness().await;
    let (mut peer, _s) = raw(&h, 9).await;
    let mut hdr = header(CallKind::Unary, "wait_cancel");
    hdr.timeout_us = 100_000;
    peer.send(&Frame::Request {
        call_id: 3,
        header: hdr,
        payload: &[],
    })
    .await;
    expect_error(&mut peer, 3, ErrorKind::DeadlineExceeded).await;
    let ctx = within(h.contexts.recv()).await.unwrap();
    assert_eq!(ctx.cancel_reason(), Some(ErrorKind::DeadlineExceeded));
}

#[tokio::test]
async fn malformed_frame_disconnects_with_typed_error_and_counter() {
    let h = harness().await;
    let (mut peer, server_session) = raw(&h, 9).await;
    // Trailing byte after REQUEST_END.
    let mut bytes = Frame::RequestEnd { call_id: 1 }.to_vec().unwrap();
    bytes.push(0);
    peer.tx.send_frame(&bytes).await.unwrap();
    let reason = within(server_session.closed()).await;
    assert!(matches!(*reason, SessionError::Malformed(_)), "{reason}");
    assert_eq!(Metrics::get(&h.server.metrics().malformed_frames), 1);
    assert!(peer.recv().await.is_none());
    // The server still serves others.
    let out: String = within(h.session.call_unary(
        "echo",
        &"ok".to_string(),
        CallOptions::default(),
    ))
    .await
    .unwrap();
    assert_eq!(out, "ok");
}

#[tokio::test]
async fn oversized_frame_disconnects_before_buffering_it() {
    let h = harness().await;
    let (mut peer, server_session) = raw(&h, 9).await;
    let too_big = u32::try_from(MAX_FRAME_LEN + 1).unwrap();
    peer.tx
        .queue_raw_stream_bytes(&too_big.to_le_bytes())
        .unwrap();
    peer.tx.flush().await.unwrap();
    let reason = within(server_session.closed()).await;
    assert!(
        matches!(
            *reason,
            SessionError::Transport(TransportError::FrameTooLarge { .. })
        ),
        "{reason}"
    );
    assert_eq!(Metrics::get(&h.server.metrics().oversized_frames), 1);
}

#[tokio::test]
async fn credit_overrun_disconnects_with_typed_error() {
    let h = harness_with(net_mesh_rpc::rpc::Config {
        call_window: 1000,
        min_call_window: 1000,
        ..Default::default()
    })
    .await;
    let (mut peer, server_session) = raw(&h, 9).await;
    peer.send(&Frame::RequestInit {
        call_id: 8,
        header: header(CallKind::ClientStreaming, "collect_gated"),
    })
    .await;
    for seq in 0..20 {
        peer.send(&Frame::RequestChunk {
            call_id: 8,
            seq,
            messages: net_mesh_rpc::frame::Messages::parse(&one_message(&[1])).unwrap(),
        })
        .await;
    }
    let reason = within(server_session.closed()).await;
    assert!(
        matches!(*reason, SessionError::CreditExceeded { call_id: 8 }),
        "{reason}"
    );
    assert_eq!(Metrics::get(&h.server.metrics().credit_violations), 1);
}

#[tokio::test]
async fn handshake_garbage_fails_typed_and_counted() {
    let h = harness().await;
    let mut stream = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    let accept = h.server.accept(&h.listener);
    let garbage = async {
        stream.write_all(&[0x20, 0x00]).await.unwrap();
        stream.write_all(&[0xab; 32]).await.unwrap();
        stream.shutdown().await.unwrap();
    };
    let (result, ()) = within(async { tokio::join!(accept, garbage) }).await;
    assert!(
        matches!(result, Err(SessionError::Handshake(_))),
        "{result:?}"
    );
    assert_eq!(Metrics::get(&h.server.metrics().handshake_failures), 1);
}

#[tokio::test]
async fn handshake_from_a_peer_that_hangs_up_midway_fails_typed() {
    let h = harness().await;
    let stream = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    drop(stream);
    let result = within(h.server.accept(&h.listener)).await;
    assert!(
        matches!(result, Err(SessionError::Handshake(_))),
        "{result:?}"
    );
    assert_eq!(Metrics::get(&h.server.metrics().handshake_failures), 1);
}

#[tokio::test]
async fn serve_refuses_connections_beyond_max_sessions_and_frees_slots_on_close() {
    use net_mesh_rpc::Identity;
    use net_mesh_rpc::rpc::{Config, Endpoint, Router};
    let config = Config {
        max_sessions: 1,
        ..Config::default()
    };
    let server = Endpoint::new(Identity::from_seed([7; 32]), Router::new(), config.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let serving = {
        let server = server.clone();
        let stop = stop.clone();
        tokio::spawn(async move { server.serve(listener, stop).await })
    };
    let client = Endpoint::new(Identity::from_seed([8; 32]), Router::new(), config);
    let first = within(client.connect(addr)).await.unwrap();
    // The only slot is taken: the next connection is closed before its handshake.
    assert!(within(client.connect(addr)).await.is_err());
    assert_eq!(Metrics::get(&server.metrics().sessions_refused), 1);
    // Closing the first session frees the slot.
    first.close();
    let mut again = None;
    for _ in 0..100 {
        if let Ok(s) = within(client.connect(addr)).await {
            again = Some(s);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        again.is_some(),
        "a slot must free up once the first session closed"
    );
    stop.cancel();
    within(serving).await.unwrap();
}
