//! A client opens a read of a blob larger than its response window and never reads: the node's
//! worker stops on its full queue, and once the node's send timeout passes without room the
//! call ends (busy) and the worker returns its slot. With one stream slot on the node, another
//! client's read then runs; the stalled client's stream ends in the busy error after the parts
//! its window held.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use net_mesh_engine::ErrorClass;
use net_mesh_node::proto::{Method, ObjectPart, ReadRequest};
use net_mesh_node::{NodeClient, NodeConfig};
use net_mesh_rpc::rpc::{CallOptions, Config, ErrorKind};
use serde_bytes::ByteBuf;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_reading_frees_its_worker() {
    let dir = tempfile::tempdir().unwrap();
    let data = random_bytes(6_000_000, 91);
    let blob_ref = open_store(dir.path()).store(&data).unwrap().blob_ref;
    let (user, user_id) = identity();
    let config = NodeConfig {
        send_timeout: Duration::from_millis(300),
        max_streams: 1,
        ..NodeConfig::default()
    };
    let node = start_with(dir.path(), |_| format!("{user_id} read\n"), config).await;

    // A small response window: the node can put about 1 MiB on the wire, then must wait.
    let small = Config {
        capabilities: net_mesh_node::client::client_capabilities(),
        call_window: 1024 * 1024 + 64 * 1024,
        ..Config::default()
    };
    let stalled = NodeClient::connect_with(user.clone(), &node.addr, small)
        .await
        .unwrap();
    let request = ReadRequest {
        class: Default::default(),
        blob_ref: ByteBuf::from(blob_ref.encode()),
        start: 0,
        end: blob_ref.size(),
    };
    let mut stream = stalled
        .session()
        .call_server_streaming::<_, ObjectPart>(
            Method::Read.name(),
            &request,
            CallOptions::default(),
        )
        .await
        .unwrap();

    // The node ends the call once its send timeout passes with no room.
    let metrics = Arc::clone(node.node.metrics());
    wait_until(move || metrics.render().contains("errors_total{class=\"busy\"} 1")).await;

    // Its worker is gone: the one stream slot serves another client.
    let other = Arc::new(client_as(user, &node.addr).await);
    let (result, bytes) = read(&other, &blob_ref, 0..blob_ref.size()).await;
    assert_eq!(result.unwrap(), data.len() as u64);
    assert!(bytes == data);

    // The stalled stream holds what its window took, then the node's busy error.
    let mut pieces = 0usize;
    let ended = loop {
        match stream.next().await {
            Some(Ok(ObjectPart::Piece(p))) => pieces += p.len(),
            Some(Ok(_)) => {}
            Some(Err(e)) => break e,
            None => panic!("the stalled stream ended without an error"),
        }
    };
    assert_eq!(ended.kind, ErrorKind::Unavailable, "{ended}");
    assert_eq!(
        net_mesh_node::NodeError::from_rpc(&ended).class,
        ErrorClass::Busy
    );
    assert!(pieces < data.len());

    drop((stalled, other));
    node.shut().await;
}
