//! The router's authorization hook sees the session's authenticated peer, the method and the
//! call's metadata (room for a 169-byte permission token) before anything is granted: a refused
//! call gets a typed `PermissionDenied` as its first and only frame, no request window, no
//! handler, no reserved bytes; an allowed one runs normally and its handler sees the metadata.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use net_mesh_rpc::frame::{CallHeader, CallKind, ErrorKind, Frame, MAX_METADATA_LEN, TraceContext};
use net_mesh_rpc::rpc::{
    CallOptions, Config, Denied, Metrics, RequestStreamTyped, Router, RpcClientStreamingHandler,
    RpcContext,
};
use net_mesh_rpc::{Endpoint, Identity, NodeId, PeerIdentity, RpcError};

const TOKEN: [u8; 169] = [0x5a; 169];

/// Sums a stream of u32 and reports the metadata it was called with.
struct Sum;
impl RpcClientStreamingHandler for Sum {
    type Req = u32;
    type Resp = (u64, Vec<u8>);
    async fn call(
        &self,
        ctx: RpcContext,
        mut requests: RequestStreamTyped<u32>,
    ) -> Result<Self::Resp, RpcError> {
        let mut sum = 0u64;
        while let Some(item) = futures_util::StreamExt::next(&mut requests).await {
            sum += u64::from(item?);
        }
        Ok((sum, ctx.metadata().to_vec()))
    }
}

#[tokio::test]
async fn refused_calls_get_permission_denied_before_any_window() {
    let allowed: NodeId = Identity::from_seed([2; 32]).node_id();
    let seen: Arc<Mutex<Vec<(NodeId, String, usize)>>> = Arc::default();
    let hook = {
        let seen = seen.clone();
        move |peer: &PeerIdentity, method: &str, metadata: &[u8]| {
            seen.lock()
                .unwrap()
                .push((peer.node_id(), method.to_string(), metadata.len()));
            if peer.node_id() != allowed {
                return Err(Denied::new(format!(
                    "{} is not on the list",
                    peer.node_id()
                )));
            }
            if metadata != TOKEN {
                return Err(Denied::new("a valid token is required"));
            }
            Ok(())
        }
    };
    let router = Router::new().client_streaming("sum", Sum).authorize(hook);
    let server = Endpoint::new(Identity::from_seed([1; 32]), router, Config::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();

    // The allowed identity, with the token: served, and the handler sees the token.
    let client = Endpoint::new(
        Identity::from_seed([2; 32]),
        Router::new(),
        Config::default(),
    );
    let (session, _) =
        within(async { tokio::join!(client.connect(addr), server.accept(&listener)) }).await;
    let session = session.unwrap();
    let mut call = session
        .call_client_streaming::<u32, (u64, Vec<u8>)>(
            "sum",
            CallOptions::default().metadata(TOKEN.to_vec()),
        )
        .unwrap();
    for i in 1..=10 {
        call.send(&i).await.unwrap();
    }
    let (sum, metadata) = within(call.finish()).await.unwrap();
    assert_eq!(sum, 55);
    assert_eq!(metadata, TOKEN);

    // The allowed identity without the token: typed PermissionDenied at the caller.
    let mut call = session
        .call_client_streaming::<u32, (u64, Vec<u8>)>("sum", CallOptions::default())
        .unwrap();
    let err = within(call.send(&1)).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::PermissionDenied, "{err}");
    assert!(err.message.contains("token"), "{err}");

    // Metadata beyond the bound is refused locally, before anything is sent.
    let err = session
        .call_client_streaming::<u32, (u64, Vec<u8>)>(
            "sum",
            CallOptions::default().metadata(vec![0; MAX_METADATA_LEN + 1]),
        )
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidArgument, "{err}");

    // Another identity, even with the token: the only frame it gets is the refusal, and the
    // server reserved nothing for it.
    let (peer, attacked) =
        within(async { tokio::join!(RawPeer::connect(addr, 9), server.accept(&listener)) }).await;
    let (mut peer, attacked) = (peer, attacked.unwrap());
    let header = CallHeader {
        kind: CallKind::ClientStreaming,
        timeout_us: 0,
        trace: TraceContext::default(),
        response_window: 0,
        method: "sum",
        metadata: &TOKEN,
    };
    peer.send(&Frame::RequestInit { call_id: 3, header }).await;
    let first = peer.recv().await.unwrap();
    match Frame::decode(&first).unwrap() {
        Frame::ResponseError {
            call_id: 3,
            kind: ErrorKind::PermissionDenied,
            message,
        } => assert!(message.contains("not on the list"), "{message}"),
        other => panic!("expected PermissionDenied first, got {other:?}"),
    }
    assert_eq!(attacked.served_calls(), 0);
    assert_eq!(attacked.running_handlers(), 0);
    assert_eq!(attacked.recv_bytes_held(), 0);
    assert_eq!(Metrics::get(&server.metrics().authorization_refusals), 2);

    // The hook saw the authenticated peers, never an id from a payload.
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0], (allowed, "sum".to_string(), 169));
    assert_eq!(seen[2].0, Identity::from_seed([9; 32]).node_id());
}
