//! Capability tags are part of each side's signed handshake payload: both ends of a session
//! learn the other's tags (e.g. `dataforts.blob_tree_v3`) from the authenticated peer.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use net_mesh_rpc::rpc::{Config, Router};
use net_mesh_rpc::{Capabilities, Endpoint, Identity};

#[tokio::test]
async fn each_side_sees_the_tags_the_other_signed() {
    let tree = Capabilities::new(["dataforts.blob_tree_v3", "net-mesh.node.v1"]).unwrap();
    let server = Endpoint::new(
        Identity::from_seed([1; 32]),
        Router::new(),
        Config {
            capabilities: tree.clone(),
            ..Config::default()
        },
    );
    let client = Endpoint::new(
        Identity::from_seed([2; 32]),
        Router::new(),
        Config::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (c, s) =
        within(async { tokio::join!(client.connect(addr), server.accept(&listener)) }).await;
    let (c, s) = (c.unwrap(), s.unwrap());
    assert_eq!(c.peer().capabilities(), &tree);
    assert!(c.peer().capabilities().contains("dataforts.blob_tree_v3"));
    assert!(s.peer().capabilities().is_empty());
    assert!(!s.peer().capabilities().contains("dataforts.blob_tree_v3"));
}
