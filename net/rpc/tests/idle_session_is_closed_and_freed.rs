//! Liveness: a session with no call open and nothing arriving is closed at the idle timeout
//! (both ends see it end, the server frees its tasks and socket), while a session with a call
//! in progress is kept however long the call takes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

use common::*;
use net_mesh_rpc::rpc::{CallOptions, Config, Metrics, SessionError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_close_and_busy_ones_stay() {
    let idle = Duration::from_millis(200);
    let mut h = harness_with(Config {
        idle_timeout: Some(idle),
        ..Config::default()
    })
    .await;
    // Only the server times out here; a client without an idle timeout.
    let client = net_mesh_rpc::Endpoint::new(
        net_mesh_rpc::Identity::from_seed([2; 32]),
        net_mesh_rpc::rpc::Router::new(),
        Config {
            idle_timeout: None,
            ..Config::default()
        },
    );
    let (session, server_session) =
        within(async { tokio::join!(client.connect(h.addr), h.server.accept(&h.listener)) }).await;
    h.session.close();
    h.session = session.unwrap();
    h.server_session = server_session.unwrap();
    h.client = client;
    // A call that takes five idle timeouts keeps the session open.
    let call = {
        let session = h.session.clone();
        tokio::spawn(async move {
            session
                .call_unary::<(), ()>("wait_cancel", &(), CallOptions::default())
                .await
        })
    };
    let ctx = within(h.contexts.recv()).await.unwrap();
    tokio::time::sleep(idle * 5).await;
    assert!(
        h.session.end_reason().is_none(),
        "client: {:?}",
        h.session.end_reason()
    );
    assert!(
        h.server_session.end_reason().is_none(),
        "busy session closed"
    );
    assert!(h.session.end_reason().is_none());
    call.abort();
    within(ctx.token().cancelled()).await;

    // Once nothing is going on, the session is closed at the idle timeout.
    let fds = open_fds();
    let reason = within(h.server_session.closed()).await;
    assert!(matches!(*reason, SessionError::Idle(_)), "{reason}");
    within(h.session.closed()).await;
    assert_eq!(Metrics::get(&h.server.metrics().idle_closes), 1);
    eventually(|| Metrics::get(&h.server.metrics().session_tasks) == 0).await;
    eventually(|| Metrics::get(&h.client.metrics().session_tasks) == 0).await;
    eventually(|| open_fds() <= fds - 2).await;
}
