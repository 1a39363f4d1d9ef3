//! nRPC benchmarks with a tonic gRPC baseline in the same run.
//!
//! nRPC runs over real encrypted sessions (TCP loopback + Noise XX, AES-256-GCM). The tonic
//! baseline runs **plaintext HTTP/2 over loopback** (no TLS) with a hand-written raw-bytes codec
//! and service (no protobuf codegen), so it does strictly less work per byte than nRPC, and it is
//! tuned the way a user moving bulk data would tune it: adaptive HTTP/2 flow-control windows
//! (BDP estimation) on both ends and 1 MiB HTTP/2 frames. Both stacks use the same TCP
//! congestion control in every compared pair: `reno` on both (the default rows) or the host's
//! default on both (`-host-cc` rows). Every upload checks, on both stacks, that the server
//! counted every byte. Both share one tokio runtime (2 worker threads). Each upload row runs on
//! fresh connections of its own on both stacks, not on those other rows used. Adaptive windows
//! are tonic's better setting here: with them off and static windows of 8 MiB (stream) and
//! 16 MiB (connection), its 1 MiB upload took 4.6–5.3 ms against 2.5–3.8 ms (2026-12-05).
//!
//! Besides criterion's own output, the run prints `SUMMARY ...` lines with p50/p99 latencies
//! (from individually timed calls) and writes them to `target/nrpc-bench-summary.txt`.
//! Run: `cargo bench -p net-mesh-rpc --bench nrpc -- --warm-up-time 1 --measurement-time 3`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "benchmark harness: a failure should abort the run loudly"
)]

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes};
use criterion::{BenchmarkId, Criterion, Throughput};
use futures_core::Stream;
use futures_util::StreamExt;
use net_mesh_rpc::rpc::{
    CallOptions, Config, Metrics, RawBytes, RequestStreamTyped, ResponseSink, Router,
    RpcClientStreamingHandler, RpcContext, RpcDuplexHandler, RpcServerStreamingHandler,
    RpcUnaryHandler,
};
use net_mesh_rpc::{Endpoint, Identity, RpcError, Session};
use serde::{Deserialize, Serialize};
use tokio::runtime::Runtime;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http;

// ---------------------------------------------------------------- nRPC side

