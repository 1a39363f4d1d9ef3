//! A client opens a put, sends part of its input and then sends nothing while keeping its
//! session open (no session timer fires: a call is open). The node's upload idle timeout ends
//! the call: the worker checkpoints and returns (the upload slot is free again, nothing is
//! live), the client learns it is busy and may resume, and the upload is live at its offset.
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
use net_mesh_engine::{BlobRef, ErrorClass};
use net_mesh_node::NodeConfig;
use net_mesh_node::proto::{Method, PutDone, PutPart, PutStart, StagingState};
use net_mesh_rpc::rpc::CallOptions;
use serde_bytes::ByteBuf;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_whose_client_stops_sending_checkpoints_and_frees_its_worker() {
    let dir = tempfile::tempdir().unwrap();
    let (user, user_id) = identity();
    let config = NodeConfig {
        upload_idle_timeout: Duration::from_millis(300),
        max_uploads: 1,
        ..NodeConfig::default()
    };
    let node = start_with(dir.path(), |_| format!("{user_id} write\n"), config).await;
    let data = random_bytes(800_000, 51);

    let client = client_as(user, &node.addr).await;
    let mut call = client
        .session()
        .call_client_streaming::<PutPart, PutDone>(Method::Put.name(), CallOptions::default())
        .unwrap();
    call.send(&PutPart::Start(begin(Some("idle-1"), "idle", 64 * 1024)))
        .await
        .unwrap();
    call.send(&PutPart::Data(ByteBuf::from(&data[..500_000])))
        .await
        .unwrap();
    // The client holds its call open and sends nothing more: the idle timeout ends the
    // upload (counted as a busy error once it did; a wait for `live_uploads() == 1` first
    // could miss the 300 ms it lasts on a loaded machine).
    let metrics = Arc::clone(node.node.metrics());
    wait_until(move || metrics.render().contains("errors_total{class=\"busy\"} 1")).await;
    let live = Arc::clone(&node.node);
    wait_until(move || live.live_uploads() == 0).await;

    let err = net_mesh_node::NodeError::from_rpc(&call.finish().await.unwrap_err());
    assert_eq!(err.class, ErrorClass::Busy, "{err}");
    let offset = match client.staging_state("idle-1").await.unwrap() {
        StagingState::Live { resume_offset } => resume_offset,
        other => panic!("{other:?}"),
    };
    assert!(offset > 0 && offset <= 500_000, "offset {offset}");

    // The one upload slot is free: the resume runs and finishes to the local ref.
    let done = put(
        &client,
        PutStart::Resume {
            class: Default::default(),
            staging_id: "idle-1".into(),
            offset,
            checkpoint_interval: None,
        },
        &data[offset as usize..],
    )
    .await
    .unwrap();
    assert_eq!(BlobRef::decode(&done.blob_ref).unwrap(), local_ref(&data));

    drop(client);
    node.shut().await;
}
