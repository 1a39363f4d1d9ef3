//! `serve` admission caps: one source address holds at most `max_sessions_per_addr` handshakes
//! and sessions (the next connection is closed before its handshake), one identity at most
//! `max_sessions_per_identity` sessions (the next is closed after its handshake); others are
//! unaffected, and slots come back when sessions end.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::net::SocketAddr;

use common::*;
use net_mesh_rpc::rpc::{Config, Metrics, Router, SessionError};
use net_mesh_rpc::{Endpoint, Identity, Session};

async fn dial(seed: u8, source: [u8; 4], addr: SocketAddr) -> Result<Session, SessionError> {
    let client = Endpoint::new(
        Identity::from_seed([seed; 32]),
        Router::new(),
        Config::default(),
    );
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((source, 0))).unwrap();
    let stream = within(socket.connect(addr)).await.unwrap();
    within(client.connect_stream(stream, None)).await
}

/// True once the server has ended the session (refused after its handshake).
async fn refused(session: &Session) -> bool {
    within(session.closed()).await;
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn address_and_identity_caps_refuse_the_excess_only() {
    let served = serve_with(Config {
        max_sessions_per_addr: 2,
        max_sessions_per_identity: 2,
        ..Config::default()
    })
    .await;
    let metrics = served.server.metrics();
    let addr = served.addr;

    // Address cap: two sessions from 127.0.0.3 (different identities), the third is closed
    // before its handshake.
    let a1 = dial(10, [127, 0, 0, 3], addr).await.unwrap();
    let a2 = dial(11, [127, 0, 0, 3], addr).await.unwrap();
    honest_round(&a1).await;
    assert!(dial(12, [127, 0, 0, 3], addr).await.is_err());
    assert_eq!(Metrics::get(&metrics.sessions_refused_addr), 1);
    // Another address is unaffected.
    let b = dial(12, [127, 0, 0, 4], addr).await.unwrap();
    honest_round(&b).await;

    // Identity cap: identity 20 from three addresses; the third session is closed right after
    // its handshake.
    let i1 = dial(20, [127, 0, 0, 5], addr).await.unwrap();
    let i2 = dial(20, [127, 0, 0, 6], addr).await.unwrap();
    let i3 = dial(20, [127, 0, 0, 7], addr).await.unwrap();
    assert!(refused(&i3).await);
    eventually(|| Metrics::get(&metrics.sessions_refused_identity) == 1).await;
    honest_round(&i1).await;
    honest_round(&i2).await;

    // Ending sessions gives the slots back.
    a1.close();
    i1.close();
    eventually(|| Metrics::get(&metrics.open_sessions) == 3).await;
    let mut again = None;
    for _ in 0..100 {
        if let Ok(s) = dial(13, [127, 0, 0, 3], addr).await {
            again = Some(s);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    honest_round(&again.expect("the address slot came back")).await;
    let i4 = dial(20, [127, 0, 0, 8], addr).await.unwrap();
    honest_round(&i4).await;
    drop((a2, b, i2));
    served.stop.cancel();
    within(served.task).await.unwrap();
}
