//! A peer the allow list does not serve, holding a read-only token from the node, reads (its
//! status and list calls go through) but its put is refused with `PermissionDenied` naming
//! `missing_scope`, counted under that reason, and not a byte of it is stored.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;
mod tokens;

use common::*;
use net_mesh_node::call_token::{DEFAULT_CHANNEL, encode_metadata};
use net_mesh_rpc::token::Scope;
use tokens::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_token_cannot_put_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (node_identity, _) = identity();
    let (peer, _) = identity();
    let node = start_trusting(node_identity.clone(), dir.path(), |_| String::new(), &[]).await;
    let chain = [mint(&node_identity, &peer, Scope::READ)];
    let client = client_with_token(peer, &node.addr, &chain).await;

    client.status().await.unwrap();
    assert!(client.list().await.unwrap().is_empty());

    let data = random_bytes(300_000, 7);
    let refused = put_with(
        &client,
        encode_metadata(DEFAULT_CHANNEL, &chain),
        begin(Some("up-ro"), "nope", 64 * 1024),
        &data,
    )
    .await
    .unwrap_err();
    assert_refused_for(&refused, "missing_scope");
    // The typed client reports the same refusal as class Refused (CLI exit 4).
    let typed = put(&client, begin(Some("up-ro"), "nope", 64 * 1024), &data)
        .await
        .unwrap_err();
    assert_eq!(typed.class, net_mesh_engine::ErrorClass::Refused, "{typed}");
    assert!(typed.message.contains("missing_scope"), "{typed}");

    assert_nothing_stored(&node);
    let scratch = tempfile::tempdir().unwrap();
    let scratch_store = open_store(scratch.path());
    let local = scratch_store.store(&data).unwrap().blob_ref;
    for chunk in scratch_store.blob_chunks(&local).unwrap() {
        assert!(!node.node.store().has(&chunk.hash).unwrap());
    }
    assert_eq!(node.node.metrics().transferred(), (0, 0));
    assert_eq!(node.node.metrics().token_refusals("missing_scope"), 2);
    let rendered = node.node.metrics().render();
    assert!(
        rendered.contains("net_mesh_node_token_refusals_total{reason=\"missing_scope\"} 2"),
        "{rendered}"
    );
    node.shut().await;
}
