//! `RpcContext::with_trace`: a handler that calls another node on behalf of its own call passes
//! the trace id on in the call header, with its own span as the parent, and what is left of its
//! deadline.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

use common::*;
use net_mesh_rpc::rpc::{CallOptions, Config, Router, RpcContext, RpcUnaryHandler, TraceContext};
use net_mesh_rpc::{Endpoint, Identity, RpcError, Session};

/// Reports the trace and whether a deadline arrived.
struct Observe;
impl RpcUnaryHandler for Observe {
    type Req = ();
    type Resp = ([u8; 16], [u8; 8], Option<u128>);
    async fn call(&self, ctx: RpcContext, _req: ()) -> Result<Self::Resp, RpcError> {
        let left = ctx.deadline().map(|d| {
            d.saturating_duration_since(tokio::time::Instant::now())
                .as_millis()
        });
        Ok((ctx.trace().trace_id, ctx.trace().span_id, left))
    }
}

/// Calls `observe` on the next node with `ctx.with_trace(..)`.
struct Relay(Session);
impl RpcUnaryHandler for Relay {
    type Req = ();
    type Resp = ([u8; 16], [u8; 8], Option<u128>);
    async fn call(&self, ctx: RpcContext, _req: ()) -> Result<Self::Resp, RpcError> {
        self.0
            .call_unary("observe", &(), ctx.with_trace([0x77; 8]))
            .await
    }
}

#[tokio::test]
async fn a_relayed_call_carries_the_trace_and_the_remaining_deadline() {
    let config = Config::default();
    let c = Endpoint::new(
        Identity::from_seed([3; 32]),
        Router::new().unary("observe", Observe),
        config.clone(),
    );
    let listener_c = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr_c = listener_c.local_addr().unwrap();
    let b_dials = Endpoint::new(Identity::from_seed([2; 32]), Router::new(), config.clone());
    let (b_to_c, _) =
        within(async { tokio::join!(b_dials.connect(addr_c), c.accept(&listener_c)) }).await;
    let b = Endpoint::new(
        Identity::from_seed([2; 32]),
        Router::new().unary("relay", Relay(b_to_c.unwrap())),
        config.clone(),
    );
    let listener_b = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr_b = listener_b.local_addr().unwrap();
    let a = Endpoint::new(Identity::from_seed([1; 32]), Router::new(), config);
    let (a_to_b, _) =
        within(async { tokio::join!(a.connect(addr_b), b.accept(&listener_b)) }).await;
    let trace = TraceContext {
        trace_id: [0x42; 16],
        span_id: [0x01; 8],
    };
    let opts = CallOptions::with_timeout(Duration::from_secs(30)).trace(trace);
    let (trace_id, parent, left) = within(
        a_to_b
            .unwrap()
            .call_unary::<(), ([u8; 16], [u8; 8], Option<u128>)>("relay", &(), opts),
    )
    .await
    .unwrap();
    assert_eq!(trace_id, [0x42; 16], "the trace id travelled two hops");
    assert_eq!(parent, [0x77; 8], "the relay's span is the parent");
    let left = left.expect("the deadline travelled");
    assert!(left <= 30_000 && left > 0, "{left} ms left");
}