#[derive(Serialize, Deserialize)]
struct Blob(#[serde(with = "serde_bytes")] Vec<u8>);

struct Echo;
impl RpcUnaryHandler for Echo {
    type Req = Blob;
    type Resp = Blob;
    async fn call(&self, _ctx: RpcContext, req: Blob) -> Result<Blob, RpcError> {
        Ok(req)
    }
}

struct Upload;
impl RpcClientStreamingHandler for Upload {
    // Wire-identical to `Blob`; received without a deserialize copy (like tonic's `Bytes`).
    type Req = RawBytes;
    type Resp = u64;
    async fn call(
        &self,
        _ctx: RpcContext,
        mut reqs: RequestStreamTyped<RawBytes>,
    ) -> Result<u64, RpcError> {
        let mut total = 0u64;
        while let Some(blob) = reqs.next().await {
            total += blob?.len() as u64;
        }
        Ok(total)
    }
}

struct EchoStream;
impl RpcDuplexHandler for EchoStream {
    type Req = Blob;
    type Resp = Blob;
    async fn call(
        &self,
        _ctx: RpcContext,
        mut reqs: RequestStreamTyped<Blob>,
        mut out: ResponseSink<Blob>,
    ) -> Result<(), RpcError> {
        while let Some(blob) = reqs.next().await {
            out.send(&blob?).await?;
        }
        Ok(())
    }
}

struct Firehose;
impl RpcServerStreamingHandler for Firehose {
    type Req = ();
    type Resp = Blob;
    async fn call(
        &self,
        _ctx: RpcContext,
        _req: (),
        mut out: ResponseSink<Blob>,
    ) -> Result<(), RpcError> {
        let blob = Blob(vec![7; 1024]);
        loop {
            out.send(&blob).await?;
        }
    }
}

struct Nrpc {
    server: Endpoint,
    client: Session,
    server_session: Session,
}

/// TCP congestion control of the default rows, on both stacks (the host default here is BBR,
/// whose paced sends reorder bulk loopback traffic; see net/rpc/BENCHMARKS.md). The `-host-cc`
/// rows use the host default on both stacks.
const CONGESTION: &str = "reno";

/// The nRPC endpoints' settings: defaults, except the congestion control.
fn bench_config(congestion: Option<&str>) -> Config {
    Config {
        tcp_congestion: congestion.map(str::to_string),
        ..Config::default()
    }
}

/// Sets TCP_NODELAY and (when given) the congestion control on a tonic socket, the same options
/// nRPC's sessions get.
fn tune_tonic_socket(stream: &tokio::net::TcpStream, congestion: Option<&str>) {
    let _ = stream.set_nodelay(true);
    if let Some(name) = congestion {
        socket2::SockRef::from(stream)
            .set_tcp_congestion(name.as_bytes())
            .unwrap();
    }
}

async fn nrpc_setup(config: Config) -> Nrpc {
    let router = Router::new()
        .unary("echo", Echo)
        .client_streaming("upload", Upload)
        .duplex("echo_stream", EchoStream)
        .server_streaming("firehose", Firehose);
    let server = Endpoint::new(Identity::from_seed([1; 32]), router, config.clone());
    let client = Endpoint::new(Identity::from_seed([2; 32]), Router::new(), config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (c, s) = tokio::join!(client.connect(addr), server.accept(&listener));
    Nrpc {
        server,
        client: c.unwrap(),
        server_session: s.unwrap(),
    }
}

// ---------------------------------------------------------------- tonic side (plaintext)

#[derive(Clone, Copy, Default)]
struct RawCodec;
struct RawEncoder;
struct RawDecoder;

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

type BoxFut<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;
type BytesStream = Pin<Box<dyn Stream<Item = Result<Bytes, Status>> + Send>>;

/// Hand-written gRPC service `bench.Bench` with Echo (unary), Upload (client streaming),
/// EchoStream (bidi) and Firehose (server streaming).
#[derive(Clone)]
struct BenchService {
    firehose_active: Arc<AtomicUsize>,
}

struct UnaryEcho;
impl tower_like::Svc<tonic::Request<Bytes>> for UnaryEcho {
    type Resp = tonic::Response<Bytes>;
    fn call(&mut self, req: tonic::Request<Bytes>) -> BoxFut<Result<Self::Resp, Status>> {
        Box::pin(async move { Ok(tonic::Response::new(req.into_inner())) })
    }
}

/// Minimal adapters: tonic's server traits are blanket-implemented for tower `Service`s, which
/// these wrap.
mod tower_like {
    use super::*;
    use tonic::codegen::Service;

    pub trait Svc<R> {
        type Resp;
        fn call(&mut self, req: R) -> BoxFut<Result<Self::Resp, Status>>;
    }

    pub struct Wrap<S>(pub S);

    impl<R, S: Svc<R>> Service<R> for Wrap<S> {
        type Response = S::Resp;
        type Error = Status;
        type Future = BoxFut<Result<S::Resp, Status>>;
        fn poll_ready(
            &mut self,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Status>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn call(&mut self, req: R) -> Self::Future {
            self.0.call(req)
        }
    }
}

struct UploadSvc;
impl tower_like::Svc<tonic::Request<tonic::Streaming<Bytes>>> for UploadSvc {
    type Resp = tonic::Response<Bytes>;
    fn call(
        &mut self,
        req: tonic::Request<tonic::Streaming<Bytes>>,
    ) -> BoxFut<Result<Self::Resp, Status>> {
        Box::pin(async move {
            let mut stream = req.into_inner();
            let mut total = 0u64;
            while let Some(msg) = stream.next().await {
                total += msg?.len() as u64;
            }
            Ok(tonic::Response::new(Bytes::copy_from_slice(
                &total.to_le_bytes(),
            )))
        })
    }
}

struct EchoStreamSvc;
impl tower_like::Svc<tonic::Request<tonic::Streaming<Bytes>>> for EchoStreamSvc {
    type Resp = tonic::Response<BytesStream>;
    fn call(
        &mut self,
        req: tonic::Request<tonic::Streaming<Bytes>>,
    ) -> BoxFut<Result<Self::Resp, Status>> {
        Box::pin(async move {
            let stream: BytesStream = Box::pin(req.into_inner());
            Ok(tonic::Response::new(stream))
        })
    }
}

struct FirehoseSvc(Arc<AtomicUsize>);
impl tower_like::Svc<tonic::Request<Bytes>> for FirehoseSvc {
    type Resp = tonic::Response<BytesStream>;
    fn call(&mut self, _req: tonic::Request<Bytes>) -> BoxFut<Result<Self::Resp, Status>> {
        let active = self.0.clone();
        Box::pin(async move {
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Status>>(32);
            active.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let blob = Bytes::from(vec![7u8; 1024]);
                while tx.send(Ok(blob.clone())).await.is_ok() {}
                active.fetch_sub(1, Ordering::SeqCst);
            });
            let stream: BytesStream =
                Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
                    rx.recv().await.map(|item| (item, rx))
                }));
            Ok(tonic::Response::new(stream))
        })
    }
}

