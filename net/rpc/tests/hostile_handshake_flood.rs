//! Thousands of connections that never finish the handshake (silent ones, and ones that stop
//! halfway through a message): handshakes have their own small slot pool and a per-address cap,
//! each pending one holds a small fixed allocation and ends at the handshake timeout, every
//! descriptor of theirs is released, and an honest client from another address is served
//! throughout.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

use common::*;
use net_mesh_rpc::rpc::{Config, Metrics};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ATTACK_CONNECTIONS: usize = 3000;
const PER_ADDR: usize = 8;
const HANDSHAKE_SLOTS: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_handshakes_cannot_crowd_out_an_honest_client() {
    let config = Config {
        max_handshakes: HANDSHAKE_SLOTS,
        max_sessions_per_addr: PER_ADDR,
        handshake_timeout: Duration::from_millis(300),
        ..Config::default()
    };
    let served = serve_with(config.clone()).await;
    let metrics = served.server.metrics();
    let fds_before = open_fds();
    let rss_before = current_rss();
    reset_peak_rss();

    let mut held = Vec::with_capacity(ATTACK_CONNECTIONS);
    let mut honest = Vec::new();
    let mut max_pending = 0;
    for i in 0..ATTACK_CONNECTIONS {
        let mut stream = within(tokio::net::TcpStream::connect(served.addr))
            .await
            .unwrap();
        if i % 3 == 0 {
            // Announce the longest handshake message, send a sliver of it, stop.
            let _ = stream.write_all(&[0xc3, 0x02, 1, 2, 3]).await;
        }
        held.push(stream);
        max_pending = max_pending.max(Metrics::get(&metrics.pending_handshakes));
        if i % 1000 == 999 {
            let session = honest_client_from([127, 0, 0, 2], served.addr, config.clone()).await;
            honest_round(&session).await;
            honest.push(session);
        }
    }
    assert!(
        max_pending <= PER_ADDR as u64,
        "{max_pending} handshakes pending from one address"
    );
    let refused =
        Metrics::get(&metrics.sessions_refused_addr) + Metrics::get(&metrics.handshakes_refused);
    eprintln!(
        "refused at accept: {refused}, handshake timeouts/failures: {}",
        Metrics::get(&metrics.handshake_failures)
    );
    assert!(refused as usize >= ATTACK_CONNECTIONS - PER_ADDR * 10);

    // Every attacker connection is closed by the server (refused at once, or at the handshake
    // timeout) while the attacker still holds its end: only the attacker's own descriptors and
    // the honest sessions' (two each) remain.
    eventually(|| Metrics::get(&metrics.pending_handshakes) == 0).await;
    eventually(|| open_fds() <= fds_before + held.len() + 2 * honest.len()).await;
    for stream in held.iter_mut().step_by(97) {
        let mut byte = [0u8; 1];
        let n = within(stream.read(&mut byte)).await.unwrap_or(0);
        assert_eq!(n, 0, "an attacker connection is still being served");
    }
    let rss_growth = peak_rss().saturating_sub(rss_before);
    eprintln!("RSS growth during the flood: {rss_growth} bytes");
    assert!(
        rss_growth < 32 << 20,
        "RSS grew by {rss_growth} bytes for {ATTACK_CONNECTIONS} half-open connections"
    );

    drop(held);
    eventually(|| open_fds() <= fds_before + 2 * honest.len()).await;
    for session in &honest {
        honest_round(session).await;
    }
    served.stop.cancel();
    within(served.task).await.unwrap();
}
