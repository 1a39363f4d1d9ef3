//! A client whose endpoint announces no capability tags asks for a Tree blob every way it can:
//! a read, its tree nodes through `objects`, its ref through resolve, stat and the pin list, and
//! a put (whose answer may be a Tree ref). Each is refused with a typed refusal before anything
//! is sent (no object byte leaves the node; the list withholds the ref), while a Manifest blob
//! and plain chunks still read for it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::sync::Arc;

use common::*;
use futures_util::StreamExt;
use net_mesh_engine::{BlobRef, ErrorClass};
use net_mesh_node::proto::{BlobSpec, Method, ObjectPart, PinRow, ReadRequest};
use net_mesh_rpc::rpc::{CallOptions, ErrorKind};
use serde_bytes::ByteBuf;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_without_the_tree_tag_never_receives_a_tree_ref() {
    let dir = tempfile::tempdir().unwrap();
    let tree_data = random_bytes(1_500_000, 3);
    let small_data = random_bytes(100_000, 4);
    let (tree_ref, manifest_ref, root) = {
        let store = open_store(dir.path());
        let tree_ref = store.store(&tree_data).unwrap().blob_ref;
        let manifest_ref = store.store(&small_data).unwrap().blob_ref;
        let BlobRef::Tree { root_hash, .. } = tree_ref else {
            panic!("want a Tree, got {tree_ref:?}")
        };
        assert!(matches!(manifest_ref, BlobRef::Manifest { .. }));
        (tree_ref, manifest_ref, root_hash)
    };
    let (tagless, tagless_id) = identity();
    let node = start(dir.path(), |_| format!("{tagless_id} write\n")).await;
    let client = Arc::new(tagless_client_as(tagless, &node.addr).await);
    // The node announces the tag; the client announces none.
    assert!(
        client
            .session()
            .peer()
            .capabilities()
            .contains(net_mesh_node::proto::TAG_BLOB_TREE)
    );

    // A read of the Tree: the first thing on the stream is the refusal.
    let request = ReadRequest {
        class: Default::default(),
        blob_ref: ByteBuf::from(tree_ref.encode()),
        start: 0,
        end: tree_ref.size(),
    };
    let mut stream = client
        .session()
        .call_server_streaming::<_, ObjectPart>(
            Method::Read.name(),
            &request,
            CallOptions::default(),
        )
        .await
        .unwrap();
    let first = stream.next().await.unwrap();
    assert!(
        matches!(&first, Err(e) if e.kind == ErrorKind::FailedPrecondition),
        "{first:?}"
    );
    assert!(stream.next().await.is_none());
    let (result, bytes) = read(&client, &tree_ref, 0..tree_ref.size()).await;
    assert_eq!(result.unwrap_err().class, ErrorClass::Refused);
    assert!(bytes.is_empty());

    // Its root node through `objects`, even behind a chunk that would be allowed.
    let chunk = node.node.store().blob_chunks(&manifest_ref).unwrap()[0].hash;
    let mut stream = client
        .session()
        .call_server_streaming::<_, ObjectPart>(
            Method::Objects.name(),
            &vec![chunk, root],
            CallOptions::default(),
        )
        .await
        .unwrap();
    let first = stream.next().await.unwrap();
    assert!(
        matches!(&first, Err(e) if e.kind == ErrorKind::FailedPrecondition),
        "{first:?}"
    );
    assert!(stream.next().await.is_none());
    assert_eq!(
        node.node.metrics().transferred().1,
        0,
        "no object byte was sent"
    );

    // Its ref: resolve and stat refuse, the list withholds it, a put is refused up front.
    let spec = BlobSpec::Ref(ByteBuf::from(tree_ref.encode()));
    assert_eq!(
        client.resolve(&spec).await.unwrap_err().class,
        ErrorClass::Refused
    );
    assert_eq!(
        client.stat(&spec).await.unwrap_err().class,
        ErrorClass::Refused
    );
    let tree_id = net_mesh_engine::index::blob_id(&tree_ref);
    for row in client.list().await.unwrap() {
        match row {
            PinRow::Pin {
                blob_id, blob_ref, ..
            } => {
                assert_ne!(blob_id, tree_id);
                assert!(!matches!(
                    BlobRef::decode(&blob_ref).unwrap(),
                    BlobRef::Tree { .. }
                ));
            }
            PinRow::Undecodable { blob_id, .. } => assert_eq!(blob_id, tree_id),
        }
    }
    let refused = put(&client, begin(None, "x", 1 << 20), &tree_data)
        .await
        .unwrap_err();
    assert_eq!(refused.class, ErrorClass::Refused);
    assert_eq!(
        node.node.metrics().transferred(),
        (0, 0),
        "nothing moved either way"
    );

    // A Manifest blob, and chunks alone, still go to it.
    let (result, bytes) = read(&client, &manifest_ref, 0..manifest_ref.size()).await;
    assert_eq!(result.unwrap(), small_data.len() as u64);
    assert!(bytes == small_data);
    let runtime = tokio::runtime::Handle::current();
    let objects = {
        let client = Arc::clone(&client);
        tokio::task::spawn_blocking(move || {
            let stream = client.objects_blocking(&runtime, &[chunk]).unwrap();
            let object = stream.next_object().unwrap().unwrap();
            stream.finish().unwrap();
            object
        })
        .await
        .unwrap()
    };
    assert_eq!(objects.0, chunk);
    assert!(objects.2.is_ok());

    drop(client);
    node.shut().await;
}
