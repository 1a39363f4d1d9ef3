//! A real node whose store has a flipped byte in one chunk of a blob: a client's verified read
//! of the blob fails with an integrity error naming that chunk, the sink holds only a prefix of
//! the true bytes, and a range read that does not touch the chunk still succeeds.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::sync::Arc;

use common::*;
use net_mesh_engine::ErrorClass;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_a_tampered_store_gives_an_integrity_error_and_no_wrong_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let data = random_bytes(900_000, 81);
    let (blob_ref, victim, victim_start) = {
        let store = open_store(dir.path());
        let blob_ref = store.store(&data).unwrap().blob_ref;
        let chunks = store.blob_chunks(&blob_ref).unwrap();
        let at = chunks.len() / 2;
        let start: u64 = chunks[..at].iter().map(|c| u64::from(c.size)).sum();
        flip_payload_byte(&store, &chunks[at].hash, 3);
        (blob_ref, chunks[at].hash, start)
    };
    let (user, user_id) = identity();
    let node = start(dir.path(), |_| format!("{user_id} read\n")).await;
    let client = Arc::new(client_as(user, &node.addr).await);

    let (result, sink) = read(&client, &blob_ref, 0..blob_ref.size()).await;
    let err = result.unwrap_err();
    assert_eq!(err.class, ErrorClass::Integrity, "{err}");
    assert!(
        err.message
            .contains(&net_mesh_engine::class::short_hex(&victim)),
        "{err}"
    );
    assert!(sink.len() as u64 <= victim_start && data.starts_with(&sink));

    let (result, sink) = read(&client, &blob_ref, 0..victim_start).await;
    assert_eq!(result.unwrap(), victim_start);
    assert!(sink == data[..victim_start as usize]);

    drop(client);
    node.shut().await;
}
