//! A hostile source that says it lacks one of a blob's objects with a reason a megabyte long
//! fails the walk as an integrity error naming the object, and the error quotes at most
//! `MAX_QUOTED_REASON` bytes of the reason: a replica logs that error on every retry of its
//! fetch (backing off to 5 s), and a source's reason may be as long as a frame (16 MiB).
//! The source is a fake node over real 127.0.0.1 sockets serving `node/v1/objects` from a
//! real store, except one chunk; the walk is the one pulls and replicas run (`fetch_blob`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::sync::Arc;

use common::*;
use net_mesh_engine::codec::Hash;
use net_mesh_engine::{BlobRef, ErrorClass, Store};
use net_mesh_node::proto::{MAX_PIECE, Method, ObjectPart, PieceBytes};
use net_mesh_node::pull::{MAX_QUOTED_REASON, fetch_blob};
use net_mesh_rpc::RpcError;
use net_mesh_rpc::rpc::{ResponseSink, Router, RpcContext, RpcServerStreamingHandler};
use tokio_util::sync::CancellationToken;

/// Bytes of the reason the source gives for the chunk it lacks.
const REASON_LEN: usize = 1 << 20;

/// Serves objects from `store`, except `lacks`: missing, for a reason `REASON_LEN` long.
struct LongWinded {
    store: Arc<Store>,
    lacks: Hash,
}

impl RpcServerStreamingHandler for LongWinded {
    type Req = Vec<Hash>;
    type Resp = ObjectPart;

    async fn call(
        &self,
        _ctx: RpcContext,
        hashes: Vec<Hash>,
        mut sink: ResponseSink<ObjectPart>,
    ) -> Result<(), RpcError> {
        for hash in hashes {
            if hash == self.lacks {
                sink.send(&ObjectPart::Missing {
                    hash,
                    kind: 0,
                    // Two-byte characters after one byte: a cut at an even length
                    // falls inside one.
                    reason: format!("x{}", "é".repeat(REASON_LEN / 2)),
                    pinned_in: None,
                })
                .await?;
                continue;
            }
            let object = self.store.read_object(&hash).unwrap();
            sink.send(&ObjectPart::Object {
                hash,
                kind: object.kind as u8,
                len: object.bytes.len() as u32,
            })
            .await?;
            for piece in object.bytes.chunks(MAX_PIECE) {
                sink.send(&ObjectPart::Piece(PieceBytes::from(piece.to_vec())))
                    .await?;
            }
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_lacking_an_object_for_a_frame_long_reason_is_quoted_in_a_few_hundred_bytes() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let store = Arc::new(open_store(dir_a.path()));
    let blob_ref = store.store(&random_bytes(300_000, 23)).unwrap().blob_ref;
    assert!(matches!(blob_ref, BlobRef::Tree { .. }));
    let chunks = store.blob_chunks(&blob_ref).unwrap();
    let lacks = chunks[chunks.len() / 2].hash;

    let router = Router::new().server_streaming(
        Method::Objects.name(),
        LongWinded {
            store: Arc::clone(&store),
            lacks,
        },
    );
    let fake_node = FakeNode::serve(router).await;
    let fake = fake_node.addr.clone();
    let client = client(&fake).await.0;

    let runtime = tokio::runtime::Handle::current();
    let dir = dir_b.path().to_path_buf();
    let (fetched, client) = tokio::task::spawn_blocking(move || {
        let pulling = open_store(&dir);
        let mut importer = pulling.importer().unwrap();
        let fetched = fetch_blob(
            &mut importer,
            &client,
            &runtime,
            &CancellationToken::new(),
            &blob_ref,
            &mut |_| {},
        );
        drop(importer);
        (fetched, client)
    })
    .await
    .unwrap();

    let err = fetched.unwrap_err();
    let start: String = err.message.chars().take(300).collect();
    assert_eq!(err.class, ErrorClass::Integrity, "{start}");
    assert!(
        err.message
            .contains(&net_mesh_engine::class::short_hex(&lacks)),
        "the error names the object the source lacks"
    );
    assert!(
        err.message.contains("xéééé"),
        "the error quotes the reason's start: {start}"
    );
    assert!(
        err.message.len() <= MAX_QUOTED_REASON + 200,
        "the error quotes {} bytes of the source's {REASON_LEN}-byte reason",
        err.message.len()
    );

    drop(client);
    fake_node.shut().await;
}
