//! Call metadata that is not a channel and token chain of this version — another version byte,
//! a missing or invalid channel name, a length that is not whole 169-byte tokens (the older
//! 161-byte layout named apart), a token with unknown scope bits, the largest metadata a call
//! may carry filled with garbage, a chain over `MAX_CHAIN_LEN` links — is refused with
//! `PermissionDenied` naming its own reason and counted, and the node keeps serving the same
//! session.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;
mod tokens;

use common::*;
use net_mesh_node::call_token::{DEFAULT_CHANNEL, METADATA_VERSION, encode_metadata};
use net_mesh_rpc::frame::MAX_METADATA_LEN;
use net_mesh_rpc::token::{MAX_CHAIN_LEN, OFF_SCOPE, Scope};
use tokens::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_token_metadata_is_refused_with_its_own_reason() {
    let dir = tempfile::tempdir().unwrap();
    // The seed of the §5.5 golden root: its public key opens with 0x21, so the bare chain's
    // first byte is not a version this node reads.
    let node_identity = net_mesh_rpc::Identity::from_seed([0x42; 32]);
    let (peer, _) = identity();
    let node = start_trusting(node_identity.clone(), dir.path(), |_| String::new(), &[]).await;
    let client = client_as(peer.clone(), &node.addr).await;
    let token = mint(&node_identity, &peer, Scope::READ | Scope::WRITE);
    let good = encode_metadata(DEFAULT_CHANNEL, std::slice::from_ref(&token));
    // Version, length and `default`: the chain starts after these.
    let head = 2 + DEFAULT_CHANNEL.len();

    let mut other_version = good.clone();
    other_version[0] = 0x01;
    let without_version = token.encode().to_vec();
    assert_eq!(without_version[0], 0x21);
    let mut unknown_scope = good.clone();
    unknown_scope[head + OFF_SCOPE + 3] = 0x80;
    let mut largest = vec![0xa5; MAX_METADATA_LEN];
    largest[..head].copy_from_slice(&good[..head]);
    let seven = [
        vec![METADATA_VERSION, DEFAULT_CHANNEL.len() as u8],
        DEFAULT_CHANNEL.as_bytes().to_vec(),
        token.encode().repeat(MAX_CHAIN_LEN + 1),
    ]
    .concat();
    let cases: [(&str, Vec<u8>); 9] = [
        ("metadata_version", other_version),
        ("metadata_version", without_version),
        ("channel", vec![METADATA_VERSION]),
        ("channel", b"\x02\x01*".to_vec()),
        ("length", good[..head + 100].to_vec()),
        ("legacy_length", good[..head + 161].to_vec()),
        ("malformed", unknown_scope),
        ("length", largest),
        ("chain_too_long", seven),
    ];
    for (reason, metadata) in &cases {
        let refused = status_with(&client, metadata.clone()).await.unwrap_err();
        assert_refused_for(&refused, reason);
        let refused = put_with(
            &client,
            metadata.clone(),
            begin(None, reason, 64 * 1024),
            b"not stored",
        )
        .await
        .unwrap_err();
        assert_refused_for(&refused, reason);
    }
    assert_nothing_stored(&node);
    let metrics = node.node.metrics();
    for (reason, expected) in [
        ("metadata_version", 4),
        ("channel", 4),
        ("length", 4),
        ("legacy_length", 2),
        ("malformed", 2),
        ("chain_too_long", 2),
    ] {
        assert_eq!(metrics.token_refusals(reason), expected, "{reason}");
    }

    // The session still serves a well-formed token.
    status_with(&client, good.clone()).await.unwrap();
    put_with(&client, good, begin(None, "ok", 64 * 1024), b"stored")
        .await
        .unwrap();
    assert_eq!(node.node.store().pins().unwrap().pins.len(), 1);
    node.shut().await;
}
