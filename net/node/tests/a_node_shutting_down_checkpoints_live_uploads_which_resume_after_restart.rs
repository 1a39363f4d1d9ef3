//! A node stops (its stop token fires) while an upload is streaming into it: the upload's
//! worker checkpoints before `serve` returns, nothing is left running, and a node restarted on
//! the same data dir resumes the upload from its checkpoint to the local ref.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::sync::Arc;

use common::*;
use net_mesh_engine::{BlobRef, ErrorClass};
use net_mesh_node::NodeConfig;
use net_mesh_node::proto::{Method, PutDone, PutPart, PutStart, StagingState};
use net_mesh_rpc::rpc::CallOptions;
use serde_bytes::ByteBuf;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_shutting_down_checkpoints_live_uploads_which_resume_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (user, user_id) = identity();
    let (node_identity, _) = identity();
    let allow = |_| format!("{user_id} write\n");
    let node = start_as(
        node_identity.clone(),
        dir.path(),
        allow,
        NodeConfig::default(),
    )
    .await;
    let data = random_bytes(1_200_000, 61);

    let client = client_as(user.clone(), &node.addr).await;
    let mut call = client
        .session()
        .call_client_streaming::<PutPart, PutDone>(Method::Put.name(), CallOptions::default())
        .unwrap();
    call.send(&PutPart::Start(begin(
        Some("stop-1"),
        "stopping",
        64 * 1024,
    )))
    .await
    .unwrap();
    call.send(&PutPart::Data(ByteBuf::from(&data[..700_000])))
        .await
        .unwrap();
    let live = Arc::clone(&node.node);
    wait_until(move || live.live_uploads() == 1).await;

    let handle = Arc::clone(&node.node);
    node.shut().await;
    assert_eq!(
        handle.live_uploads(),
        0,
        "serve returned after the upload stopped"
    );
    let ended = call.finish().await.unwrap_err();
    assert_ne!(
        net_mesh_node::NodeError::from_rpc(&ended).class,
        ErrorClass::Integrity
    );
    assert!(
        handle.store().pins().unwrap().pins.is_empty(),
        "nothing finished"
    );
    drop(client);
    // The store closes when the last call of the stopped node has let go of it.
    wait_until(|| Arc::strong_count(&handle) == 1).await;
    drop(handle);

    let node = start_as(node_identity, dir.path(), allow, NodeConfig::default()).await;
    let client = client_as(user, &node.addr).await;
    let offset = match client.staging_state("stop-1").await.unwrap() {
        StagingState::Live { resume_offset } => resume_offset,
        other => panic!("{other:?}"),
    };
    let done = put(
        &client,
        PutStart::Resume {
            class: Default::default(),
            staging_id: "stop-1".into(),
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