impl tonic::codegen::Service<http::Request<tonic::body::Body>> for BenchService {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFut<Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let active = self.firehose_active.clone();
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(RawCodec);
            let resp = match req.uri().path() {
                "/bench.Bench/Echo" => grpc.unary(tower_like::Wrap(UnaryEcho), req).await,
                "/bench.Bench/Upload" => {
                    grpc.client_streaming(tower_like::Wrap(UploadSvc), req)
                        .await
                }
                "/bench.Bench/EchoStream" => {
                    grpc.streaming(tower_like::Wrap(EchoStreamSvc), req).await
                }
                "/bench.Bench/Firehose" => {
                    grpc.server_streaming(tower_like::Wrap(FirehoseSvc(active)), req)
                        .await
                }
                _ => Status::unimplemented("no such method").into_http(),
            };
            Ok(resp)
        })
    }
}

impl tonic::server::NamedService for BenchService {
    const NAME: &'static str = "bench.Bench";
}

struct Tonic {
    client: tonic::client::Grpc<tonic::transport::Channel>,
    firehose_active: Arc<AtomicUsize>,
    addr: std::net::SocketAddr,
    congestion: Option<&'static str>,
}

/// A new HTTP/2 connection to the tonic server, tuned for bulk transfer.
async fn tonic_connect(
    addr: std::net::SocketAddr,
    congestion: Option<&'static str>,
) -> tonic::client::Grpc<tonic::transport::Channel> {
    let connector = tower::service_fn(move |_uri: http::Uri| async move {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        tune_tonic_socket(&stream, congestion);
        Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
    });
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .tcp_nodelay(true)
        .http2_adaptive_window(true)
        .max_frame_size(1 << 20)
        .connect_with_connector(connector)
        .await
        .unwrap();
    tonic::client::Grpc::new(channel)
}

async fn tonic_setup(congestion: Option<&'static str>) -> Tonic {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let firehose_active = Arc::new(AtomicUsize::new(0));
    let service = BenchService {
        firehose_active: firehose_active.clone(),
    };
    let incoming = futures_util::stream::unfold(listener, move |listener| async move {
        let accepted = listener.accept().await.map(|(stream, _)| {
            tune_tonic_socket(&stream, congestion);
            stream
        });
        Some((accepted, listener))
    });
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .http2_adaptive_window(Some(true))
            .max_frame_size(1 << 20)
            .serve_with_incoming(service, incoming)
            .await
            .unwrap();
    });
    Tonic {
        client: tonic_connect(addr, congestion).await,
        firehose_active,
        addr,
        congestion,
    }
}

fn path(p: &'static str) -> http::uri::PathAndQuery {
    http::uri::PathAndQuery::from_static(p)
}

async fn tonic_unary(
    client: &mut tonic::client::Grpc<tonic::transport::Channel>,
    msg: Bytes,
) -> Bytes {
    client.ready().await.unwrap();
    client
        .unary(
            tonic::Request::new(msg),
            path("/bench.Bench/Echo"),
            RawCodec,
        )
        .await
        .unwrap()
        .into_inner()
}

