//! Pinned dialing: a dial that names the node it must reach fails with a typed
//! `UnexpectedPeer` when another node answers, and the wrong node receives nothing but the
//! dialer's ephemeral key (message 1): not its identity. `NODEID@HOST:PORT` addresses dial
//! pinned.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use common::*;
use net_mesh_rpc::handshake::{self, HandshakeError};
use net_mesh_rpc::rpc::{Config, Metrics, Router, SessionError};
use net_mesh_rpc::{Endpoint, Identity, NodeAddr};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Counts the bytes read through it.
struct Counting<S> {
    inner: S,
    read: Arc<AtomicUsize>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counting<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.read
            .fetch_add(buf.filled().len() - before, Ordering::SeqCst);
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counting<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[tokio::test]
async fn another_node_answering_is_refused_before_the_dialer_identifies_itself() {
    let expected = Identity::from_seed([0xaa; 32]).node_id();
    let impostor = Identity::from_seed([0xbb; 32]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = Endpoint::new(
        Identity::from_seed([2; 32]),
        Router::new(),
        Config::default(),
    );

    let read = Arc::new(AtomicUsize::new(0));
    let responder = {
        let read = read.clone();
        async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut counting = Counting {
                inner: stream,
                read,
            };
            handshake::respond(&mut counting, (&impostor).into(), HANG).await
        }
    };
    let (dialed, responded) =
        within(async { tokio::join!(client.connect_pinned(addr, Some(expected)), responder) })
            .await;
    match dialed {
        Err(SessionError::Handshake(HandshakeError::UnexpectedPeer { expected: e, found })) => {
            assert_eq!(e, expected);
            assert_eq!(found, Identity::from_seed([0xbb; 32]).node_id());
        }
        other => panic!("expected UnexpectedPeer, got {other:?}"),
    }
    // The impostor's handshake never completes: it got message 1 (2-byte length + the 32-byte
    // ephemeral key) and then the connection closed.
    assert!(
        matches!(responded, Err(HandshakeError::Io(_))),
        "{responded:?}"
    );
    assert_eq!(read.load(Ordering::SeqCst), 2 + 32);
    assert_eq!(Metrics::get(&client.metrics().sessions_opened), 0);
}

#[tokio::test]
async fn node_addresses_dial_pinned() {
    let h = harness().await;
    let serving = {
        let server = h.server.clone();
        let listener = h.listener;
        tokio::spawn(async move {
            let stop = tokio_util::sync::CancellationToken::new();
            server.serve(listener, stop).await
        })
    };
    let right: NodeAddr = format!("{}@{}", h.server.identity().node_id(), h.addr)
        .parse()
        .unwrap();
    let session = within(h.client.connect_node(&right)).await.unwrap();
    assert_eq!(session.peer().node_id(), h.server.identity().node_id());
    honest_round(&session).await;
    let wrong: NodeAddr = format!("{}@{}", Identity::from_seed([3; 32]).node_id(), h.addr)
        .parse()
        .unwrap();
    let err = within(h.client.connect_node(&wrong)).await.unwrap_err();
    assert!(
        matches!(
            err,
            SessionError::Handshake(HandshakeError::UnexpectedPeer { .. })
        ),
        "{err}"
    );
    serving.abort();
}
