//! `chunks` of a blob whose tree lists one leaf 2^32 times through two nodes of 65,536
//! children (4 billion chunk rows from 4 objects: repeated content, or a peer's tree pulled in)
//! streams its rows as the tree is walked, on one of the node's read slots: the first rows
//! arrive at once, and a caller that stops reading and goes away stops the walk and frees
//! the slot. (Listed whole in memory first, the call never answered and the node's memory
//! grew without bound.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::*;
use futures_util::StreamExt;
use net_mesh_engine::codec::chunk_id;
use net_mesh_node::NodeConfig;
use net_mesh_node::proto::{BlobSpec, ChunkRow, Method};
use net_mesh_rpc::rpc::CallOptions;
use serde_bytes::ByteBuf;

/// Fails a step that takes longer than a minute (a hang guard, not a timing).
async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(std::time::Duration::from_secs(60), f)
        .await
        .expect("test step hung")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_of_a_blob_listing_billions_stream_and_stop_with_their_caller() {
    let dir = tempfile::tempdir().unwrap();
    let data = random_bytes(3_000, 5);
    let (huge, chunk) = {
        let store = open_store(dir.path());
        let mut importer = store.importer().unwrap();
        let mut below = (import_leaf(&mut importer, &data), data.len() as u64);
        for level in 1..=2u8 {
            below = (
                import_internal(&mut importer, level, &vec![below.0; 65_536], below.1),
                below.1 * 65_536,
            );
        }
        importer.commit().unwrap();
        drop(importer);
        let huge = tree_ref(below.0, below.1, 3);
        store.pin(&huge, "huge").unwrap();
        (huge, chunk_id(&data))
    };
    // One read slot: a listing whose worker went on after its caller left would hold it.
    let config = NodeConfig {
        max_streams: 1,
        ..NodeConfig::default()
    };
    let (user, user_id) = identity();
    let node = start_with(dir.path(), |_| format!("{user_id} read\n"), config).await;
    let client = client_as(user, &node.addr).await;

    let spec = BlobSpec::Ref(ByteBuf::from(huge.encode()));
    let mut rows = within(client.session().call_server_streaming::<_, ChunkRow>(
        Method::Chunks.name(),
        &spec,
        CallOptions::default(),
    ))
    .await
    .unwrap();
    for _ in 0..5_000 {
        let row = within(rows.next()).await.unwrap().unwrap();
        assert_eq!(row.hash, chunk);
        assert_eq!((row.size, row.stripe), (3_000, None));
    }
    drop(rows);

    // The walk stopped and gave its slot back: a listing of a small blob is served.
    let small = random_bytes(200_000, 6);
    let small_ref = {
        let store = std::sync::Arc::clone(node.node.store());
        tokio::task::spawn_blocking(move || store.store(&small).unwrap().blob_ref)
            .await
            .unwrap()
    };
    let small_spec = BlobSpec::Ref(ByteBuf::from(small_ref.encode()));
    let listed = within(async {
        loop {
            match client.chunks(&small_spec).await {
                Ok(listed) => break listed,
                Err(e) if e.class == net_mesh_engine::ErrorClass::Busy => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                Err(e) => panic!("{e}"),
            }
        }
    })
    .await;
    assert_eq!(
        listed.len() as u64,
        node.node.store().stat(&small_ref).unwrap().chunks
    );

    drop(client);
    node.shut().await;
}
