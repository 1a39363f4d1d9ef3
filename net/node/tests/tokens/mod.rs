//! Permission tokens for the node's tests: a node that trusts chosen issuers besides itself,
//! tokens minted for a chosen subject and window, puts and status calls that carry raw call
//! metadata, and the node's refusal counters.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::Path;

use net_mesh_node::call_token::{DEFAULT_CHANNEL, now_unix_s};
use net_mesh_node::proto::{Method, PutDone, PutPart, PutStart, Status};
use net_mesh_node::{Allow, NodeClient, NodeConfig};
use net_mesh_rpc::rpc::{CallOptions, ErrorKind};
use net_mesh_rpc::token::{PermissionToken, Scope, TokenChannel, TokenClaims};
use net_mesh_rpc::{Identity, NodeAddr, NodeId, RpcError};
use serde_bytes::ByteBuf;

use crate::common::{TestNode, start_allowing};

/// Starts a node on `dir` as `identity`, with allow-file text `allow(own id)`, trusting
/// `trusted` issuers besides itself.
pub async fn start_trusting(
    identity: Identity,
    dir: &Path,
    allow: impl FnOnce(NodeId) -> String,
    trusted: &[NodeId],
) -> TestNode {
    let id = identity.node_id();
    let allow = trusted
        .iter()
        .fold(Allow::parse(id, &allow(id)).unwrap(), |allow, issuer| {
            allow.trust(*issuer)
        });
    start_allowing(identity, dir, allow, NodeConfig::default()).await
}

/// Claims for `subject` on channel `default`, valid `from`..=`until` (Unix seconds).
pub fn claims(subject: &Identity, scope: Scope, from: u64, until: u64, depth: u8) -> TokenClaims {
    TokenClaims {
        subject: subject.public_key().to_bytes(),
        scope,
        channel: TokenChannel::named(DEFAULT_CHANNEL),
        issuer_generation: 0,
        not_before: from,
        not_after: until,
        delegation_depth: depth,
        nonce: net_mesh_rpc::token::fresh_nonce().unwrap(),
    }
}

/// A token from `issuer` for `subject` with `scope`, valid from an hour ago for an hour.
pub fn mint(issuer: &Identity, subject: &Identity, scope: Scope) -> PermissionToken {
    let now = now_unix_s();
    PermissionToken::mint(issuer, claims(subject, scope, now - 3600, now + 3600, 0)).unwrap()
}

/// A client connected as `identity` whose every call carries `chain`.
pub async fn client_with_token(
    identity: Identity,
    addr: &NodeAddr,
    chain: &[PermissionToken],
) -> NodeClient {
    NodeClient::connect(identity, addr)
        .await
        .unwrap()
        .with_token(chain)
}

/// A status call carrying `metadata`.
pub async fn status_with(client: &NodeClient, metadata: Vec<u8>) -> Result<Status, RpcError> {
    client
        .session()
        .call_unary(
            Method::Status.name(),
            &(),
            CallOptions::default().metadata(metadata),
        )
        .await
}

/// A whole put of `data` as one call carrying `metadata`.
pub async fn put_with(
    client: &NodeClient,
    metadata: Vec<u8>,
    start: PutStart,
    data: &[u8],
) -> Result<PutDone, RpcError> {
    let mut call = client
        .session()
        .call_client_streaming::<PutPart, PutDone>(
            Method::Put.name(),
            CallOptions::default().metadata(metadata),
        )
        .unwrap();
    // A refused call may fail any of these; the refusal is what `finish` reports.
    let _ = call.send(&PutPart::Start(start)).await;
    let _ = call
        .send(&PutPart::Data(ByteBuf::from(data.to_vec())))
        .await;
    call.finish().await
}

/// Asserts `error` is a permission refusal whose message names `reason`.
pub fn assert_refused_for(error: &RpcError, reason: &str) {
    assert_eq!(error.kind, ErrorKind::PermissionDenied, "{error:?}");
    assert!(
        error
            .message
            .contains(&format!("permission token refused: {reason}:")),
        "expected reason {reason}: {}",
        error.message
    );
}

/// Asserts the node stores nothing: no pins, no staging uploads.
pub fn assert_nothing_stored(node: &TestNode) {
    assert!(node.node.store().pins().unwrap().pins.is_empty());
    assert!(
        net_mesh_staging::list_staging(node.node.store())
            .unwrap()
            .is_empty()
    );
}
