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
use net_mesh_rpc::frame::Frame;
use net_mesh_rpc::handshake;
use net_mesh_rpc::rpc::{
    Config, ErrorKind, RawBytes, RequestStreamTyped, ResponseSink, Router,
    RpcClientStreamingHandler, RpcContext, RpcDuplexHandler, RpcServerStreamingHandler,
    RpcUnaryHandler,
};
use net_mesh_rpc::transport::{self, FrameReceiver, FrameSender};
use net_mesh_rpc::{Endpoint, Identity, RpcError, Session};
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
    /// Calls the `bounded` handler has run.
    pub answered: Arc<AtomicUsize>,
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
    type Req = net_mesh_rpc::rpc::RawBytes;
    type Resp = Vec<(usize, Option<u8>)>;
    async fn call(
        &self,
        _ctx: RpcContext,
        mut requests: RequestStreamTyped<net_mesh_rpc::rpc::RawBytes>,
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
        use net_mesh_rpc::rpc::Chunk;
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
        .server_streaming("firehose", Firehose)
        .unary("stubborn", Stubborn)
        .unary("hold_budget", HoldsAnswerBudget)
        .unary("bounded", Bounded(probe.answered.clone()))
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
        answered: Arc::new(AtomicUsize::new(0)),
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

// ---------------------------------------------------------------- hostile-peer helpers

/// Descriptors this process has open right now.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Resets this process's peak resident set (`VmHWM`) to its current size.
pub fn reset_peak_rss() {
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
}

/// This process's peak resident set since the last reset, in bytes.
pub fn peak_rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// This process's current resident set, in bytes.
pub fn current_rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// Tasks alive on the current tokio runtime.
pub fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// An honest client's round of calls: a unary echo and a short server stream, all correct.
pub async fn honest_round(session: &Session) {
    let out: String = within(session.call_unary(
        "echo",
        &"honest".to_string(),
        net_mesh_rpc::rpc::CallOptions::default(),
    ))
    .await
    .unwrap();
    assert_eq!(out, "honest");
    let mut stream = within(session.call_server_streaming::<u32, u32>(
        "count",
        &50,
        net_mesh_rpc::rpc::CallOptions::default(),
    ))
    .await
    .unwrap();
    for i in 0..50u32 {
        assert_eq!(within(stream.next()).await.unwrap().unwrap(), i);
    }
    assert!(within(stream.next()).await.is_none());
}

/// A server running `Endpoint::serve` on 127.0.0.1.
pub struct Served {
    pub server: Endpoint,
    pub addr: SocketAddr,
    pub stop: tokio_util::sync::CancellationToken,
    pub task: tokio::task::JoinHandle<()>,
    pub probe: Probe,
    pub contexts: mpsc::UnboundedReceiver<RpcContext>,
}

pub async fn serve_with(config: Config) -> Served {
    let (probe, contexts) = probe();
    let server = Endpoint::new(Identity::from_seed([1; 32]), router(&probe), config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let task = {
        let server = server.clone();
        let stop = stop.clone();
        tokio::spawn(async move { server.serve(listener, stop).await })
    };
    Served {
        server,
        addr,
        stop,
        task,
        probe,
        contexts,
    }
}

/// Connects an honest client from `source` (e.g. 127.0.0.2, so per-address caps on 127.0.0.1
/// do not apply to it).
pub async fn honest_client_from(source: [u8; 4], addr: SocketAddr, config: Config) -> Session {
    let client = Endpoint::new(Identity::from_seed([2; 32]), Router::new(), config);
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((source, 0))).unwrap();
    let stream = within(socket.connect(addr)).await.unwrap();
    within(client.connect_stream(stream, None)).await.unwrap()
}

/// Server-streams 1 MiB messages until cancelled.
pub struct Firehose;
impl RpcServerStreamingHandler for Firehose {
    type Req = ();
    type Resp = net_mesh_rpc::rpc::RawBytes;
    async fn call(
        &self,
        _ctx: RpcContext,
        _req: (),
        mut out: ResponseSink<net_mesh_rpc::rpc::RawBytes>,
    ) -> Result<(), RpcError> {
        let blob = net_mesh_rpc::rpc::RawBytes::from(vec![7u8; 1 << 20]);
        loop {
            out.send(&blob).await?;
        }
    }
}

/// Ignores its token: waits until released (by its request string), then echoes.
#[derive(Clone, Default)]
pub struct Gate {
    pub started: Arc<std::sync::Mutex<Vec<String>>>,
    pub gates: Arc<std::sync::Mutex<std::collections::HashMap<String, Arc<Notify>>>>,
}
impl Gate {
    pub fn gate(&self, name: &str) -> Arc<Notify> {
        self.gates
            .lock()
            .unwrap()
            .entry(name.to_string())
            .or_default()
            .clone()
    }
}
impl RpcUnaryHandler for Gate {
    type Req = String;
    type Resp = String;
    async fn call(&self, _ctx: RpcContext, req: String) -> Result<String, RpcError> {
        let gate = self.gate(&req);
        self.started.lock().unwrap().push(req.clone());
        gate.notified().await;
        Ok(req)
    }
}

/// Ignores its token and never returns (it is dropped after the cancel grace).
/// The most bytes `bounded` answers: its declared [`RpcUnaryHandler::max_answer_bytes`].
pub const BOUNDED_ANSWER: usize = 1 << 20;

/// Answers a request of `n` with `n` bytes (a `Vec<u8>`), declaring answers of at most
/// [`BOUNDED_ANSWER`]; counts the calls it ran.
pub struct Bounded(pub Arc<AtomicUsize>);
impl RpcUnaryHandler for Bounded {
    type Req = u32;
    type Resp = Vec<u8>;
    async fn call(&self, _ctx: RpcContext, n: u32) -> Result<Vec<u8>, RpcError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(vec![7; n as usize])
    }
    fn max_answer_bytes(&self) -> usize {
        BOUNDED_ANSWER
    }
}

