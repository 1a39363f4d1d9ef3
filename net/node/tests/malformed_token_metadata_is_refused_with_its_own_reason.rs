//! Call metadata that is not a token chain of this version — another version byte, no links,
//! a length that is not whole 169-byte tokens (the older 161-byte layout named apart), a token
//! with unknown scope bits, the largest metadata a call may carry filled with garbage — is
//! refused with `PermissionDenied` naming its own reason and counted, and the node keeps
//! serving the same session. A chain over `MAX_CHAIN_LEN` does not fit a call's metadata at
//! all: the caller cannot send it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;
mod tokens;

use common::*;
use net_mesh_node::call_token::{METADATA_VERSION, encode_metadata};
use net_mesh_rpc::frame::MAX_METADATA_LEN;
use net_mesh_rpc::rpc::ErrorKind;
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
    let good = encode_metadata(std::slice::from_ref(&token));

    let mut other_version = good.clone();
    other_version[0] = 0x02;
    let without_version = token.encode().to_vec();
    assert_eq!(without_version[0], 0x21);
    let mut unknown_scope = good.clone();
    unknown_scope[1 + OFF_SCOPE + 3] = 0x80;
    let mut largest = vec![0xa5; MAX_METADATA_LEN];
    largest[0] = METADATA_VERSION;
    let cases: [(&str, Vec<u8>); 7] = [
        ("metadata_version", other_version),
        ("metadata_version", without_version),
        ("empty_chain", vec![METADATA_VERSION]),
        ("length", good[..1 + 100].to_vec()),
        ("legacy_length", good[..1 + 161].to_vec()),
        ("malformed", unknown_scope),
        ("length", largest),
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
        ("empty_chain", 2),
        ("length", 4),
        ("legacy_length", 2),
        ("malformed", 2),
    ] {
        assert_eq!(metrics.token_refusals(reason), expected, "{reason}");
    }

    // Seven links do not fit a call's metadata: the call fails on this side, not as a grant.
    let seven = vec![token.clone(); MAX_CHAIN_LEN + 1];
    let too_long = status_with(&client, encode_metadata(&seven))
        .await
        .unwrap_err();
    assert_eq!(too_long.kind, ErrorKind::InvalidArgument, "{too_long:?}");
    assert_eq!(metrics.token_refusals("chain_too_long"), 0);

    // The session still serves a well-formed token.
    status_with(&client, good.clone()).await.unwrap();
    put_with(&client, good, begin(None, "ok", 64 * 1024), b"stored")
        .await
        .unwrap();
    assert_eq!(node.node.store().pins().unwrap().pins.len(), 1);
    node.shut().await;
}
