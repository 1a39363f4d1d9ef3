//! A client sends part of a resumable upload and vanishes (its session closes mid-stream).
//! The node's worker checkpoints and stops; `staging_state` reports the upload live with a
//! resume offset; a `PutStart::Resume` from that offset, replaying the input from there,
//! finishes to the ref a local put of the same bytes gives, and the id then reports finished.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::*;
use net_mesh_engine::BlobRef;
use net_mesh_node::proto::{PutStart, StagingState};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_whose_client_vanishes_resumes_from_the_nodes_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (user, user_id) = identity();
    let node = start(dir.path(), |_| format!("{user_id} write\n")).await;
    let data = random_bytes(3_000_000, 31);
    let sent = 2_000_000;

    let offset = vanish_mid_upload(&node, user.clone(), "vanish-1", &data, sent, 256 * 1024).await;
    assert!(
        offset > 0 && offset <= sent as u64,
        "resume offset {offset} of {sent} bytes sent"
    );
    assert_eq!(node.node.live_uploads(), 0);

    let client = client_as(user, &node.addr).await;
    let done = put(
        &client,
        PutStart::Resume {
            class: Default::default(),
            staging_id: "vanish-1".into(),
            offset,
            checkpoint_interval: None,
        },
        &data[offset as usize..],
    )
    .await
    .unwrap();
    let blob_ref = BlobRef::decode(&done.blob_ref).unwrap();
    assert_eq!(
        blob_ref,
        local_ref(&data),
        "the resumed upload gives the local ref"
    );
    assert_eq!(done.resumed_from, Some(offset));
    match client.staging_state("vanish-1").await.unwrap() {
        StagingState::Finished(finished) => assert_eq!(finished.blob_ref, done.blob_ref),
        other => panic!("{other:?}"),
    }
    assert!(client.staging_list().await.unwrap().is_empty());

    drop(client);
    node.shut().await;
}
