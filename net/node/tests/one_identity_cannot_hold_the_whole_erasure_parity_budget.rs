//! One authorized identity opens erasure-coded uploads and holds them open, trying to hold all
//! the parity the node allows erasure-coded uploads (`max_erasure_bytes`), which would leave
//! every other identity's erasure-coded put busy. It holds its share
//! (`max_erasure_bytes_per_peer`) and no more: its next one is refused as busy (naming the
//! identity's share) while another identity's erasure-coded put runs and reads back; an upload
//! needing more than one identity's share is refused as usage before anything is stored.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::*;
use net_mesh_engine::{BlobRef, ErrorClass, RsParams};
use net_mesh_node::NodeConfig;
use net_mesh_node::proto::{Method, PutDone, PutPart, PutStart};
use net_mesh_rpc::rpc::CallOptions;
use serde_bytes::ByteBuf;

const MIB: usize = 1024 * 1024;

/// An erasure-coded put of `--rs 10,14` with 1 MiB chunks: it holds 18 MiB of parity.
fn rs_start(name: &str) -> PutStart {
    PutStart::ErasureCoded {
        name: name.to_string(),
        chunking: Some("fixed:1048576".to_string()),
        tree: Some(tree_shape()),
        k: 10,
        n: 14,
        class: Default::default(),
        name_given: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_identity_cannot_hold_the_whole_erasure_parity_budget() {
    let needs = net_mesh_engine::write::erasure_put_bytes(RsParams::new(10, 14).unwrap(), 1 << 20);
    assert_eq!(needs, 18 * MIB as u64);
    let dir = tempfile::tempdir().unwrap();
    let (greedy, greedy_id) = identity();
    let (other, other_id) = identity();
    // Room for two such uploads on the node, one per identity.
    let config = NodeConfig {
        max_erasure_bytes: 40 * MIB,
        max_erasure_bytes_per_peer: 20 * MIB,
        ..NodeConfig::default()
    };
    let node = start_with(
        dir.path(),
        |_| format!("{greedy_id} write\n{other_id} write\n"),
        config,
    )
    .await;

    // More than one identity's share (though within the node's budget): usage.
    let greedy = client_as(greedy, &node.addr).await;
    let mut wide = rs_start("wide");
    if let PutStart::ErasureCoded { k, n, .. } = &mut wide {
        (*k, *n) = (10, 15);
    }
    let err = put(&greedy, wide, &random_bytes(100_000, 1))
        .await
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::Usage, "{err}");
    assert_eq!(node.node.store().pin_rows().unwrap(), 0);

    // The greedy identity holds one upload open ...
    let mut held = greedy
        .session()
        .call_client_streaming::<PutPart, PutDone>(Method::Put.name(), CallOptions::default())
        .unwrap();
    held.send(&PutPart::Start(rs_start("held"))).await.unwrap();
    held.send(&PutPart::Data(ByteBuf::from(random_bytes(300_000, 2))))
        .await
        .unwrap();
    wait_until(|| node.node.live_uploads() == 1).await;
    // ... and its second is refused: the node has room, the identity's share does not.
    let data = random_bytes(3 * MIB, 3);
    let err = put(&greedy, rs_start("second"), &data).await.unwrap_err();
    assert_eq!(err.class, ErrorClass::Busy, "{err}");
    assert!(err.message.contains("this identity's"), "{err}");

    // Another identity's erasure-coded put runs and reads back.
    let other = std::sync::Arc::new(client_as(other, &node.addr).await);
    let done = put(&other, rs_start("other"), &data).await.unwrap();
    let blob_ref = BlobRef::decode(&done.blob_ref).unwrap();
    let (result, bytes) = read(&other, &blob_ref, 0..data.len() as u64).await;
    result.unwrap();
    assert!(bytes == data, "the other identity's upload reads back");

    drop(held);
    node.shut().await;
}
