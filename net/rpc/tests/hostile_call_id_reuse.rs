//! Call-id reuse: a peer cancels call X and opens a new call X while the first handler is still
//! running. The old handler's end neither removes nor answers the new call, the old call keeps
//! its place in `max_concurrent_calls` until its handler returns, and an honest client is served
//! meanwhile.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

use common::*;
use net_mesh_rpc::frame::{ErrorKind, Frame};
use net_mesh_rpc::rpc::{Config, Metrics, Router};
use net_mesh_rpc::{Endpoint, Identity};

const X: u64 = 0x0bad_cafe;

fn request(call_id: u64, text: &str) -> Vec<u8> {
    let payload = postcard::to_stdvec(&text.to_string()).unwrap();
    Frame::Request {
        call_id,
        header: unary_header("gate"),
        payload: &payload,
    }
    .to_vec()
    .unwrap()
}

/// Every frame the peer receives until `until` returns true for one.
async fn frames_until(
    peer: &mut RawPeer,
    mut until: impl FnMut(&Frame<'_>) -> bool,
) -> Vec<Vec<u8>> {
    let mut all = Vec::new();
    loop {
        let bytes = peer.recv().await.expect("session ended");
        let done = until(&Frame::decode(&bytes).unwrap());
        all.push(bytes);
        if done {
            return all;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_old_call_neither_removes_nor_answers_the_new_one() {
    let gate = Gate::default();
    let config = Config {
        max_concurrent_calls: 2,
        cancel_grace: Duration::from_secs(60),
        ..Config::default()
    };
    let router = Router::new()
        .unary("gate", gate.clone())
        .unary("echo", Echo)
        .server_streaming("count", Count(probe().0));
    let server = Endpoint::new(Identity::from_seed([1; 32]), router, config.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = Endpoint::new(Identity::from_seed([2; 32]), Router::new(), config);
    let (honest, _) =
        within(async { tokio::join!(client.connect(addr), server.accept(&listener)) }).await;
    let honest = honest.unwrap();
    let (peer, attacked) =
        within(async { tokio::join!(RawPeer::connect(addr, 9), server.accept(&listener)) }).await;
    let (mut peer, attacked) = (peer, attacked.unwrap());

    // Call X ("old") starts, is cancelled, and its handler keeps running.
    peer.tx.send_frame(&request(X, "old")).await.unwrap();
    eventually(|| gate.started.lock().unwrap().contains(&"old".to_string())).await;
    peer.send(&Frame::RequestCancel {
        call_id: X,
        reason: ErrorKind::Cancelled,
    })
    .await;
    eventually(|| attacked.served_calls() == 0).await;
    assert_eq!(attacked.running_handlers(), 1, "the old handler still runs");

    // A new call reuses X ("new"): it runs beside the old handler.
    peer.tx.send_frame(&request(X, "new")).await.unwrap();
    eventually(|| gate.started.lock().unwrap().contains(&"new".to_string())).await;
    assert_eq!(attacked.served_calls(), 1);
    assert_eq!(attacked.running_handlers(), 2);

    // The cancelled call still holds its slot: a third call is refused.
    peer.tx.send_frame(&request(77, "third")).await.unwrap();
    let seen = frames_until(&mut peer, |f| f.call_id() == 77).await;
    assert!(matches!(
        Frame::decode(seen.last().unwrap()).unwrap(),
        Frame::ResponseError {
            kind: ErrorKind::ResourceExhausted,
            ..
        }
    ));
    honest_round(&honest).await;

    // The old handler returns "old": it must not remove or answer the new call X.
    gate.gate("old").notify_one();
    eventually(|| attacked.running_handlers() == 1).await;
    assert_eq!(attacked.served_calls(), 1, "the new call X is still open");

    // The new call answers, and it is the only answer X ever gets.
    gate.gate("new").notify_one();
    let seen = frames_until(&mut peer, |f| f.call_id() == X).await;
    let frames: Vec<_> = seen.iter().map(|b| Frame::decode(b).unwrap()).collect();
    let answers: Vec<_> = frames.iter().filter(|f| f.call_id() == X).collect();
    assert_eq!(answers.len(), 1, "{frames:?}");
    let Frame::Response { payload, .. } = answers[0] else {
        panic!("expected the new call's response, got {:?}", answers[0]);
    };
    assert_eq!(postcard::from_bytes::<String>(payload).unwrap(), "new");
    eventually(|| attacked.running_handlers() == 0).await;
    assert_eq!(Metrics::get(&server.metrics().active_handlers), 0);
    honest_round(&honest).await;
}
