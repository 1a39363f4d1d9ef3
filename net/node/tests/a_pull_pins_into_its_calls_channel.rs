//! A pull pins on the pulling node into the channel its call names: into a channel that node
//! does not have it is refused before anything is fetched; once the channel exists the blob is
//! pinned there (listed on that channel, not on `default`) and reads back verified.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::*;
use net_mesh_engine::{BlobRef, ErrorClass};
use net_mesh_node::NodeConfig;
use net_mesh_node::proto::PinRow;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_pins_into_its_calls_channel() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (user, user_id) = identity();
    let (b_identity, b_id) = identity();
    let a = start(dir_a.path(), |_| format!("{user_id} write\n{b_id} read\n")).await;
    let b = start_as(
        b_identity,
        dir_b.path(),
        |_| format!("{user_id} write\n"),
        NodeConfig::default(),
    )
    .await;
    let data = random_bytes(700_000, 9);
    let to_a = client_as(user.clone(), &a.addr).await;
    let done = put(&to_a, begin(None, "src", 1 << 20), &data)
        .await
        .unwrap();
    let blob_ref = BlobRef::decode(&done.blob_ref).unwrap();

    let to_b_photos = client_as(user.clone(), &b.addr)
        .await
        .with_channel("photos")
        .unwrap();
    let refused = to_b_photos
        .pull(&blob_ref, &a.addr, "pulled")
        .await
        .unwrap_err();
    assert_eq!(refused.class, ErrorClass::NotFound, "{refused}");
    for root in net_mesh_engine::index::pin_roots(&blob_ref) {
        assert!(
            !b.node.store().has(&root).unwrap(),
            "fetched before the refusal"
        );
    }

    assert!(b.node.store().create_channel("photos").unwrap());
    let pulled = to_b_photos
        .pull(&blob_ref, &a.addr, "pulled")
        .await
        .unwrap();
    assert!(pulled.bytes_fetched > 0);
    let listed = to_b_photos.list().await.unwrap();
    assert!(matches!(&listed[..], [PinRow::Pin { name, .. }] if name == "pulled"));
    let to_b = std::sync::Arc::new(client_as(user, &b.addr).await);
    assert!(to_b.list().await.unwrap().is_empty());
    let (read, bytes) = read(&to_b, &blob_ref, 0..blob_ref.size()).await;
    read.unwrap();
    assert_eq!(bytes, data);

    drop((to_a, to_b, to_b_photos));
    a.shut().await;
    b.shut().await;
}
