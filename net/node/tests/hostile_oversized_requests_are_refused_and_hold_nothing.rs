//! Requests past the protocol's limits: a put whose staging id is 1 MiB long (beginning or
//! resuming) is refused (usage, the id cut short in the error) before the id keys anything;
//! a put piece one byte over `MAX_PIECE` is refused
//! (usage) and the upload checkpoints what came before it and frees its worker; an `objects`
//! or `has` call naming more than `MAX_OBJECTS_PER_CALL` ids is refused before any object is
//! read or sent. An honest client on the same node is served throughout.
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
use net_mesh_node::config::MAX_OBJECTS_PER_CALL;
use net_mesh_node::proto::{
    MAX_PIECE, Method, ObjectPart, PutDone, PutPart, PutStart, StagingState,
};
use net_mesh_rpc::rpc::{CallOptions, ErrorKind};
use serde_bytes::ByteBuf;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_oversized_requests_are_refused_and_hold_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (user, user_id) = identity();
    let node = start(dir.path(), |_| format!("{user_id} write\n")).await;
    let hostile = client_as(user.clone(), &node.addr).await;
    let honest = Arc::new(client_as(user, &node.addr).await);

    let long_id = "x".repeat(1 << 20);
    let starts = [
        begin(Some(&long_id), "long", 64 * 1024),
        PutStart::Resume {
            staging_id: long_id.clone(),
            offset: 0,
            checkpoint_interval: None,
            class: Default::default(),
        },
    ];
    for start in starts {
        let mut call = hostile
            .session()
            .call_client_streaming::<PutPart, PutDone>(Method::Put.name(), CallOptions::default())
            .unwrap();
        call.send(&PutPart::Start(start)).await.unwrap();
        let err = net_mesh_node::NodeError::from_rpc(&call.finish().await.unwrap_err());
        assert_eq!(err.class, ErrorClass::Usage, "{err}");
        assert!(err.message.contains("invalid staging id"), "{err}");
        assert!(
            err.message.len() < 400,
            "the id is cut short: {} bytes",
            err.message.len()
        );
    }
    assert_eq!(node.node.bandwidth().kept_uploads(), 0);
    assert_eq!(node.node.live_uploads(), 0);

    let mut call = hostile
        .session()
        .call_client_streaming::<PutPart, PutDone>(Method::Put.name(), CallOptions::default())
        .unwrap();
    call.send(&PutPart::Start(begin(Some("big-1"), "big", 64 * 1024)))
        .await
        .unwrap();
    call.send(&PutPart::Data(ByteBuf::from(random_bytes(300_000, 1))))
        .await
        .unwrap();
    call.send(&PutPart::Data(ByteBuf::from(vec![7u8; MAX_PIECE + 1])))
        .await
        .unwrap();
    let err = net_mesh_node::NodeError::from_rpc(&call.finish().await.unwrap_err());
    assert_eq!(err.class, ErrorClass::Usage, "{err}");
    assert_eq!(node.node.live_uploads(), 0);
    assert!(matches!(
        honest.staging_state("big-1").await.unwrap(),
        StagingState::Live { .. }
    ));
    assert!(node.node.store().pins().unwrap().pins.is_empty());

    let too_many = vec![[1u8; 32]; MAX_OBJECTS_PER_CALL + 1];
    let mut stream = hostile
        .session()
        .call_server_streaming::<_, ObjectPart>(
            Method::Objects.name(),
            &too_many,
            CallOptions::default(),
        )
        .await
        .unwrap();
    let first = stream.next().await.unwrap();
    assert!(
        matches!(&first, Err(e) if e.kind == ErrorKind::InvalidArgument),
        "{first:?}"
    );
    assert_eq!(
        hostile.has(&too_many).await.unwrap_err().class,
        ErrorClass::Usage
    );
    assert_eq!(hostile.has(&too_many[..3]).await.unwrap(), vec![false; 3]);

    let data = random_bytes(500_000, 2);
    let done = put(&honest, begin(None, "fine", 64 * 1024), &data)
        .await
        .unwrap();
    let blob_ref = BlobRef::decode(&done.blob_ref).unwrap();
    let (result, bytes) = read(&honest, &blob_ref, 0..blob_ref.size()).await;
    result.unwrap();
    assert!(bytes == data);

    drop((hostile, honest));
    node.shut().await;
}
