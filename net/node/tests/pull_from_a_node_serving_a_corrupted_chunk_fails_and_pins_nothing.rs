//! Node A's store has a chunk whose payload byte was flipped in its segment file. Node B's
//! pull of that blob fails with an integrity error, and B pins nothing: no pin, and a later
//! pull from an honest node of the same blob still fetches the chunk A could not give.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::*;
use net_mesh_engine::BlobRef;
use net_mesh_engine::ErrorClass;
use net_mesh_node::NodeConfig;
use net_mesh_node::proto::{BlobSpec, PinRow};
use serde_bytes::ByteBuf;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_from_a_node_serving_a_corrupted_chunk_fails_and_pins_nothing() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let data = random_bytes(600_000, 11);
    // The blob is written to A's store, and one of its chunks damaged, before A serves.
    let (blob_ref, victim) = {
        let store = open_store(dir_a.path());
        let blob_ref = store.store(&data).unwrap().blob_ref;
        let chunks = store.blob_chunks(&blob_ref).unwrap();
        let victim = chunks[chunks.len() / 2].hash;
        flip_payload_byte(&store, &victim, 100);
        (blob_ref, victim)
    };
    assert!(matches!(blob_ref, BlobRef::Tree { .. }));

    let (user, user_id) = identity();
    let (b_identity, b_id) = identity();
    let a = start(dir_a.path(), |_| format!("{b_id} read\n")).await;
    let b = start_as(
        b_identity,
        dir_b.path(),
        |_| format!("{user_id} write\n"),
        NodeConfig::default(),
    )
    .await;
    let to_b = client_as(user, &b.addr).await;

    let err = to_b.pull(&blob_ref, &a.addr, "bad").await.unwrap_err();
    assert_eq!(err.class, ErrorClass::Integrity, "{err}");
    assert!(
        err.message
            .contains(&net_mesh_engine::class::short_hex(&victim)),
        "the error names the damaged chunk: {err}"
    );
    assert!(
        to_b.list().await.unwrap().is_empty(),
        "nothing is pinned on B"
    );
    let spec = BlobSpec::Ref(ByteBuf::from(blob_ref.encode()));
    assert!(to_b.resolve(&spec).await.unwrap().1.is_none());
    assert!(
        !b.node.store().has(&victim).unwrap(),
        "the damaged chunk never reached B's store"
    );

    // An honest source: B fetches what it still lacks, and the blob reads back right.
    let dir_c = tempfile::tempdir().unwrap();
    let c = start(dir_c.path(), |_| format!("{b_id} read\n")).await;
    open_store_via(&c, &data).await;
    let done = to_b.pull(&blob_ref, &c.addr, "good").await.unwrap();
    assert!(done.objects_fetched > 0);
    assert!(matches!(
        &to_b.list().await.unwrap()[..],
        [PinRow::Pin { name, .. }] if name == "good"
    ));
    let to_b = std::sync::Arc::new(to_b);
    let (result, bytes) = read(&to_b, &blob_ref, 0..blob_ref.size()).await;
    result.unwrap();
    assert!(bytes == data);

    drop(to_b);
    a.shut().await;
    b.shut().await;
    c.shut().await;
}

/// Stores `data` in node `c`'s store directly (the node serves what its store holds).
async fn open_store_via(c: &TestNode, data: &[u8]) {
    let store = std::sync::Arc::clone(c.node.store());
    let data = data.to_vec();
    tokio::task::spawn_blocking(move || store.store(&data).unwrap())
        .await
        .unwrap();
}
