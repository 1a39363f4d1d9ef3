//! An erasure-coded upload holds its stripes' parity while it runs (`erasure_put_bytes`: a few
//! stripes of n − k shards as long as the largest chunk), so a writer choosing `--rs 2,255`
//! and 16 MiB chunks could make one upload hold ~12 GiB, and 32 uploads at once more. Each
//! takes what it needs from the node's `max_erasure_bytes` when it begins: one needing more
//! than all of it is refused (usage) before anything is stored, one arriving while the others
//! hold too much of it is busy, and what an upload held is given back when it ends (also when
//! its client goes away), so a later one runs and reads back verified.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::*;
use net_mesh_engine::{ErrorClass, RsParams};
use net_mesh_node::NodeConfig;
use net_mesh_node::proto::{Method, PutDone, PutPart, PutStart};
use net_mesh_rpc::rpc::CallOptions;
use serde_bytes::ByteBuf;

const MIB: usize = 1024 * 1024;

fn rs_start(name: &str, chunking: &str, k: u8, n: u8) -> PutStart {
    PutStart::ErasureCoded {
        name: name.to_string(),
        chunking: Some(chunking.to_string()),
        tree: Some(tree_shape()),
        k,
        n,
        class: Default::default(),
        name_given: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_coded_uploads_hold_at_most_the_nodes_parity_budget() {
    let dir = tempfile::tempdir().unwrap();
    let (user, user_id) = identity();
    let config = NodeConfig {
        max_erasure_bytes: 40 * MIB,
        ..NodeConfig::default()
    };
    let node = start_with(dir.path(), |_| format!("{user_id} write\n"), config).await;
    let client = std::sync::Arc::new(client_as(user, &node.addr).await);

    // More than the whole budget: usage, before anything is stored.
    let err = put(
        &client,
        rs_start("huge", "fixed:16777216", 2, 255),
        &random_bytes(100_000, 1),
    )
    .await
    .unwrap_err();
    assert_eq!(err.class, ErrorClass::Usage, "{err}");
    assert!(err.message.contains("more than this node allows"), "{err}");
    assert_eq!(node.node.store().pin_rows().unwrap(), 0);
    assert_eq!(node.node.live_uploads(), 0);

    // Two uploads of --rs 10,14 with 1 MiB chunks hold 2 × 18 MiB while they run ...
    let needs = net_mesh_engine::write::erasure_put_bytes(RsParams::new(10, 14).unwrap(), 1 << 20);
    assert_eq!(needs, 18 * MIB as u64);
    let mut open = Vec::new();
    for i in 0..2 {
        let mut call = client
            .session()
            .call_client_streaming::<PutPart, PutDone>(Method::Put.name(), CallOptions::default())
            .unwrap();
        call.send(&PutPart::Start(rs_start(
            &format!("open-{i}"),
            "fixed:1048576",
            10,
            14,
        )))
        .await
        .unwrap();
        call.send(&PutPart::Data(ByteBuf::from(random_bytes(300_000, 2 + i))))
            .await
            .unwrap();
        open.push(call);
    }
    wait_until(|| node.node.live_uploads() == 2).await;
    // ... so a third finds too little left: busy.
    let third = random_bytes(3 * MIB, 9);
    let err = put(&client, rs_start("third", "fixed:1048576", 10, 14), &third)
        .await
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::Busy, "{err}");
    assert!(err.message.contains("erasure-coded uploads hold"), "{err}");

    // One of them goes away: what it held comes back, and the third runs.
    drop(open.pop());
    wait_until(|| node.node.live_uploads() == 1).await;
    let done = put(&client, rs_start("third", "fixed:1048576", 10, 14), &third)
        .await
        .unwrap();
    let blob_ref = net_mesh_engine::BlobRef::decode(&done.blob_ref).unwrap();
    let (result, bytes) = read(&client, &blob_ref, 0..third.len() as u64).await;
    result.unwrap();
    assert!(bytes == third, "the third upload reads back");
    drop(open);
    node.shut().await;
}