async fn nrpc_unary(session: &Session, msg: &Blob) -> Blob {
    session
        .call_unary("echo", msg, CallOptions::default())
        .await
        .unwrap()
}

// ---------------------------------------------------------------- measurements

fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    (at(0.50), at(0.99))
}

struct Summary(Vec<String>);
impl Summary {
    fn line(&mut self, text: String) {
        println!("SUMMARY {text}");
        self.0.push(text);
    }
}

const SMALL: usize = 64;

fn unary_latency(c: &mut Criterion, rt: &Runtime, n: &Nrpc, t: &Tonic, summary: &mut Summary) {
    let blob = Blob(vec![1; SMALL]);
    let bytes = Bytes::from(vec![1u8; SMALL]);
    let mut g = c.benchmark_group("unary_latency_c1");
    g.bench_function("nrpc", |b| {
        b.to_async(rt).iter(|| nrpc_unary(&n.client, &blob))
    });
    g.bench_function("tonic", |b| {
        b.to_async(rt).iter(|| {
            let mut client = t.client.clone();
            let msg = bytes.clone();
            async move { tonic_unary(&mut client, msg).await }
        })
    });
    g.finish();

    // Individually timed calls for p50/p99.
    const SAMPLES: usize = 3000;
    let nrpc = rt.block_on(async {
        let mut samples = Vec::with_capacity(SAMPLES);
        for _ in 0..SAMPLES {
            let start = Instant::now();
            nrpc_unary(&n.client, &blob).await;
            samples.push(start.elapsed());
        }
        percentiles(samples)
    });
    let tonic = rt.block_on(async {
        let mut client = t.client.clone();
        let mut samples = Vec::with_capacity(SAMPLES);
        for _ in 0..SAMPLES {
            let start = Instant::now();
            tonic_unary(&mut client, bytes.clone()).await;
            samples.push(start.elapsed());
        }
        percentiles(samples)
    });
    summary.line(format!(
        "unary_c1 {SMALL}B nrpc p50={:?} p99={:?} | tonic p50={:?} p99={:?} | p50 ratio tonic/nrpc={:.2}",
        nrpc.0,
        nrpc.1,
        tonic.0,
        tonic.1,
        tonic.0.as_secs_f64() / nrpc.0.as_secs_f64()
    ));
}

fn unary_qps(c: &mut Criterion, rt: &Runtime, n: &Nrpc, t: &Tonic) {
    let mut g = c.benchmark_group("unary_qps");
    g.throughput(Throughput::Elements(1));
    for concurrency in [16usize, 128] {
        g.bench_with_input(
            BenchmarkId::new("nrpc", concurrency),
            &concurrency,
            |b, &conc| {
                b.to_async(rt).iter_custom(|iters| {
                    let session = n.client.clone();
                    async move {
                        let per_task = (iters as usize).div_ceil(conc);
                        let start = Instant::now();
                        let tasks: Vec<_> = (0..conc)
                            .map(|_| {
                                let session = session.clone();
                                tokio::spawn(async move {
                                    let blob = Blob(vec![1; SMALL]);
                                    for _ in 0..per_task {
                                        nrpc_unary(&session, &blob).await;
                                    }
                                })
                            })
                            .collect();
                        for task in tasks {
                            task.await.unwrap();
                        }
                        start
                            .elapsed()
                            .mul_f64(iters as f64 / (per_task * conc) as f64)
                    }
                })
            },
        );
        g.bench_with_input(
            BenchmarkId::new("tonic", concurrency),
            &concurrency,
            |b, &conc| {
                b.to_async(rt).iter_custom(|iters| {
                    let client = t.client.clone();
                    async move {
                        let per_task = (iters as usize).div_ceil(conc);
                        let start = Instant::now();
                        let tasks: Vec<_> = (0..conc)
                            .map(|_| {
                                let mut client = client.clone();
                                tokio::spawn(async move {
                                    let msg = Bytes::from(vec![1u8; SMALL]);
                                    for _ in 0..per_task {
                                        tonic_unary(&mut client, msg.clone()).await;
                                    }
                                })
                            })
                            .collect();
                        for task in tasks {
                            task.await.unwrap();
                        }
                        start
                            .elapsed()
                            .mul_f64(iters as f64 / (per_task * conc) as f64)
                    }
                })
            },
        );
    }
    g.finish();
}

