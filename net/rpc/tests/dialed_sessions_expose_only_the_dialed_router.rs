//! Calls travel both ways on a session, so what an endpoint exposes to the peers it dials is
//! set on its own: by default nothing (the dialed peer gets `UnknownMethod` for every call,
//! including the methods the endpoint serves to peers that dial it), or exactly the router
//! given to `with_dialed_router`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use net_mesh_rpc::rpc::{CallOptions, Config, ErrorKind, Router};
use net_mesh_rpc::{Endpoint, Identity};

async fn dial(a: &Endpoint, b: &Endpoint) -> net_mesh_rpc::Session {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_, b_side) = within(async { tokio::join!(a.connect(addr), b.accept(&listener)) }).await;
    b_side.unwrap()
}

#[tokio::test]
async fn a_dialed_peer_reaches_only_the_dialed_router() {
    let (probe, _contexts) = probe();
    // A serves its full router to peers that dial it.
    let a = Endpoint::new(
        Identity::from_seed([1; 32]),
        router(&probe),
        Config::default(),
    );
    let b = Endpoint::new(
        Identity::from_seed([2; 32]),
        Router::new(),
        Config::default(),
    );

    // A dials B: B calls back on that session and reaches nothing.
    let back = dial(&a, &b).await;
    let err =
        within(back.call_unary::<String, String>("echo", &"x".to_string(), CallOptions::default()))
            .await
            .unwrap_err();
    assert_eq!(err.kind, ErrorKind::UnknownMethod);

    // With a dialed router, B reaches exactly that.
    let a = a.with_dialed_router(Router::new().unary("whoami", WhoAmI));
    let back = dial(&a, &b).await;
    let (peer, _, _): ([u8; 32], u64, [u8; 16]) =
        within(back.call_unary("whoami", &(), CallOptions::default()))
            .await
            .unwrap();
    assert_eq!(&peer, b.identity().node_id().as_bytes());
    let err =
        within(back.call_unary::<String, String>("echo", &"x".to_string(), CallOptions::default()))
            .await
            .unwrap_err();
    assert_eq!(err.kind, ErrorKind::UnknownMethod);
}
