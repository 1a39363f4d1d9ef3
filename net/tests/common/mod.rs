//! Shared test fixtures: a server endpoint with test handlers, a connected client, and a raw
//! frame-level peer for protocol-violation tests.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use net_mesh::frame::Frame;
use net_mesh::handshake;
use net_mesh::rpc::{
    Config, ErrorKind, RequestStreamTyped, ResponseSink, Router, RpcClientStreamingHandler,
    RpcContext, RpcDuplexHandler, RpcServerStreamingHandler, RpcUnaryHandler,
};
use net_mesh::transport::{self, FrameReceiver, FrameSender};
use net_mesh::{Endpoint, Identity, RpcError, Session};
use tokio::net::TcpListener;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Notify, mpsc};

/// Generous bound used only to turn a hang into a failure; never asserted as a timing.
pub const HANG: Duration = Duration::from_secs(20);

pub async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(HANG, f).await.expect("test step hung")
}

/// Polls `cond` until true (hang guard only).
pub async fn eventually(mut cond: impl FnMut() -> bool) {
    within(async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

/// What handlers report back to the test.
#[derive(Clone)]
pub struct Probe {
    pub contexts: mpsc::UnboundedSender<RpcContext>,
    pub produced: Arc<AtomicUsize>,
    pub release: Arc<Notify>,
}

pub struct Echo;
impl RpcUnaryHandler for Echo {
    type Req = String;
    type Resp = String;
    async fn call(&self, _ctx: RpcContext, req: String) -> Result<String, RpcError> {
        Ok(req)
    }
}

pub struct WhoAmI;
impl RpcUnaryHandler for WhoAmI {
    type Req = ();
    type Resp = ([u8; 32], u64, [u8; 16]);
    async fn call(&self, ctx: RpcContext, _req: ()) -> Result<Self::Resp, RpcError> {
        Ok((
            *ctx.peer().node_id().as_bytes(),
            ctx.call_id(),
            ctx.trace().trace_id,
        ))
    }
}

pub struct Fail;
impl RpcUnaryHandler for Fail {
    type Req = ();
    type Resp = ();
    async fn call(&self, _ctx: RpcContext, _req: ()) -> Result<(), RpcError> {
        Err(RpcError::new(ErrorKind::NotFound, "no such thing"))
    }
}

pub struct Panics;
impl RpcUnaryHandler for Panics {
    type Req = ();
    type Resp = ();
    async fn call(&self, _ctx: RpcContext, _req: ()) -> Result<(), RpcError> {
        panic!("handler blew up on purpose")
    }
}

/// Reports its context, then waits for its token and returns the reason.
pub struct WaitForCancel(pub Probe);
impl RpcUnaryHandler for WaitForCancel {
    type Req = ();
    type Resp = ();
    async fn call(&self, ctx: RpcContext, _req: ()) -> Result<(), RpcError> {
        let _ = self.0.contexts.send(ctx.clone());
        ctx.token().cancelled().await;
        Err(RpcError::cancelled("observed"))
    }
}

/// Streams 0..n.
pub struct Count(pub Probe);
impl RpcServerStreamingHandler for Count {
    type Req = u32;
    type Resp = u32;
    async fn call(
        &self,
        ctx: RpcContext,
        n: u32,
        mut out: ResponseSink<u32>,
    ) -> Result<(), RpcError> {
        let _ = self.0.contexts.send(ctx);
        for i in 0..n {
            out.send(&i).await?;
            self.0.produced.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

/// Reports the length and first byte of every raw byte-string request.
pub struct RawLens;
impl RpcClientStreamingHandler for RawLens {
    type Req = net_mesh::rpc::RawBytes;
    type Resp = Vec<(usize, Option<u8>)>;
    async fn call(
        &self,
        _ctx: RpcContext,
        mut requests: RequestStreamTyped<net_mesh::rpc::RawBytes>,
    ) -> Result<Self::Resp, RpcError> {
        let mut all = Vec::new();
        while let Some(item) = requests.next().await {
            let item = item?;
            all.push((item.len(), item.first().copied()));
        }
        Ok(all)
    }
}

/// Collects every request (after `release` if `gated`).
pub struct Collect {
    pub probe: Probe,
    pub gated: bool,
}
impl RpcClientStreamingHandler for Collect {
    type Req = u32;
    type Resp = Vec<u32>;
    async fn call(
        &self,
        ctx: RpcContext,
        mut requests: RequestStreamTyped<u32>,
    ) -> Result<Vec<u32>, RpcError> {
        let _ = self.probe.contexts.send(ctx);
        if self.gated {
            self.probe.release.notified().await;
        }
        let mut all = Vec::new();
        while let Some(item) = requests.next().await {
            all.push(item?);
        }
        Ok(all)
    }
}

/// Echoes every request back (after `release` if `gated`); `fail_after` returns Cancelled.
pub struct EchoStream {
    pub probe: Probe,
    pub gated: bool,
}
impl RpcDuplexHandler for EchoStream {
    type Req = u32;
    type Resp = u32;
    async fn call(
        &self,
        ctx: RpcContext,
        mut requests: RequestStreamTyped<u32>,
        mut out: ResponseSink<u32>,
    ) -> Result<(), RpcError> {
        let _ = self.probe.contexts.send(ctx);
        if self.gated {
            self.probe.release.notified().await;
        }
        while let Some(item) = requests.next().await {
            let item = item?;
            if item == u32::MAX {
                return Err(RpcError::cancelled("server gave up"));
            }
            out.send(&item).await?;
            self.probe.produced.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

/// Produces `n` responses without reading requests (download side of duplex).
pub struct Flood(pub Probe);
impl RpcDuplexHandler for Flood {
    type Req = u32;
    type Resp = u32;
    async fn call(
        &self,
        ctx: RpcContext,
        _requests: RequestStreamTyped<u32>,
        mut out: ResponseSink<u32>,
    ) -> Result<(), RpcError> {
        let _ = self.0.contexts.send(ctx);
        for i in 0..10_000u32 {
            out.send(&i).await?;
            self.0.produced.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

/// Reads its request stream through the typed `Chunk` veneer and reports what it saw.
pub struct ChunkView;
impl RpcClientStreamingHandler for ChunkView {
    type Req = u32;
    type Resp = (u64, Vec<(u64, u32)>, bool);
    async fn call(
        &self,
        ctx: RpcContext,
        mut requests: RequestStreamTyped<u32>,
    ) -> Result<Self::Resp, RpcError> {
        use net_mesh::rpc::Chunk;
        let Chunk::Init { call_id, .. } = requests.next_chunk().await? else {
            return Err(RpcError::new(
                ErrorKind::Internal,
                "first chunk was not Init",
            ));
        };
        assert_eq!(call_id, ctx.call_id());
        let mut data = Vec::new();
        loop {
            match requests.next_chunk().await? {
                Chunk::Data { seq, item } => data.push((seq, item)),
                Chunk::End => break,
                Chunk::Init { .. } => {
                    return Err(RpcError::new(ErrorKind::Internal, "second Init"));
                }
            }
        }
        let end_repeats = requests.next_chunk().await? == Chunk::End;
        Ok((call_id, data, end_repeats))
    }
}

pub fn router(probe: &Probe) -> Router {
    Router::new()
        .unary("echo", Echo)
        .unary("whoami", WhoAmI)
        .unary("fail", Fail)
        .unary("panic", Panics)
        .unary("wait_cancel", WaitForCancel(probe.clone()))
        .server_streaming("count", Count(probe.clone()))
        .client_streaming(
            "collect",
            Collect {
                probe: probe.clone(),
                gated: false,
            },
        )
        .client_streaming(
            "collect_gated",
            Collect {
                probe: probe.clone(),
                gated: true,
            },
        )
        .duplex(
            "echo_stream",
            EchoStream {
                probe: probe.clone(),
                gated: false,
            },
        )
        .duplex(
            "echo_stream_gated",
            EchoStream {
                probe: probe.clone(),
                gated: true,
            },
        )
        .duplex("flood", Flood(probe.clone()))
        .client_streaming("chunk_view", ChunkView)
        .client_streaming("raw_lens", RawLens)
}

pub struct Harness {
    pub server: Endpoint,
    pub client: Endpoint,
    pub session: Session,
    pub server_session: Session,
    pub contexts: mpsc::UnboundedReceiver<RpcContext>,
    pub probe: Probe,
    pub addr: SocketAddr,
    pub listener: TcpListener,
}

pub fn probe() -> (Probe, mpsc::UnboundedReceiver<RpcContext>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let probe = Probe {
        contexts: tx,
        produced: Arc::new(AtomicUsize::new(0)),
        release: Arc::new(Notify::new()),
    };
    (probe, rx)
}

pub async fn harness_with(config: Config) -> Harness {
    let (probe, contexts) = probe();
    let server = Endpoint::new(Identity::from_seed([1; 32]), router(&probe), config.clone());
    let client = Endpoint::new(Identity::from_seed([2; 32]), Router::new(), config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (session, server_session) =
        within(async { tokio::join!(client.connect(addr), server.accept(&listener)) }).await;
    Harness {
        server,
        client,
        session: session.unwrap(),
        server_session: server_session.unwrap(),
        contexts,
        probe,
        addr,
        listener,
    }
}

pub async fn harness() -> Harness {
    harness_with(Config::default()).await
}

/// A peer that speaks frames directly (to misbehave on purpose).
pub struct RawPeer {
    pub tx: FrameSender<OwnedWriteHalf>,
    pub rx: FrameReceiver<OwnedReadHalf>,
}

impl RawPeer {
    pub async fn connect(addr: SocketAddr, seed: u8) -> RawPeer {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let id = Identity::from_seed([seed; 32]);
        let est = handshake::initiate(&mut stream, (&id).into(), None, HANG)
            .await
            .unwrap();
        let (read, write) = stream.into_split();
        let (tx, rx) = transport::split(est.transport, read, write);
        RawPeer { tx, rx }
    }

    pub async fn send(&mut self, frame: &Frame<'_>) {
        self.tx.send_frame(&frame.to_vec().unwrap()).await.unwrap();
    }

    /// Next frame, decoded into an owned debug string plus the raw bytes.
    pub async fn recv(&mut self) -> Option<Vec<u8>> {
        within(self.rx.recv_frame()).await.ok().flatten()
    }
}
