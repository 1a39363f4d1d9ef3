//! A node that lies — a flipped byte in a chunk or a tree node, another object than the one
//! asked for, pieces that do not add up, an object the read never asked for, an object
//! reported missing, a stream cut short, a data-loss error — makes the client's verified read
//! fail with an integrity error, and the sink never receives a byte that is not the blob's
//! (what it received is a prefix of the true bytes). The fake node is a real nRPC endpoint on
//! 127.0.0.1 serving `node/v1/read` from a real store, with one lie applied to the stream.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::future::Future;
use std::sync::Arc;

use common::*;
use net_mesh_engine::{BlobRef, ErrorClass, ObjectKind, Store};
use net_mesh_node::proto::{Method, ObjectPart, PieceBytes, ReadRequest};
use net_mesh_rpc::rpc::{
    Config, ErrorKind, ResponseSink, Router, RpcContext, RpcServerStreamingHandler,
};
use net_mesh_rpc::{Endpoint, NodeAddr, RpcError};
use serde_bytes::ByteBuf;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy)]
enum Lie {
    FlipChunk,
    FlipNode,
    SwapObject,
    PiecesOverrun,
    ExtraObject,
    ReportMissing,
    CutShort,
    DataLossError,
}

/// One answer of the honest read, as the fake node holds it before lying.
type Answer = ([u8; 32], u8, Vec<u8>);

struct LyingRead {
    store: Arc<Store>,
    lie: Lie,
}

fn parts(hash: [u8; 32], kind: u8, bytes: &[u8]) -> Vec<ObjectPart> {
    let mut out = vec![ObjectPart::Object {
        hash,
        kind,
        len: bytes.len() as u32,
    }];
    out.extend(
        bytes
            .chunks(1000)
            .map(|p| ObjectPart::Piece(PieceBytes::from(p.to_vec()))),
    );
    out
}

impl LyingRead {
    /// The honest answers of a read, in the order the read asked for them.
    fn answers(&self, req: &ReadRequest) -> Vec<Answer> {
        let blob_ref = BlobRef::decode(&req.blob_ref).unwrap();
        let mut answers = Vec::new();
        self.store
            .read_objects(&blob_ref, req.start..req.end, &mut |hash, kind, answer| {
                answers.push((*hash, kind as u8, answer.unwrap().to_vec()));
                true
            })
            .unwrap();
        answers
    }

    /// The stream with the lie applied; `Err` ends it with that error.
    fn stream(&self, req: &ReadRequest) -> (Vec<ObjectPart>, Option<RpcError>) {
        let mut answers = self.answers(req);
        let chunk = ObjectKind::Chunk as u8;
        let second_chunk = answers
            .iter()
            .enumerate()
            .filter(|(_, a)| a.1 == chunk)
            .nth(1)
            .map(|(i, _)| i)
            .unwrap();
        let mut out = Vec::new();
        let mut error = None;
        match self.lie {
            Lie::FlipChunk => answers[second_chunk].2[10] ^= 1,
            Lie::FlipNode => {
                let node = answers.iter().position(|a| a.1 != chunk).unwrap();
                let last = answers[node].2.len() - 1;
                answers[node].2[last] ^= 1;
            }
            Lie::SwapObject => {
                let other = answers[second_chunk + 1].clone();
                answers[second_chunk] = other;
            }
            Lie::CutShort => answers.truncate(second_chunk),
            Lie::DataLossError => {
                answers.truncate(second_chunk);
                error = Some(RpcError::new(ErrorKind::DataLoss, "my disk is bad"));
            }
            Lie::PiecesOverrun | Lie::ExtraObject | Lie::ReportMissing => {}
        }
        for (i, (hash, kind, bytes)) in answers.iter().enumerate() {
            if i == second_chunk {
                match self.lie {
                    Lie::PiecesOverrun => {
                        out.push(ObjectPart::Object {
                            hash: *hash,
                            kind: *kind,
                            len: bytes.len() as u32,
                        });
                        out.push(ObjectPart::Piece(PieceBytes::from(
                            bytes[..bytes.len() - 5].to_vec(),
                        )));
                        out.push(ObjectPart::Piece(PieceBytes::from(vec![0u8; 10])));
                        continue;
                    }
                    Lie::ReportMissing => {
                        out.push(ObjectPart::Missing {
                            hash: *hash,
                            kind: *kind,
                            reason: "lost it".into(),
                            pinned_in: None,
                        });
                        continue;
                    }
                    _ => {}
                }
            }
            out.extend(parts(*hash, *kind, bytes));
        }
        if let Lie::ExtraObject = self.lie {
            let (hash, kind, bytes) = answers[second_chunk].clone();
            out.extend(parts(hash, kind, &bytes));
        }
        (out, error)
    }
}

