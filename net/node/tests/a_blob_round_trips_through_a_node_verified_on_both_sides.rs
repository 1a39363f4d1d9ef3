//! A blob put through a node (a resumable staging upload on the node) reads back through it
//! verified by the client as well; a range read gives exactly its bytes; stat, list, chunks
//! and remove answer as the local store would.
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
use net_mesh_node::proto::{BlobSpec, PinRow, PutStart, Unpinned};
use serde_bytes::ByteBuf;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_round_trips_through_a_node_verified_on_both_sides() {
    let tmp = tempfile::tempdir().unwrap();
    let (client_identity, client_id) = {
        let identity = net_mesh_rpc::Identity::generate_ephemeral().unwrap();
        let id = identity.node_id();
        (identity, id)
    };
    let node = start(tmp.path(), |_| format!("{client_id} write\n")).await;
    let client = Arc::new(client_as(client_identity, &node.addr).await);
    let data = random_bytes(3_000_000, 1);

    let input = net_mesh_node::PutInput::Stream(Box::new(std::io::Cursor::new(data.clone())));
    let done = client
        .put(
            PutStart::Begin {
                class: Default::default(),
                staging_id: None,
                name: "in.bin".into(),
                chunking: None,
                tree: None,
                checkpoint_interval: Some(256 * 1024),
                name_given: false,
            },
            input,
            &mut |_| {},
        )
        .await
        .unwrap();
    let blob_ref = BlobRef::decode(&done.blob_ref).unwrap();
    assert!(matches!(blob_ref, BlobRef::Tree { .. }));
    // The node stored exactly what a local put of the same bytes gives.
    let local = tempfile::tempdir().unwrap();
    assert_eq!(
        open_store(local.path()).store(&data).unwrap().blob_ref,
        blob_ref
    );

    let read = {
        let client = Arc::clone(&client);
        let blob_ref = blob_ref.clone();
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let mut whole = Vec::new();
            client
                .read_blocking(&runtime, &blob_ref, 0..blob_ref.size(), &mut whole)
                .unwrap();
            let mut part = Vec::new();
            client
                .read_blocking(&runtime, &blob_ref, 123_456..1_234_567, &mut part)
                .unwrap();
            (whole, part)
        })
        .await
        .unwrap()
    };
    assert!(read.0 == data);
    assert!(read.1 == data[123_456..1_234_567]);

    let spec = BlobSpec::Ref(ByteBuf::from(blob_ref.encode()));
    let stat = client.stat(&spec).await.unwrap();
    assert_eq!((stat.kind.as_str(), stat.size), ("tree", data.len() as u64));
    let chunks = client.chunks(&spec).await.unwrap();
    assert_eq!(chunks.len() as u64, stat.chunks);
    let pins = client.list().await.unwrap();
    assert!(matches!(&pins[..], [PinRow::Pin { name, .. }] if name == "in.bin"));
    let prefix = net_mesh_engine::class::hex(&net_mesh_engine::index::blob_id(&blob_ref));
    let (resolved, name) = client
        .resolve(&BlobSpec::IdPrefix(prefix[..8].to_string()))
        .await
        .unwrap();
    assert_eq!((resolved, name.as_deref()), (blob_ref, Some("in.bin")));
    assert_eq!(client.remove(&spec).await.unwrap(), Unpinned::Removed);
    assert_eq!(client.remove(&spec).await.unwrap(), Unpinned::NotPinned);
    assert!(client.list().await.unwrap().is_empty());
    node.stop.cancel();
    node.task.await.unwrap();
}
