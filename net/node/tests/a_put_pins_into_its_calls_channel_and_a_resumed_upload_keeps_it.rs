//! A put pins into the channel its call names: into a channel the node does not have it is
//! refused before anything is stored; an upload begun in `photos` whose client vanishes is
//! resumed by a call naming `photos` and finishes pinned in `photos` (not in `default`), where
//! `list` on `photos` shows it and `remove` on `default` does not touch it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::*;
use net_mesh_engine::ErrorClass;
use net_mesh_node::call_token::encode_metadata;
use net_mesh_node::proto::{BlobSpec, PinRow, PutStart, Unpinned};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_pins_into_its_calls_channel_and_a_resumed_upload_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let (user, user_id) = identity();
    let node = start(dir.path(), |_| format!("{user_id} write\n")).await;
    let data = random_bytes(3_000_000, 41);

    let ghost = client_as(user.clone(), &node.addr)
        .await
        .with_channel("ghost")
        .unwrap();
    let refused = put(
        &ghost,
        begin(Some("ghost-1"), "g", 64 * 1024),
        &data[..1000],
    )
    .await
    .unwrap_err();
    assert_eq!(refused.class, ErrorClass::NotFound, "{refused}");
    assert!(node.node.store().pins().unwrap().pins.is_empty());
    assert!(
        net_mesh_staging::list_staging(node.node.store())
            .unwrap()
            .is_empty()
    );

    assert!(node.node.store().create_channel("photos").unwrap());
    let offset = vanish_mid_upload_with(
        &node,
        user.clone(),
        encode_metadata("photos", &[]),
        "chan-1",
        &data,
        2_000_000,
        256 * 1024,
    )
    .await;
    let plain = client_as(user.clone(), &node.addr).await;
    let photos = client_as(user, &node.addr)
        .await
        .with_channel("photos")
        .unwrap();
    let done = put(
        &photos,
        PutStart::Resume {
            class: Default::default(),
            staging_id: "chan-1".into(),
            offset,
            checkpoint_interval: None,
        },
        &data[offset as usize..],
    )
    .await
    .unwrap();
    let store = node.node.store();
    assert!(store.pins_in("default").unwrap().pins.is_empty());
    let in_photos = store.pins_in("photos").unwrap().pins;
    assert_eq!(in_photos.len(), 1);
    assert_eq!(in_photos[0].1.blob_ref.encode(), done.blob_ref.to_vec());

    let listed = photos.list().await.unwrap();
    assert!(matches!(&listed[..], [PinRow::Pin { name, .. }] if name == "vanishing"));
    assert!(plain.list().await.unwrap().is_empty());
    let spec = BlobSpec::Ref(done.blob_ref.clone());
    assert_eq!(plain.remove(&spec).await.unwrap(), Unpinned::NotPinned);
    assert_eq!(store.pins_in("photos").unwrap().pins.len(), 1);
    assert_eq!(photos.remove(&spec).await.unwrap(), Unpinned::Removed);
    assert!(store.pins_in("photos").unwrap().pins.is_empty());

    drop((ghost, plain, photos));
    node.shut().await;
}