impl RpcServerStreamingHandler for LyingRead {
    type Req = ReadRequest;
    type Resp = ObjectPart;

    fn call(
        &self,
        _ctx: RpcContext,
        req: ReadRequest,
        mut sink: ResponseSink<ObjectPart>,
    ) -> impl Future<Output = Result<(), RpcError>> + Send {
        let (parts, error) = self.stream(&req);
        async move {
            for part in &parts {
                sink.send(part).await?;
            }
            error.map_or(Ok(()), Err)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_node_gives_an_integrity_error_and_no_wrong_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let data = random_bytes(700_000, 71);
    let store = Arc::new(open_store(dir.path()));
    let blob_ref = store.store(&data).unwrap().blob_ref;
    assert!(matches!(blob_ref, BlobRef::Tree { .. }));

    for lie in [
        Lie::FlipChunk,
        Lie::FlipNode,
        Lie::SwapObject,
        Lie::PiecesOverrun,
        Lie::ExtraObject,
        Lie::ReportMissing,
        Lie::CutShort,
        Lie::DataLossError,
    ] {
        let (identity, id) = identity();
        let router = Router::new().server_streaming(
            Method::Read.name(),
            LyingRead {
                store: Arc::clone(&store),
                lie,
            },
        );
        let config = Config {
            capabilities: net_mesh_node::client::client_capabilities(),
            ..Config::default()
        };
        let endpoint = Endpoint::new(identity, router, config);
        let (listener, local) = net_mesh_node::bind("127.0.0.1:0").await.unwrap();
        let stop = CancellationToken::new();
        let serving = tokio::spawn({
            let stop = stop.clone();
            async move { endpoint.serve(listener, stop).await }
        });
        let addr = NodeAddr {
            node_id: id,
            host_port: local.to_string(),
        };
        let client = Arc::new(client(&addr).await.0);

        let (result, sink) = read(&client, &blob_ref, 0..blob_ref.size()).await;
        let err = result.unwrap_err();
        assert_eq!(err.class, ErrorClass::Integrity, "{lie:?}: {err}");
        assert!(
            data.starts_with(&sink),
            "{lie:?}: the sink got {} bytes that are not a prefix of the blob",
            sink.len()
        );
        drop(client);
        stop.cancel();
        serving.await.unwrap();
    }

    // The honest answers the lies were made from read in full (the lies above are the only
    // reason those reads failed).
    let honest = LyingRead {
        store: Arc::clone(&store),
        lie: Lie::FlipChunk,
    };
    let req = ReadRequest {
        class: Default::default(),
        blob_ref: ByteBuf::from(blob_ref.encode()),
        start: 0,
        end: blob_ref.size(),
    };
    let mut answers = honest.answers(&req);
    let mut rebuilt = Vec::new();
    let source = Replay(std::cell::RefCell::new(
        std::mem::take(&mut answers).into_iter(),
    ));
    net_mesh_engine::fetch_range_from(&source, &blob_ref, 0..blob_ref.size(), &mut rebuilt)
        .unwrap();
    assert!(rebuilt == data);
}

/// The honest answers replayed as an object source.
struct Replay(std::cell::RefCell<std::vec::IntoIter<Answer>>);

impl net_mesh_engine::ObjectSource for Replay {
    fn object(
        &self,
        hash: &[u8; 32],
        _kind: ObjectKind,
        what: &'static str,
    ) -> Result<bytes::Bytes, net_mesh_engine::BlobError> {
        match self.0.borrow_mut().next() {
            Some((h, _, bytes)) if h == *hash => Ok(bytes.into()),
            _ => Err(net_mesh_engine::BlobError::Missing { hash: *hash, what }),
        }
    }
}
