//! A chain root → delegate → peer, rooted at the node itself or at a trusted issuer, lets the
//! peer (whom the allow list does not serve) put and read what the last link grants. The last
//! link alone (its issuer, the delegate, is not trusted) is refused as `untrusted_issuer`, and
//! the chain presented by the delegate instead of the peer as `wrong_subject`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;
mod tokens;

use std::sync::Arc;

use common::*;
use net_mesh_engine::BlobRef;
use net_mesh_node::call_token::{DEFAULT_CHANNEL, encode_metadata, now_unix_s};
use net_mesh_rpc::Identity;
use net_mesh_rpc::token::{PermissionToken, Scope};
use tokens::*;

/// root → delegate (read, write, delegate; depth 1) → peer (write; depth 0).
fn chain(root: &Identity, delegate: &Identity, peer: &Identity) -> Vec<PermissionToken> {
    let now = now_unix_s();
    let first = PermissionToken::mint(
        root,
        claims(
            delegate,
            Scope::READ | Scope::WRITE | Scope::DELEGATE,
            now - 3600,
            now + 3600,
            1,
        ),
    )
    .unwrap();
    let second = first
        .delegate(delegate, claims(peer, Scope::WRITE, now - 60, now + 600, 0))
        .unwrap();
    vec![first, second]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delegated_chain_from_a_trusted_root_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let (node_identity, _) = identity();
    let (issuer, issuer_id) = identity();
    let (delegate, _) = identity();
    let node = start_trusting(
        node_identity.clone(),
        dir.path(),
        |_| String::new(),
        &[issuer_id],
    )
    .await;

    for (i, root) in [&node_identity, &issuer].into_iter().enumerate() {
        let (peer, _) = identity();
        let links = chain(root, &delegate, &peer);
        let delegate_client = client_as(delegate.clone(), &node.addr).await;
        let refused = status_with(&delegate_client, encode_metadata(DEFAULT_CHANNEL, &links))
            .await
            .unwrap_err();
        assert_refused_for(&refused, "wrong_subject");
        let peer_client = client_as(peer.clone(), &node.addr).await;
        let refused = status_with(&peer_client, encode_metadata(DEFAULT_CHANNEL, &links[1..]))
            .await
            .unwrap_err();
        assert_refused_for(&refused, "untrusted_issuer");
        assert!(node.node.store().pins().unwrap().pins.len() == i);

        let client = Arc::new(client_with_token(peer, &node.addr, &links).await);
        let data = random_bytes(150_000, 60 + i as u64);
        let done = put(
            &client,
            begin(None, &format!("delegated-{i}"), 64 * 1024),
            &data,
        )
        .await
        .unwrap();
        let blob_ref = BlobRef::decode(&done.blob_ref).unwrap();
        assert_eq!(blob_ref, local_ref(&data));
        let (read, bytes) = read(&client, &blob_ref, 0..data.len() as u64).await;
        assert_eq!(read.unwrap(), data.len() as u64);
        assert_eq!(bytes, data);
    }
    assert_eq!(node.node.store().pins().unwrap().pins.len(), 2);
    assert_eq!(node.node.metrics().token_refusals("wrong_subject"), 2);
    assert_eq!(node.node.metrics().token_refusals("untrusted_issuer"), 2);
    node.shut().await;
}
