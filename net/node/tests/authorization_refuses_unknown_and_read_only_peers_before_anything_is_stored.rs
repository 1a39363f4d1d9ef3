//! Every call is checked against the allow list on the session's authenticated peer before it
//! gets a window: an identity the node does not know is refused everything, a read-only one
//! is refused every write and admin method, a writer is refused the admin ones, with
//! `PermissionDenied` (class Refused); a refused put stores nothing at all.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::*;
use futures_util::StreamExt;
use net_mesh_engine::ErrorClass;
use net_mesh_node::NodeClient;
use net_mesh_node::proto::{CallKind, Method, PutPart, Role};
use net_mesh_rpc::RpcError;
use net_mesh_rpc::rpc::{CallOptions, ErrorKind};

/// Calls `method` with an empty request in its call kind; the error it failed with, if any.
async fn call_empty(client: &NodeClient, method: Method) -> Option<RpcError> {
    let session = client.session();
    let name = method.name();
    match method.kind() {
        CallKind::Unary => session
            .call_unary::<(), ()>(name, &(), CallOptions::default())
            .await
            .err(),
        CallKind::ServerStreaming => {
            let mut stream = match session
                .call_server_streaming::<(), ()>(name, &(), CallOptions::default())
                .await
            {
                Ok(stream) => stream,
                Err(e) => return Some(e),
            };
            stream.next().await.and_then(Result::err)
        }
        CallKind::ClientStreaming => {
            let call = session
                .call_client_streaming::<PutPart, ()>(name, CallOptions::default())
                .unwrap();
            call.finish().await.err()
        }
    }
}

/// Checks every method against `role` (`None`: not allowed at all).
async fn check_roles(client: &NodeClient, role: Option<Role>) {
    for method in Method::ALL {
        let error = call_empty(client, method).await;
        let denied = matches!(&error, Some(e) if e.kind == ErrorKind::PermissionDenied);
        let allowed = role.is_some_and(|r| r >= method.role());
        assert_eq!(
            denied,
            !allowed,
            "{} with role {role:?}: {error:?}",
            method.name()
        );
        if denied {
            let e = net_mesh_node::NodeError::from_rpc(&error.unwrap());
            assert_eq!(e.class, ErrorClass::Refused);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_refuses_unknown_and_read_only_peers_before_anything_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (reader, reader_id) = identity();
    let (writer, writer_id) = identity();
    let (admin, admin_id) = identity();
    let (stranger, _) = identity();
    let node = start(dir.path(), |_| {
        format!("# roles\n{reader_id} read\n{writer_id} write\n{admin_id} admin\n")
    })
    .await;
    let data = random_bytes(300_000, 21);

    // A read-only peer's put: refused, and not a byte of it is stored.
    let reader = client_as(reader, &node.addr).await;
    let refused = put(&reader, begin(Some("up-1"), "nope", 64 * 1024), &data)
        .await
        .unwrap_err();
    assert_eq!(refused.class, ErrorClass::Refused, "{refused}");
    assert!(node.node.store().pins().unwrap().pins.is_empty());
    assert!(
        net_mesh_staging::list_staging(node.node.store())
            .unwrap()
            .is_empty()
    );
    let local = local_ref(&data);
    let scratch = tempfile::tempdir().unwrap();
    let scratch_store = open_store(scratch.path());
    scratch_store.store(&data).unwrap();
    for chunk in scratch_store.blob_chunks(&local).unwrap() {
        assert!(!node.node.store().has(&chunk.hash).unwrap());
    }
    assert_eq!(node.node.metrics().transferred(), (0, 0));

    // Roles, method by method.
    let stranger = client_as(stranger, &node.addr).await;
    check_roles(&stranger, None).await;
    check_roles(&reader, Some(Role::Read)).await;
    let writer = client_as(writer, &node.addr).await;
    check_roles(&writer, Some(Role::Write)).await;
    let admin = client_as(admin, &node.addr).await;
    check_roles(&admin, Some(Role::Admin)).await;
    assert!(node.node.store().pins().unwrap().pins.is_empty());

    // The same put from the writer lands, with the local ref.
    let done = put(&writer, begin(Some("up-1"), "yes", 64 * 1024), &data)
        .await
        .unwrap();
    assert_eq!(
        net_mesh_engine::BlobRef::decode(&done.blob_ref).unwrap(),
        local
    );
    let metrics = node.node.render_metrics();
    assert!(
        metrics.contains("net_mesh_node_authorization_refusals_total{method=\"node/v1/put\"}"),
        "{metrics}"
    );

    drop((reader, writer, admin, stranger));
    node.shut().await;
}