/// Takes [`HELD_ANSWER`] bytes of send budget for its answer before it runs (as
/// `max_answer_bytes` says), then never answers: the budget stays taken until it is cancelled.
pub struct HoldsAnswerBudget;
pub const HELD_ANSWER: usize = 3 << 20;
impl RpcUnaryHandler for HoldsAnswerBudget {
    type Req = ();
    type Resp = Vec<u8>;
    async fn call(&self, _ctx: RpcContext, _req: ()) -> Result<Vec<u8>, RpcError> {
        std::future::pending().await
    }
    fn max_answer_bytes(&self) -> usize {
        HELD_ANSWER
    }
}

pub struct Stubborn;
impl RpcUnaryHandler for Stubborn {
    type Req = ();
    type Resp = ();
    async fn call(&self, _ctx: RpcContext, _req: ()) -> Result<(), RpcError> {
        std::future::pending().await
    }
}

pub fn unary_header(method: &str) -> net_mesh_rpc::frame::CallHeader<'_> {
    net_mesh_rpc::frame::CallHeader {
        kind: net_mesh_rpc::frame::CallKind::Unary,
        timeout_us: 0,
        trace: net_mesh_rpc::frame::TraceContext::default(),
        response_window: 0,
        method,
        metadata: &[],
    }
}

impl RawPeer {
    /// Reads frames until the session ends, returning how many arrived.
    pub async fn drain(mut self) -> usize {
        let mut n = 0;
        while let Ok(Some(_)) = self.rx.recv_frame().await {
            n += 1;
        }
        n
    }
}

/// One mebibyte.
pub const MIB: usize = 1024 * 1024;

/// Streams `n` messages of 1 MiB.
pub struct MibDownload;
impl RpcServerStreamingHandler for MibDownload {
    type Req = u32;
    type Resp = RawBytes;
    async fn call(
        &self,
        _ctx: RpcContext,
        n: u32,
        mut out: ResponseSink<RawBytes>,
    ) -> Result<(), RpcError> {
        for i in 0..n {
            out.send(&RawBytes::from(vec![i as u8; MIB])).await?;
        }
        Ok(())
    }
}

/// Takes every message and answers with the bytes received.
pub struct CountingUpload;
impl RpcClientStreamingHandler for CountingUpload {
    type Req = RawBytes;
    type Resp = u64;
    async fn call(
        &self,
        _ctx: RpcContext,
        mut requests: RequestStreamTyped<RawBytes>,
    ) -> Result<u64, RpcError> {
        let mut total = 0u64;
        while let Some(item) = requests.next().await {
            total += item?.len() as u64;
        }
        Ok(total)
    }
}

/// The storage node's per-call windows and session budgets (net-mesh-node
/// `NodeConfig::default()`), with an endpoint receive budget of `node_recv_budget` bytes.
pub fn node_like(node_recv_budget: usize) -> Config {
    let window = 2 * MIB + 64 * 1024;
    Config {
        call_window: window as u32,
        min_call_window: (MIB + 64 * 1024) as u32,
        call_send_budget: window,
        session_recv_budget: 16 * MIB,
        session_send_budget: 16 * MIB,
        node_recv_budget,
        node_send_budget: 64 * MIB,
        ..Config::default()
    }
}

/// A chunk frame's message list holding one message.
pub fn one_message(message: &[u8]) -> Vec<u8> {
    let mut list = Vec::new();
    net_mesh_rpc::frame::encode_messages(&[message], &mut list);
    list
}
