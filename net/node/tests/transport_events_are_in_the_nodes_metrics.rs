//! What peers do at the nRPC level reaches the node's metrics (`--metrics`), not only its
//! calls: `transport_events_total{event=...}` carries the endpoint's counters. Over real TCP,
//! a connection that sends bytes no handshake begins with counts as a handshake failure, and
//! an honest client's session as an opened session; every event the endpoint counts is listed,
//! at 0 until it happens.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::sync::Arc;

use common::*;
use tokio::io::AsyncWriteExt;

const EVENTS: [&str; 21] = [
    "sessions_opened",
    "handshake_failures",
    "handshakes_refused",
    "sessions_refused",
    "sessions_refused_addr",
    "sessions_refused_identity",
    "sessions_refused_memory",
    "accept_errors",
    "idle_closes",
    "stalled_closes",
    "malformed_frames",
    "oversized_frames",
    "transport_errors",
    "unknown_dispatch",
    "protocol_violations",
    "credit_violations",
    "stray_frames",
    "budget_refusals",
    "send_queue_overflows",
    "handler_panics",
    "deadlines_exceeded",
];

fn event(name: &str, value: u64) -> String {
    format!("net_mesh_node_transport_events_total{{event=\"{name}\"}} {value}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transport_events_are_in_the_nodes_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let (user, user_id) = identity();
    let node = start(dir.path(), |_| format!("{user_id} read\n")).await;

    // Once the node serves (its task started), every event is there at 0.
    let live = Arc::clone(&node.node);
    wait_until(move || {
        let rendered = live.render_metrics();
        EVENTS.iter().all(|name| rendered.contains(&event(name, 0)))
    })
    .await;

    // Bytes that are no handshake message, then the connection closes.
    let mut junk = tokio::net::TcpStream::connect(&node.addr.host_port)
        .await
        .unwrap();
    junk.write_all(&[0xff; 64]).await.unwrap();
    junk.shutdown().await.unwrap();
    let live = Arc::clone(&node.node);
    wait_until(move || {
        live.render_metrics()
            .contains(&event("handshake_failures", 1))
    })
    .await;

    let client = client_as(user, &node.addr).await;
    client.status().await.unwrap();
    let rendered = node.node.render_metrics();
    assert!(
        rendered.contains(&event("sessions_opened", 1)),
        "{rendered}"
    );
    assert!(
        rendered.contains(&event("handshake_failures", 1)),
        "{rendered}"
    );

    drop(client);
    node.shut().await;
}
