//! A peer the allow list does not serve (or serves read-only) puts and reads with a write
//! token: one issued by the node itself, one by an issuer the node was told to trust. Without
//! the token the same peers are refused, and no token is refused along the way.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;
mod tokens;

use common::*;
use net_mesh_engine::{BlobRef, ErrorClass};
use net_mesh_node::proto::PinRow;
use net_mesh_rpc::token::Scope;
use std::sync::Arc;
use tokens::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_grant_what_the_allow_list_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let (node_identity, _) = identity();
    let (issuer, issuer_id) = identity();
    let (stranger, _) = identity();
    let (vouched, _) = identity();
    let (reader, reader_id) = identity();
    let node = start_trusting(
        node_identity.clone(),
        dir.path(),
        |_| format!("{reader_id} read\n"),
        &[issuer_id],
    )
    .await;

    // Without a token: a stranger may do nothing, a reader may not put.
    let bare = client_as(stranger.clone(), &node.addr).await;
    assert_eq!(bare.status().await.unwrap_err().class, ErrorClass::Refused);
    let bare_reader = client_as(reader.clone(), &node.addr).await;
    let refused = put(&bare_reader, begin(None, "no", 64 * 1024), b"no")
        .await
        .unwrap_err();
    assert_eq!(refused.class, ErrorClass::Refused, "{refused}");
    assert!(node.node.store().pins().unwrap().pins.is_empty());

    // With a write token: from the node, from a trusted issuer, and for the read-only peer.
    let peers = [
        (
            "node-issued",
            mint(&node_identity, &stranger, Scope::WRITE),
            stranger,
        ),
        (
            "trusted-issuer",
            mint(&issuer, &vouched, Scope::WRITE),
            vouched,
        ),
        (
            "reader-upgraded",
            mint(&node_identity, &reader, Scope::WRITE),
            reader,
        ),
    ];
    for (i, (name, token, peer)) in peers.into_iter().enumerate() {
        let data = random_bytes(200_000 + i * 1000, 40 + i as u64);
        let client = Arc::new(client_with_token(peer, &node.addr, &[token]).await);
        let done = put(&client, begin(None, name, 64 * 1024), &data)
            .await
            .unwrap();
        let blob_ref = BlobRef::decode(&done.blob_ref).unwrap();
        assert_eq!(blob_ref, local_ref(&data), "{name}");
        let (read, bytes) = read(&client, &blob_ref, 0..data.len() as u64).await;
        assert_eq!(read.unwrap(), data.len() as u64, "{name}");
        assert_eq!(bytes, data, "{name}");
        let listed = client.list().await.unwrap();
        assert!(
            listed
                .iter()
                .any(|row| matches!(row, PinRow::Pin { name: n, .. } if n == name)),
            "{name}: {listed:?}"
        );
    }
    assert_eq!(node.node.store().pins().unwrap().pins.len(), 3);
    let rendered = node.node.metrics().render();
    assert!(
        !rendered.contains("net_mesh_node_token_refusals_total{"),
        "{rendered}"
    );
    node.shut().await;
}