/// One compared pair of stacks for uploads: both with the same congestion control (`None`:
/// the host's).
struct UploadPair {
    label: &'static str,
    congestion: Option<&'static str>,
}

/// Each row runs on fresh connections of its own, on both stacks. On a used connection the
/// rows depend on what ran before them: tonic's 1 MiB upload took 2.66 ms alone, 3.46 ms after
/// the 1 KiB rows on the same connection and 6.4–8.6 ms in full runs (2026-12-05, reno);
/// with the host's congestion control, 3.49 and 6.35 ms.
fn client_streaming(c: &mut Criterion, rt: &Runtime, pairs: &[UploadPair]) {
    let mut g = c.benchmark_group("client_streaming");
    // (message size, messages per call): 1 MiB per call for 1 KiB messages, 16 MiB for 1 MiB;
    // and a longer stream of 1 KiB messages (4 MiB per call), where what the receiver queues
    // matters (see BENCHMARKS.md, 2026-12-01).
    for (size, count, label) in [
        (1024usize, 1024usize, "1KiB"),
        (1 << 20, 16, "1MiB"),
        (1024, 4096, "1KiB-4MiB-calls"),
    ] {
        g.throughput(Throughput::Bytes((size * count) as u64));
        let blob = Blob(vec![3; size]);
        let bytes = Bytes::from(vec![3u8; size]);
        for pair in pairs {
            let nrpc = rt.block_on(nrpc_setup(bench_config(pair.congestion)));
            let tonic = rt.block_on(tonic_setup(pair.congestion));
            let upload = |session: &Session| {
                let session = session.clone();
                let blob = &blob;
                async move {
                    let mut call = session
                        .call_client_streaming::<Blob, u64>("upload", CallOptions::default())
                        .unwrap();
                    for _ in 0..count {
                        call.send(blob).await.unwrap();
                    }
                    // The server counted every byte.
                    assert_eq!(call.finish().await.unwrap(), (size * count) as u64);
                }
            };
            g.bench_function(
                BenchmarkId::new(format!("nrpc{}", pair.label), label),
                |b| b.to_async(rt).iter(|| upload(&nrpc.client)),
            );
            g.bench_function(
                BenchmarkId::new(format!("tonic{}", pair.label), label),
                |b| {
                    b.to_async(rt).iter(|| {
                        let mut client = tonic.client.clone();
                        let msgs = futures_util::stream::iter(vec![bytes.clone(); count]);
                        async move {
                            client.ready().await.unwrap();
                            let resp = client
                                .client_streaming(
                                    tonic::Request::new(msgs),
                                    path("/bench.Bench/Upload"),
                                    RawCodec,
                                )
                                .await
                                .unwrap()
                                .into_inner();
                            // The server counted every byte.
                            let total = u64::from_le_bytes(resp.as_ref().try_into().unwrap());
                            assert_eq!(total, (size * count) as u64);
                        }
                    })
                },
            );
        }
    }
    g.finish();
}

