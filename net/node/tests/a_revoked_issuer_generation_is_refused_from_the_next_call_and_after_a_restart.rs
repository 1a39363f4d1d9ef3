//! `token_revoke` raises an issuer's generation floor: the token it revokes, accepted a call
//! earlier, is refused as `revoked_generation` on the very next call of the same session and
//! stores nothing; a token at the floor is still accepted; the floor never goes down; only an
//! admin may revoke; and a node restarted on the same store still refuses the revoked token.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;
mod tokens;

use common::*;
use net_mesh_node::call_token::{DEFAULT_CHANNEL, encode_metadata, now_unix_s};
use net_mesh_rpc::Identity;
use net_mesh_rpc::rpc::ErrorKind;
use net_mesh_rpc::token::{PermissionToken, Scope};
use tokens::*;

fn token(issuer: &Identity, subject: &Identity, generation: u32) -> PermissionToken {
    let now = now_unix_s();
    let mut claims = claims(subject, Scope::READ | Scope::WRITE, now - 60, now + 3600, 0);
    claims.issuer_generation = generation;
    PermissionToken::mint(issuer, claims).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_issuer_generation_is_refused_from_the_next_call_and_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (node_identity, _) = identity();
    let (issuer, issuer_id) = identity();
    let (admin, admin_id) = identity();
    let (peer, _) = identity();
    let allow = move |_| format!("{admin_id} admin\n");
    let node = start_trusting(node_identity.clone(), dir.path(), allow, &[issuer_id]).await;

    let old = encode_metadata(DEFAULT_CHANNEL, &[token(&issuer, &peer, 0)]);
    let new = encode_metadata(DEFAULT_CHANNEL, &[token(&issuer, &peer, 1)]);
    let peer_client = client_as(peer.clone(), &node.addr).await;
    status_with(&peer_client, old.clone()).await.unwrap();

    // A token holder with write cannot revoke; the floor stays where it was.
    let writer = client_with_token(peer.clone(), &node.addr, &[token(&issuer, &peer, 0)]).await;
    let refused = writer.token_revoke(&issuer_id, 5).await.unwrap_err();
    assert_eq!(
        refused.class,
        net_mesh_engine::ErrorClass::Refused,
        "{refused}"
    );
    status_with(&peer_client, old.clone()).await.unwrap();

    let admin_client = client_as(admin.clone(), &node.addr).await;
    assert_eq!(admin_client.token_revoke(&issuer_id, 1).await.unwrap(), 1);
    let refused = status_with(&peer_client, old.clone()).await.unwrap_err();
    assert_refused_for(&refused, "revoked_generation");
    let refused = put_with(
        &peer_client,
        old.clone(),
        begin(None, "old", 64 * 1024),
        b"bytes",
    )
    .await
    .unwrap_err();
    assert_refused_for(&refused, "revoked_generation");
    assert_nothing_stored(&node);
    status_with(&peer_client, new.clone()).await.unwrap();

    // Floors only rise: revoking below 0 keeps 1.
    assert_eq!(admin_client.token_revoke(&issuer_id, 0).await.unwrap(), 1);
    assert_refused_for(
        &status_with(&peer_client, old.clone()).await.unwrap_err(),
        "revoked_generation",
    );

    drop((peer_client, writer, admin_client));
    let handle = std::sync::Arc::clone(&node.node);
    node.shut().await;
    wait_until(|| std::sync::Arc::strong_count(&handle) == 1).await;
    drop(handle);
    let node = start_trusting(
        node_identity,
        dir.path(),
        move |_| format!("{admin_id} admin\n"),
        &[issuer_id],
    )
    .await;
    let peer_client = client_as(peer, &node.addr).await;
    let refused = status_with(&peer_client, old).await.unwrap_err();
    assert_eq!(refused.kind, ErrorKind::PermissionDenied);
    assert_refused_for(&refused, "revoked_generation");
    status_with(&peer_client, new).await.unwrap();
    node.shut().await;
}
