//! One session, calls strictly one after another, each awaited until its answer: a download
//! of several MiB (server-streaming, 1 MiB messages) and then an upload of several MiB
//! (client-streaming, 1 MiB messages), many times over, with the storage node's budgets (a
//! 2 MiB request window out of a 16 MiB session receive budget). A call that finished holds
//! nothing, so every upload must be granted a window; and once the session is quiet its
//! receive bytes all come back.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use futures_util::StreamExt;
use net_mesh_rpc::rpc::{CallOptions, Config, RawBytes, Router};
use net_mesh_rpc::{Endpoint, Identity};
use tokio::net::TcpListener;

const ROUNDS: usize = 40;
const DOWNLOAD_MIB: u32 = 8;
const UPLOAD_MIB: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_to_back_uploads_on_one_session_always_get_a_window() {
    let router = Router::new()
        .server_streaming("download", MibDownload)
        .client_streaming("upload", CountingUpload);
    let server = Endpoint::new(Identity::from_seed([1; 32]), router, node_like(128 * MIB));
    let client = Endpoint::new(
        Identity::from_seed([2; 32]),
        Router::new(),
        Config::default(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (session, served) =
        within(async { tokio::join!(client.connect(addr), server.accept(&listener)) }).await;
    let (session, served) = (session.unwrap(), served.unwrap());

    // A busy machine (the failure this guards against was seen under load).
    let stop = Arc::new(AtomicBool::new(false));
    let hog = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut x = 1u64;
            while !stop.load(Ordering::Relaxed) {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
            x
        })
    };

    let piece = RawBytes::from(vec![9u8; MIB]);
    let mut refused = Vec::new();
    for round in 0..ROUNDS {
        let mut download = within(session.call_server_streaming::<u32, RawBytes>(
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
                session.call_client_streaming::<RawBytes, u64>("upload", CallOptions::default())?;
            for _ in 0..UPLOAD_MIB {
                call.send(&piece).await?;
            }
            call.finish().await
        };
        match within(upload).await {
            Ok(n) => assert_eq!(n, (UPLOAD_MIB * MIB) as u64),
            Err(e) => refused.push((round, e.to_string(), served.recv_bytes_held())),
        }
    }
    stop.store(true, Ordering::Relaxed);
    hog.join().unwrap();

    assert!(
        refused.is_empty(),
        "{} of {ROUNDS} uploads refused (round, error, server session's receive bytes held \
         then): {refused:?}",
        refused.len()
    );
    // Nothing is open: the server session's receive bytes all come back (pooled buffers
    // included, once the session is quiet).
    eventually(|| served.recv_bytes_held() == 0).await;
}
