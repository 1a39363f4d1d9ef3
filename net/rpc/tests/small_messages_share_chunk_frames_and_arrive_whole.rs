//! A call's small messages travel several to a chunk frame (frame version 3) whenever the
//! sender queues faster than its frames are sealed. Whatever the grouping, every message
//! arrives whole and in order: byte strings of every size (taken as `RawBytes`, where the
//! messages before a frame's last are copies and the last takes the frame over), large ones in
//! between (frames of their own), and typed messages both ways on a duplex call.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use futures_util::StreamExt;
use net_mesh_rpc::rpc::{CallOptions, Metrics};

/// Message `i`: every 1000th is 40 KB (a frame of its own), the rest 0..700 bytes.
fn size_of(i: usize) -> usize {
    if i % 1000 == 999 {
        40_000
    } else {
        (i * 37) % 700
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_small_messages_of_every_size_arrive_whole_and_in_order() {
    let h = harness().await;
    const COUNT: usize = 5000;
    let mut call = h
        .session
        .call_client_streaming::<serde_bytes::ByteBuf, Vec<(usize, Option<u8>)>>(
            "raw_lens",
            CallOptions::default(),
        )
        .unwrap();
    for i in 0..COUNT {
        let message = serde_bytes::ByteBuf::from(vec![(i % 251) as u8; size_of(i)]);
        within(call.send(&message)).await.unwrap();
    }
    let got = within(call.finish()).await.unwrap();
    let want: Vec<(usize, Option<u8>)> = (0..COUNT)
        .map(|i| (size_of(i), (size_of(i) > 0).then_some((i % 251) as u8)))
        .collect();
    assert_eq!(got.len(), want.len());
    for (i, (got, want)) in got.iter().zip(&want).enumerate() {
        assert_eq!(got, want, "message {i}");
    }

    // Typed messages both ways.
    const ECHOES: u32 = 20_000;
    let call = h
        .session
        .call_duplex::<u32, u32>("echo_stream", CallOptions::default())
        .unwrap();
    let (mut tx, mut rx) = call.into_split();
    let sender = tokio::spawn(async move {
        for i in 0..ECHOES {
            tx.send(&i).await.unwrap();
        }
        tx.finish().unwrap();
        tx
    });
    let mut expected = 0u32;
    while let Some(item) = within(rx.next()).await {
        assert_eq!(item.unwrap(), expected);
        expected += 1;
    }
    assert_eq!(expected, ECHOES);
    drop(within(sender).await.unwrap());
    for metrics in [h.server.metrics(), h.client.metrics()] {
        assert_eq!(Metrics::get(&metrics.credit_violations), 0);
        assert_eq!(Metrics::get(&metrics.malformed_frames), 0);
        assert_eq!(Metrics::get(&metrics.protocol_violations), 0);
    }
}
