//! Descriptor exhaustion: with the process out of file descriptors, `accept` fails with
//! `EMFILE` while a client waits in the backlog. The accept loop backs off instead of spinning,
//! keeps running, and serves the waiting client once descriptors are free again; a session
//! opened before the exhaustion keeps working throughout.
//!
//! This test lowers its own process's descriptor limit (soft and hard), so it lives alone in
//! its file (its own process).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

use common::*;
use net_mesh_rpc::rpc::{Config, Metrics, Router};
use net_mesh_rpc::{Endpoint, Identity};
use rustix::process::{Resource, Rlimit, setrlimit};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_backs_off_on_emfile_and_serves_once_descriptors_are_free() {
    let config = Config {
        raise_fd_limit: false,
        handshake_timeout: Duration::from_secs(30),
        ..Config::default()
    };
    let served = serve_with(config.clone()).await;
    let client = Endpoint::new(Identity::from_seed([2; 32]), Router::new(), config);
    let before = within(client.connect(served.addr)).await.unwrap();
    honest_round(&before).await;

    let limit = (open_fds() + 48) as u64;
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(limit),
            maximum: Some(limit),
        },
    )
    .unwrap();
    // Use up every descriptor.
    let mut fillers = Vec::new();
    while let Ok(file) = std::fs::File::open("/dev/null") {
        fillers.push(file);
    }
    assert!(!fillers.is_empty());
    // One descriptor for the client's socket; the server then has none to accept it with.
    fillers.pop();
    let waiting = {
        let client = client.clone();
        let addr = served.addr;
        tokio::spawn(async move { client.connect(addr).await })
    };
    let metrics = served.server.metrics();
    eventually(|| Metrics::get(&metrics.accept_errors) >= 1).await;
    // Give a spinning loop every chance to show itself: it would fail millions of times here.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let errors = Metrics::get(&metrics.accept_errors);
    assert!(
        errors <= 20,
        "accept failed {errors} times: not backing off"
    );
    // The session opened before keeps working while accept cannot.
    honest_round(&before).await;

    drop(fillers);
    let session = within(waiting).await.unwrap().unwrap();
    honest_round(&session).await;
    eprintln!("accept errors while out of descriptors: {errors}");
    served.stop.cancel();
    within(served.task).await.unwrap();
}
