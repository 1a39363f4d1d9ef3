//! A hostile source that says it lacks the first object a pull asks for, then never answers
//! the `stat` the pulling node asks to tell absence from damage, does not hold the pull: node
//! B gives up on it once the source has sent nothing for B's silence timeout (its
//! `send_timeout`), fails the pull as the source's (io, naming it), pins nothing, and pulls
//! again at once (its pull slots are free). The source is a fake node over real 127.0.0.1
//! sockets: `objects` answers `Missing` for every id, `stat` waits forever. Without a bound on
//! the `stat`, the pull (and a replica's fetch, which runs the same walk) waited forever.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::time::Duration;

use common::*;
use net_mesh_engine::ErrorClass;
use net_mesh_engine::codec::Hash;
use net_mesh_node::NodeConfig;
use net_mesh_node::proto::{BlobSpec, Method, ObjectPart, Stat};
use net_mesh_rpc::RpcError;
use net_mesh_rpc::rpc::{
    ResponseSink, Router, RpcContext, RpcServerStreamingHandler, RpcUnaryHandler,
};

/// Answers every object asked for as missing.
struct LacksEverything;

impl RpcServerStreamingHandler for LacksEverything {
    type Req = Vec<Hash>;
    type Resp = ObjectPart;

    async fn call(
        &self,
        _ctx: RpcContext,
        hashes: Vec<Hash>,
        mut sink: ResponseSink<ObjectPart>,
    ) -> Result<(), RpcError> {
        for hash in hashes {
            sink.send(&ObjectPart::Missing {
                hash,
                kind: 0,
                reason: "not stored here".into(),
                pinned_in: None,
            })
            .await?;
        }
        Ok(())
    }
}

/// Never answers.
struct NeverAnswers;

impl RpcUnaryHandler for NeverAnswers {
    type Req = BlobSpec;
    type Resp = Stat;

    async fn call(&self, _ctx: RpcContext, _req: BlobSpec) -> Result<Stat, RpcError> {
        std::future::pending().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_whose_source_never_answers_fails_within_its_silence_timeout_and_pins_nothing() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (user, user_id) = identity();
    let (b_identity, b_id) = identity();
    let b = start_as(
        b_identity,
        dir_b.path(),
        |_| format!("{user_id} write\n"),
        NodeConfig {
            send_timeout: Duration::from_secs(2),
            ..NodeConfig::default()
        },
    )
    .await;
    let to_b = client_as(user, &b.addr).await;

    let router = Router::new()
        .server_streaming(Method::Objects.name(), LacksEverything)
        .unary(Method::Stat.name(), NeverAnswers);
    let fake_node = FakeNode::serve(router).await;
    let fake = fake_node.addr.clone();

    // Both a Tree ref (its root node asked for first) and a Small one (its chunk).
    let tree_ref = local_ref(&random_bytes(300_000, 5));
    let small_ref = local_ref(b"a small blob");
    for (blob_ref, name) in [(&tree_ref, "tree"), (&small_ref, "small")] {
        // Bounded: without a bound on the source's silence the pull never ends.
        let pulled =
            tokio::time::timeout(Duration::from_secs(60), to_b.pull(blob_ref, &fake, name))
                .await
                .unwrap_or_else(|_| panic!("{name}: the pull from a silent source never ended"));
        let err = pulled.unwrap_err();
        assert_eq!(err.class, ErrorClass::Io, "{name}: {err}");
        assert!(
            err.message
                .contains(&format!("the source node {}", fake.node_id.to_hex()))
                && err.message.contains("sent nothing"),
            "{name}: the error names the silent source: {err}"
        );
    }
    assert!(
        to_b.list().await.unwrap().is_empty(),
        "nothing is pinned on B"
    );

    // B still pulls (its slots are free): an honest blob from a real node arrives and is pinned.
    let a = start(dir_a.path(), |_| format!("{b_id} read\n")).await;
    let honest = random_bytes(200_000, 6);
    let honest_ref = {
        let store = std::sync::Arc::clone(a.node.store());
        tokio::task::spawn_blocking(move || store.store(&honest).unwrap().blob_ref)
            .await
            .unwrap()
    };
    to_b.pull(&honest_ref, &a.addr, "honest").await.unwrap();
    assert_eq!(to_b.list().await.unwrap().len(), 1);

    drop(to_b);
    fake_node.shut().await;
    a.shut().await;
    b.shut().await;
}
