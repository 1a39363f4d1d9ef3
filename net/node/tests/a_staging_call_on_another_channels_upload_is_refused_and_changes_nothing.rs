//! A peer whose token lets it write only on channel `default` acts by staging id on an upload
//! that began in `photos`: its resume (with its own bytes past the checkpoint), its state
//! query and its abort are each refused with the upload's channel named, and its list does
//! not show the upload; the checkpoint stays as it was and nothing is pinned anywhere. The
//! owner then finishes the upload on `photos` to the ref an uninterrupted put gives, and the
//! finished upload is refused to the `default` peer the same way (no ref, no pin).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;
mod tokens;

use common::*;
use net_mesh_engine::{BlobRef, ErrorClass};
use net_mesh_node::call_token::encode_metadata;
use net_mesh_node::proto::{PutStart, StagingState};
use net_mesh_node::{NodeError, NodeResult};
use net_mesh_rpc::token::Scope;
use tokens::*;

const ID: &str = "0123456789abcdef0123456789abcdef";

fn resume_at(offset: u64) -> PutStart {
    PutStart::Resume {
        class: Default::default(),
        staging_id: ID.into(),
        offset,
        checkpoint_interval: None,
    }
}

/// Asserts `result` is a refusal naming the upload's channel and how to name it.
fn assert_names_photos<T: std::fmt::Debug>(what: &str, result: NodeResult<T>) {
    let e: NodeError = result.expect_err(what);
    assert_eq!(e.class, ErrorClass::Refused, "{what}: {e}");
    assert!(
        e.message.contains(&format!(
            "upload {ID} belongs to channel photos, not default"
        )) && e.message.contains("--channel photos"),
        "{what}: {e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staging_call_on_another_channels_upload_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (node_identity, _) = identity();
    let (owner, owner_id) = identity();
    let (other, _) = identity();
    let node = start_trusting(
        node_identity.clone(),
        dir.path(),
        |_| format!("{owner_id} write\n"),
        &[],
    )
    .await;
    let store = std::sync::Arc::clone(node.node.store());
    assert!(store.create_channel("photos").unwrap());
    let data = random_bytes(3_000_000, 77);
    let offset = vanish_mid_upload_with(
        &node,
        owner.clone(),
        encode_metadata("photos", &[]),
        ID,
        &data,
        2_000_000,
        256 * 1024,
    )
    .await;
    assert!(offset > 0);
    let checkpoint = || {
        net_mesh_staging::checkpoint_of(&store, ID)
            .unwrap()
            .expect("the upload is live")
            .encode()
    };
    let before = checkpoint();
    let nothing_pinned = || {
        assert!(store.pins_in("photos").unwrap().pins.is_empty());
        assert!(store.pins_in("default").unwrap().pins.is_empty());
    };

    let on_default = client_with_token(
        other.clone(),
        &node.addr,
        &[mint(&node_identity, &other, Scope::WRITE)],
    )
    .await;
    assert_eq!(on_default.channel(), "default");
    // The replayed chunk as it was (its hash is checked), then bytes of its own.
    let covered = net_mesh_staging::checkpoint_of(&store, ID)
        .unwrap()
        .unwrap()
        .last_chunk_byte_offset() as usize;
    let mut forged = data[offset as usize..covered].to_vec();
    forged.extend_from_slice(&random_bytes(data.len() - covered, 78));
    assert_names_photos(
        "resume with its own bytes",
        put(&on_default, resume_at(offset), &forged).await,
    );
    assert_eq!(checkpoint(), before);
    nothing_pinned();
    assert_names_photos("state", on_default.staging_state(ID).await);
    assert_names_photos("abort", on_default.staging_abort(ID).await);
    assert_eq!(checkpoint(), before);
    assert!(on_default.staging_list().await.unwrap().is_empty());
    nothing_pinned();
    assert_eq!(node.node.live_uploads(), 0);

    let on_photos = client_as(owner.clone(), &node.addr)
        .await
        .with_channel("photos")
        .unwrap();
    let listed = on_photos.staging_list().await.unwrap();
    assert!(
        matches!(&listed[..], [row] if row.staging_id == ID && row.resume_offset == offset),
        "{listed:?}"
    );
    match on_photos.staging_state(ID).await.unwrap() {
        StagingState::Live { resume_offset } => assert_eq!(resume_offset, offset),
        other => panic!("the upload should be live at {offset}, it is {other:?}"),
    }
    let done = put(&on_photos, resume_at(offset), &data[offset as usize..])
        .await
        .unwrap();
    let blob_ref = BlobRef::decode(&done.blob_ref).unwrap();
    assert_eq!(blob_ref, local_ref(&data));
    assert_eq!(done.resumed_from, Some(offset));
    let pinned = store.pins_in("photos").unwrap().pins;
    assert!(
        matches!(&pinned[..], [(_, pin)] if pin.blob_ref == blob_ref && pin.name == "vanishing"),
        "{pinned:?}"
    );

    // Finished: the `default` peer learns no ref and pins nothing.
    assert_names_photos(
        "resume of the finished upload",
        put(&on_default, resume_at(0), &[]).await,
    );
    assert_names_photos(
        "state of the finished upload",
        on_default.staging_state(ID).await,
    );
    assert!(store.pins_in("default").unwrap().pins.is_empty());
    assert_eq!(store.pins_in("photos").unwrap().pins.len(), 1);
    assert!(matches!(
        on_photos.staging_state(ID).await.unwrap(),
        StagingState::Finished(finished) if finished.blob_ref == done.blob_ref
    ));

    drop((on_default, on_photos));
    node.shut().await;
}
