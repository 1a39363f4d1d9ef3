//! A peer the allow list does not serve, trying to put with a token that must not pass —
//! expired, not yet valid, minted for another key, from an issuer the node does not trust, or
//! with a flipped signature bit — is refused with `PermissionDenied` naming that reason, each
//! counted under its own label, and nothing is stored. The node's own valid token still works
//! afterwards on the same session.
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
use net_mesh_rpc::token::{OFF_SIGNATURE, PermissionToken, Scope, TOKEN_LEN};
use tokens::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_tokens_each_name_their_reason_and_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (node_identity, _) = identity();
    let (peer, _) = identity();
    let (someone_else, _) = identity();
    let (untrusted, _) = identity();
    let node = start_trusting(node_identity.clone(), dir.path(), |_| String::new(), &[]).await;
    let client = client_as(peer.clone(), &node.addr).await;
    let now = now_unix_s();
    let write = Scope::READ | Scope::WRITE;

    let expired = PermissionToken::mint(
        &node_identity,
        claims(&peer, write, now - 7200, now - 3600, 0),
    )
    .unwrap();
    let not_yet = PermissionToken::mint(
        &node_identity,
        claims(&peer, write, now + 3600, now + 7200, 0),
    )
    .unwrap();
    let wrong_subject = mint(&node_identity, &someone_else, write);
    let untrusted_issuer = mint(&untrusted, &peer, write);
    let mut flipped = mint(&node_identity, &peer, write).encode();
    // The signature's last bit.
    const { assert!(OFF_SIGNATURE + 64 == TOKEN_LEN) };
    flipped[TOKEN_LEN - 1] ^= 0x01;
    let bad_signature = PermissionToken::decode(&flipped).unwrap();

    let cases = [
        ("expired", expired),
        ("not_yet_valid", not_yet),
        ("wrong_subject", wrong_subject),
        ("untrusted_issuer", untrusted_issuer),
        ("bad_signature", bad_signature),
    ];
    for (i, (reason, token)) in cases.iter().enumerate() {
        let metadata = encode_metadata(DEFAULT_CHANNEL, std::slice::from_ref(token));
        let data = random_bytes(100_000, 90 + i as u64);
        let refused = put_with(
            &client,
            metadata.clone(),
            begin(Some(&format!("up-{i}")), reason, 64 * 1024),
            &data,
        )
        .await
        .unwrap_err();
        assert_refused_for(&refused, reason);
        let refused = status_with(&client, metadata).await.unwrap_err();
        assert_refused_for(&refused, reason);
    }
    assert_nothing_stored(&node);
    assert_eq!(node.node.metrics().transferred(), (0, 0));

    let metrics = node.node.metrics();
    let rendered = metrics.render();
    for (reason, _) in &cases {
        assert_eq!(metrics.token_refusals(reason), 2, "{reason}: {rendered}");
        assert!(
            rendered.contains(&format!(
                "net_mesh_node_token_refusals_total{{reason=\"{reason}\"}} 2"
            )),
            "{reason}: {rendered}"
        );
    }

    // The same session with a good token: let through.
    let good = encode_metadata(DEFAULT_CHANNEL, &[mint(&node_identity, &peer, write)]);
    let done = put_with(&client, good, begin(None, "ok", 64 * 1024), b"fine")
        .await
        .unwrap();
    assert_eq!(
        net_mesh_engine::BlobRef::decode(&done.blob_ref).unwrap(),
        local_ref(b"fine")
    );
    node.shut().await;
}
