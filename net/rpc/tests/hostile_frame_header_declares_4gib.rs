//! Frame headers that announce more than the receiver will ever take: a 4 GiB length prefix,
//! and a control frame announcing a megabyte. Each ends the session from the header alone,
//! nothing of the frame is buffered, the session's resources are released, and an honest
//! client is served meanwhile.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use net_mesh_rpc::Session;
use net_mesh_rpc::frame::{FRAME_VERSION, dispatch};
use net_mesh_rpc::rpc::{Metrics, SessionError};
use net_mesh_rpc::transport::TransportError;

async fn attack(h: &Harness, stream_bytes: &[u8]) -> (RawPeer, Session) {
    let (peer, attacked) =
        within(async { tokio::join!(RawPeer::connect(h.addr, 9), h.server.accept(&h.listener)) })
            .await;
    let mut peer = peer;
    peer.tx.queue_raw_stream_bytes(stream_bytes).unwrap();
    peer.tx.flush().await.unwrap();
    (peer, attacked.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_4_gib_length_prefix_ends_the_session_before_anything_is_buffered() {
    let h = harness().await;
    let rss_before = current_rss();
    reset_peak_rss();
    let (_peer, attacked) = attack(&h, &u32::MAX.to_le_bytes()).await;
    let reason = within(attacked.closed()).await;
    assert!(
        matches!(
            *reason,
            SessionError::Transport(TransportError::FrameTooLarge { len: 4_294_967_295 })
        ),
        "{reason}"
    );
    let metrics = h.server.metrics();
    assert_eq!(Metrics::get(&metrics.oversized_frames), 1);
    eventually(|| Metrics::get(&metrics.session_tasks) == 3).await;
    honest_round(&h.session).await;
    let growth = peak_rss().saturating_sub(rss_before);
    assert!(growth < 8 << 20, "RSS grew by {growth} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_frame_announcing_a_megabyte_ends_the_session_from_its_head() {
    let h = harness().await;
    let mut bytes = (1u32 << 20).to_le_bytes().to_vec();
    bytes.extend_from_slice(&[FRAME_VERSION, dispatch::REQUEST_END]);
    bytes.extend_from_slice(&7u64.to_le_bytes());
    let (_peer, attacked) = attack(&h, &bytes).await;
    let reason = within(attacked.closed()).await;
    assert!(
        matches!(
            *reason,
            SessionError::ControlFrameTooLarge { len: 1_048_576 }
        ),
        "{reason}"
    );
    assert_eq!(Metrics::get(&h.server.metrics().recv_bytes_peak), 0);
    eventually(|| Metrics::get(&h.server.metrics().session_tasks) == 3).await;
    honest_round(&h.session).await;
}