fn duplex_rtt(c: &mut Criterion, rt: &Runtime, n: &Nrpc, t: &Tonic, summary: &mut Summary) {
    let blob = Blob(vec![5; SMALL]);
    let nrpc_call = n
        .client
        .call_duplex::<Blob, Blob>("echo_stream", CallOptions::default())
        .unwrap();
    let (tonic_tx, tonic_rx) =
        rt.block_on(async {
            let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
            let reqs = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|m| (m, rx))
            });
            let mut client = t.client.clone();
            client.ready().await.unwrap();
            let resp = client
                .streaming(
                    tonic::Request::new(reqs),
                    path("/bench.Bench/EchoStream"),
                    RawCodec,
                )
                .await
                .unwrap()
                .into_inner();
            (tx, resp)
        });
    let bytes = Bytes::from(vec![5u8; SMALL]);
    let nrpc_shared = Arc::new(tokio::sync::Mutex::new(nrpc_call));
    let tonic_shared = Arc::new(tokio::sync::Mutex::new((tonic_tx, tonic_rx)));
    let mut g = c.benchmark_group("duplex_rtt");
    g.bench_function("nrpc", |b| {
        b.to_async(rt).iter_custom(|iters| {
            let shared = nrpc_shared.clone();
            async move {
                let blob = Blob(vec![5; SMALL]);
                let mut call = shared.lock().await;
                let start = Instant::now();
                for _ in 0..iters {
                    call.send(&blob).await.unwrap();
                    call.next().await.unwrap().unwrap();
                }
                start.elapsed()
            }
        })
    });
    g.bench_function("tonic", |b| {
        b.to_async(rt).iter_custom(|iters| {
            let shared = tonic_shared.clone();
            let msg = bytes.clone();
            async move {
                let mut guard = shared.lock().await;
                let (tx, rx) = &mut *guard;
                let start = Instant::now();
                for _ in 0..iters {
                    tx.send(msg.clone()).await.unwrap();
                    rx.next().await.unwrap().unwrap();
                }
                start.elapsed()
            }
        })
    });
    g.finish();
    let mut nrpc_call = rt.block_on(nrpc_shared.lock_owned());
    let mut tonic_pair = rt.block_on(tonic_shared.lock_owned());
    let (tonic_tx, tonic_rx) = &mut *tonic_pair;
    const SAMPLES: usize = 3000;
    let nrpc = rt.block_on(async {
        let mut samples = Vec::with_capacity(SAMPLES);
        for _ in 0..SAMPLES {
            let start = Instant::now();
            nrpc_call.send(&blob).await.unwrap();
            nrpc_call.next().await.unwrap().unwrap();
            samples.push(start.elapsed());
        }
        percentiles(samples)
    });
    let tonic = rt.block_on(async {
        let mut samples = Vec::with_capacity(SAMPLES);
        for _ in 0..SAMPLES {
            let start = Instant::now();
            tonic_tx.send(bytes.clone()).await.unwrap();
            tonic_rx.next().await.unwrap().unwrap();
            samples.push(start.elapsed());
        }
        percentiles(samples)
    });
    summary.line(format!(
        "duplex_rtt {SMALL}B nrpc p50={:?} p99={:?} | tonic p50={:?} p99={:?}",
        nrpc.0, nrpc.1, tonic.0, tonic.1
    ));
}

async fn settle(mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "never became quiescent");
        tokio::task::yield_now().await;
    }
}

fn cancel_quiescent(c: &mut Criterion, rt: &Runtime, n: &Nrpc, t: &Tonic) {
    let mut g = c.benchmark_group("cancel_to_quiescent");
    g.bench_function("nrpc", |b| {
        b.to_async(rt).iter_custom(|iters| async move {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                // A 256 KiB window: what is in flight when the caller cancels is what has to
                // drain, so the default (one maximum message plus 64 KiB) would measure the
                // window, not the cancel.
                let opts = CallOptions {
                    response_window: Some(256 * 1024),
                    ..CallOptions::default()
                };
                let mut stream = n
                    .client
                    .call_server_streaming::<(), Blob>("firehose", &(), opts)
                    .await
                    .unwrap();
                stream.next().await.unwrap().unwrap();
                let start = Instant::now();
                drop(stream);
                settle(|| {
                    n.client.open_calls() == 0
                        && n.server_session.served_calls() == 0
                        && Metrics::get(&n.server.metrics().active_handlers) == 0
                })
                .await;
                total += start.elapsed();
            }
            total
        })
    });
    g.bench_function("tonic", |b| {
        b.to_async(rt).iter_custom(|iters| {
            let active = t.firehose_active.clone();
            let addr = t.addr;
            async move {
                let mut total = Duration::ZERO;
                let mut client = tonic_connect(addr, t.congestion).await;
                for i in 0..iters {
                    // h2 ends a connection after 1024 locally reset streams (GOAWAY
                    // ENHANCE_YOUR_CALM), so cancelled calls get a fresh connection every 500
                    // (set up outside the timed part).
                    if i > 0 && i % 500 == 0 {
                        client = tonic_connect(addr, t.congestion).await;
                    }
                    client.ready().await.unwrap();
                    let mut stream = client
                        .server_streaming(
                            tonic::Request::new(Bytes::new()),
                            path("/bench.Bench/Firehose"),
                            RawCodec,
                        )
                        .await
                        .unwrap()
                        .into_inner();
                    stream.next().await.unwrap().unwrap();
                    let start = Instant::now();
                    drop(stream);
                    settle(|| active.load(Ordering::SeqCst) == 0).await;
                    total += start.elapsed();
                }
                total
            }
        })
    });
    g.finish();
}

