//! Node B pulls a blob from node A over a real session: B asks only for the objects it lacks
//! (a blob sharing half its chunks is already on B), verifies each, pins the blob, and reads it
//! back verified; pulling again moves nothing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::sync::Arc;

use common::*;
use net_mesh_engine::BlobRef;
use net_mesh_node::NodeConfig;
use net_mesh_node::proto::{BlobSpec, PinRow};
use serde_bytes::ByteBuf;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_fetches_only_missing_objects_and_a_second_pull_fetches_none() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (user, user_id) = identity();
    let (b_identity, b_id) = identity();
    let a = start(dir_a.path(), |_| format!("{user_id} write\n{b_id} read\n")).await;
    let b = start_as(
        b_identity,
        dir_b.path(),
        |_| format!("{user_id} write\n"),
        NodeConfig::default(),
    )
    .await;
    let data = random_bytes(2_000_000, 7);

    let to_a = client_as(user.clone(), &a.addr).await;
    let done = put(&to_a, begin(None, "whole", 1 << 20), &data)
        .await
        .unwrap();
    let blob_ref = BlobRef::decode(&done.blob_ref).unwrap();
    assert!(matches!(blob_ref, BlobRef::Tree { .. }));
    let spec = BlobSpec::Ref(ByteBuf::from(blob_ref.encode()));
    let chunks_total = to_a.stat(&spec).await.unwrap().chunks;

    // B already holds a blob made of the first half of the same bytes.
    let to_b = Arc::new(client_as(user, &b.addr).await);
    put(&to_b, begin(None, "half", 1 << 20), &data[..1_000_000])
        .await
        .unwrap();

    let first = to_b.pull(&blob_ref, &a.addr, "pulled").await.unwrap();
    assert!(first.objects_fetched > 0);
    assert!(
        first.objects_fetched < chunks_total,
        "B asked for {} objects of a blob of {chunks_total} chunks, half of which it had",
        first.objects_fetched
    );
    assert!(first.bytes_fetched < data.len() as u64);

    let (read, bytes) = read(&to_b, &blob_ref, 0..blob_ref.size()).await;
    assert_eq!(read.unwrap(), data.len() as u64);
    assert!(bytes == data, "B serves the pulled bytes, verified");
    let pins = to_b.list().await.unwrap();
    assert!(
        pins.iter()
            .any(|p| matches!(p, PinRow::Pin { name, .. } if name == "pulled"))
    );

    let second = to_b.pull(&blob_ref, &a.addr, "pulled").await.unwrap();
    assert_eq!((second.objects_fetched, second.bytes_fetched), (0, 0));

    drop((to_a, to_b));
    a.shut().await;
    b.shut().await;
}
