//! Two sessions on one endpoint whose receive budget is no bigger than one session's. The
//! first downloads many MiB (server-streaming, 1 MiB messages) and stays open and idle-free;
//! the buffers it recycled are only spares, so an upload on the second session right after
//! must still be granted a window (the spares give their endpoint bytes back), every time.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use futures_util::StreamExt;
use net_mesh_rpc::rpc::{CallOptions, Config, RawBytes, Router};
use net_mesh_rpc::{Endpoint, Identity, Session};
use tokio::net::TcpListener;

const ROUNDS: usize = 20;
const DOWNLOAD_MIB: u32 = 16;
const UPLOAD_MIB: usize = 4;

async fn connect(server: &Endpoint, client: &Endpoint, listener: &TcpListener) -> Session {
    let addr = listener.local_addr().unwrap();
    let (session, served) =
        within(async { tokio::join!(client.connect(addr), server.accept(listener)) }).await;
    served.unwrap();
    session.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spare_buffers_of_one_session_never_refuse_another_sessions_upload() {
    let router = Router::new()
        .server_streaming("download", MibDownload)
        .client_streaming("upload", CountingUpload);
    let server = Endpoint::new(Identity::from_seed([1; 32]), router, node_like(16 * MIB));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let reader = Endpoint::new(
        Identity::from_seed([2; 32]),
        Router::new(),
        Config::default(),
    );
    let writer = Endpoint::new(
        Identity::from_seed([3; 32]),
        Router::new(),
        Config::default(),
    );
    let reading = connect(&server, &reader, &listener).await;
    let writing = connect(&server, &writer, &listener).await;

    let piece = RawBytes::from(vec![9u8; MIB]);
    let mut refused = Vec::new();
    for round in 0..ROUNDS {
        let mut download = within(reading.call_server_streaming::<u32, RawBytes>(
            "download",
            &DOWNLOAD_MIB,
            CallOptions::default(),
        ))
        .await
        .unwrap();
        let mut got = 0;
        while let Some(item) = within(download.next()).await {
            got += item.unwrap().len();
        }
        assert_eq!(got, DOWNLOAD_MIB as usize * MIB);

        let upload = async {
            let mut call =
                writing.call_client_streaming::<RawBytes, u64>("upload", CallOptions::default())?;
            for _ in 0..UPLOAD_MIB {
                call.send(&piece).await?;
            }
            call.finish().await
        };
        match within(upload).await {
            Ok(n) => assert_eq!(n, (UPLOAD_MIB * MIB) as u64),
            Err(e) => refused.push((round, e.to_string())),
        }
    }
    assert!(
        refused.is_empty(),
        "{} of {ROUNDS} uploads refused: {refused:?}",
        refused.len()
    );
}