/// The transport alone (Noise + framing over loopback TCP), to separate crypto cost from nRPC.
fn transport_only(c: &mut Criterion, rt: &Runtime) {
    let (mut tx, mut rx) = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (a, b) = tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        let (mut a, mut b) = (a.unwrap(), b.unwrap().0);
        let t = Duration::from_secs(10);
        let (ia, ib) = (Identity::from_seed([1; 32]), Identity::from_seed([2; 32]));
        let (ea, eb) = tokio::join!(
            net_mesh_rpc::handshake::initiate(&mut a, (&ia).into(), None, t),
            net_mesh_rpc::handshake::respond(&mut b, (&ib).into(), t)
        );
        let (ar, aw) = a.into_split();
        let (br, bw) = b.into_split();
        let (tx, _) = net_mesh_rpc::transport::split(ea.unwrap().transport, ar, aw);
        let (_, rx) = net_mesh_rpc::transport::split(eb.unwrap().transport, br, bw);
        (tx, rx)
    });
    let frame = vec![9u8; 1 << 20];
    let mut g = c.benchmark_group("transport_only");
    g.throughput(Throughput::Bytes(16 << 20));
    g.bench_function("1MiB_frames", |b| {
        b.iter(|| {
            rt.block_on(async {
                let send = async {
                    for _ in 0..16 {
                        tx.send_frame(&frame).await.unwrap();
                    }
                };
                let recv = async {
                    for _ in 0..16 {
                        rx.recv_frame().await.unwrap().unwrap();
                    }
                };
                tokio::join!(send, recv);
            })
        })
    });
    // Receiver on its own task: encryption and decryption overlap like in a real session.
    let (done_tx, done_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    rt.spawn(async move {
        let mut n = 0u64;
        while let Ok(Some(_)) = rx.recv_frame().await {
            n += 1;
            if n.is_multiple_of(16) && done_tx.send(()).is_err() {
                break;
            }
        }
    });
    let pair = Arc::new(tokio::sync::Mutex::new((tx, done_rx)));
    g.bench_function("1MiB_frames_receiver_task", |b| {
        b.to_async(rt).iter(|| {
            let pair = pair.clone();
            let frame = &frame;
            async move {
                let mut guard = pair.lock().await;
                let (tx, done) = &mut *guard;
                for _ in 0..16 {
                    tx.send_frame(frame).await.unwrap();
                }
                done.recv().await.unwrap();
            }
        })
    });
    g.finish();
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let nrpc = rt.block_on(nrpc_setup(bench_config(Some(CONGESTION))));
    let tonic = rt.block_on(tonic_setup(Some(CONGESTION)));
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
        .configure_from_args();
    let mut summary = Summary(Vec::new());
    transport_only(&mut c, &rt);
    unary_latency(&mut c, &rt, &nrpc, &tonic, &mut summary);
    unary_qps(&mut c, &rt, &nrpc, &tonic);
    // The uploads get connections of their own, row by row (`client_streaming`): a
    // connection the unary benches used before ran tonic's 1 KiB uploads at about half the
    // speed of a fresh one (0.83 against 1.96 GiB/s, 2026-12-05).
    let pairs = [
        UploadPair {
            label: "",
            congestion: Some(CONGESTION),
        },
        UploadPair {
            label: "-host-cc",
            congestion: None,
        },
    ];
    client_streaming(&mut c, &rt, &pairs);
    duplex_rtt(&mut c, &rt, &nrpc, &tonic, &mut summary);
    cancel_quiescent(&mut c, &rt, &nrpc, &tonic);
    c.final_summary();
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/nrpc-bench-summary.txt");
    let _ = std::fs::write(out, summary.0.join("\n") + "\n");
}
