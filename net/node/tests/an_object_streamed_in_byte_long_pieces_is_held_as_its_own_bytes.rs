//! A hostile node that streams an object in pieces a byte long (each within `MAX_PIECE`, all
//! adding up to the object's length, so nothing in the stream is a lie) does not make the
//! receiving side hold a frame and a view per byte: the object arrives in a few buffers
//! holding its own bytes, and verifies. Kept as views, 100,000 one-byte pieces were 100,000
//! views (about a hundred bytes each, with their share of the frames), so a 16 MiB object —
//! the largest a stream may declare — held gigabytes on the pulling node or reading client.
//! The fake node is a real nRPC endpoint on 127.0.0.1 serving `node/v1/objects`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::sync::Arc;

use common::*;
use net_mesh_engine::codec::{Hash, chunk_id};
use net_mesh_engine::{ObjectKind, ObjectSource};
use net_mesh_node::proto::{Method, ObjectPart, PieceBytes};
use net_mesh_rpc::RpcError;
use net_mesh_rpc::rpc::{ResponseSink, Router, RpcContext, RpcServerStreamingHandler};

/// Bytes of the object, sent one per piece.
const LEN: usize = 100_000;

/// Serves one chunk, a byte per piece.
struct BytePieces {
    data: Arc<Vec<u8>>,
}

impl RpcServerStreamingHandler for BytePieces {
    type Req = Vec<Hash>;
    type Resp = ObjectPart;

    async fn call(
        &self,
        _ctx: RpcContext,
        hashes: Vec<Hash>,
        mut sink: ResponseSink<ObjectPart>,
    ) -> Result<(), RpcError> {
        for hash in hashes {
            sink.send(&ObjectPart::Object {
                hash,
                kind: ObjectKind::Chunk as u8,
                len: self.data.len() as u32,
            })
            .await?;
            for byte in self.data.iter() {
                sink.send(&ObjectPart::Piece(PieceBytes::from(vec![*byte])))
                    .await?;
            }
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_streamed_in_byte_long_pieces_is_held_as_its_own_bytes() {
    let data = Arc::new(random_bytes(LEN, 17));
    let hash = chunk_id(&data);

    let router = Router::new().server_streaming(
        Method::Objects.name(),
        BytePieces {
            data: Arc::clone(&data),
        },
    );
    let fake_node = FakeNode::serve(router).await;
    let fake = fake_node.addr.clone();
    let client = client(&fake).await.0;

    let runtime = tokio::runtime::Handle::current();
    let (parts, client) = tokio::task::spawn_blocking(move || {
        let stream = client.objects_blocking(&runtime, &[hash]).unwrap();
        let parts = stream.chunk_to_use(&hash).unwrap();
        stream.finish().unwrap();
        drop(stream);
        (parts, client)
    })
    .await
    .unwrap();

    assert!(
        parts.len() <= 2,
        "an object of {LEN} one-byte pieces is held in {} buffers",
        parts.len()
    );
    let joined: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
    assert!(joined == *data, "the object's bytes arrive as sent");
    assert_eq!(chunk_id(&joined), hash);

    drop(client);
    fake_node.shut().await;
}
