//! One authorized identity opens uploads and holds them open, over several sessions, trying to
//! take every upload slot of the node. It gets its share (`max_uploads_per_peer`) and no more:
//! its next put is refused as busy (naming the identity's share) while another identity's put
//! runs to the local ref; once one of its own uploads ends, it may open another.
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
use net_mesh_node::proto::{Method, PutDone, PutPart};
use net_mesh_node::{NodeClient, NodeConfig};
use net_mesh_rpc::rpc::{CallOptions, ClientStreamCall};
use serde_bytes::ByteBuf;

/// Opens a put on a session of its own and sends part of its input, leaving the call open.
async fn open_upload(
    client: &NodeClient,
    id: &str,
    data: &[u8],
) -> ClientStreamCall<PutPart, PutDone> {
    let mut call = client
        .session()
        .call_client_streaming::<PutPart, PutDone>(Method::Put.name(), CallOptions::default())
        .unwrap();
    call.send(&PutPart::Start(begin(Some(id), id, 64 * 1024)))
        .await
        .unwrap();
    call.send(&PutPart::Data(ByteBuf::from(data)))
        .await
        .unwrap();
    call
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_identity_cannot_take_every_upload_slot() {
    let dir = tempfile::tempdir().unwrap();
    let (greedy, greedy_id) = identity();
    let (other, other_id) = identity();
    let config = NodeConfig {
        max_uploads: 3,
        max_uploads_per_peer: 2,
        ..NodeConfig::default()
    };
    let node = start_with(
        dir.path(),
        |_| format!("{greedy_id} write\n{other_id} write\n"),
        config,
    )
    .await;
    let data = random_bytes(300_000, 77);

    // Two uploads from the greedy identity, each on a session of its own.
    let first = client_as(greedy.clone(), &node.addr).await;
    let second = client_as(greedy.clone(), &node.addr).await;
    let held_1 = open_upload(&first, "greedy-1", &data[..100_000]).await;
    let _held_2 = open_upload(&second, "greedy-2", &data[..100_000]).await;
    let live = Arc::clone(&node.node);
    wait_until(move || live.live_uploads() == 2).await;

    // A third, on yet another session, is refused: the pool still has a slot, the
    // identity has none.
    let third = client_as(greedy.clone(), &node.addr).await;
    let err = put(
        &third,
        begin(Some("greedy-3"), "greedy-3", 64 * 1024),
        &data,
    )
    .await
    .unwrap_err();
    assert_eq!(err.class, ErrorClass::Busy, "{err}");
    assert!(err.message.contains("this identity"), "{err}");

    // Another identity gets the slot left and finishes its upload.
    let honest = client_as(other, &node.addr).await;
    let done = put(&honest, begin(Some("other-1"), "other-1", 64 * 1024), &data)
        .await
        .unwrap();
    assert_eq!(BlobRef::decode(&done.blob_ref).unwrap(), local_ref(&data));

    // One of the greedy uploads ends (its caller drops it): the identity may put again.
    drop(held_1);
    drop(first);
    let live = Arc::clone(&node.node);
    wait_until(move || live.live_uploads() == 1).await;
    let done = put(
        &third,
        begin(Some("greedy-3"), "greedy-3", 64 * 1024),
        &data,
    )
    .await
    .unwrap();
    assert_eq!(BlobRef::decode(&done.blob_ref).unwrap(), local_ref(&data));

    node.shut().await;
}
