//! An upload left live by a vanished client, resumed with data that starts at another offset
//! than the node's checkpoint says (before or after it), is refused without changing the
//! upload: it stays live at the same offset, and resuming from the right one still finishes to
//! the local ref.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::*;
use net_mesh_engine::{BlobRef, ErrorClass};
use net_mesh_node::proto::{PutStart, StagingState};

fn resume(offset: u64) -> PutStart {
    PutStart::Resume {
        class: Default::default(),
        staging_id: "wrong-1".into(),
        offset,
        checkpoint_interval: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_resumed_at_a_wrong_offset_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (user, user_id) = identity();
    let node = start(dir.path(), |_| format!("{user_id} write\n")).await;
    let data = random_bytes(1_500_000, 41);
    let offset =
        vanish_mid_upload(&node, user.clone(), "wrong-1", &data, 1_000_000, 128 * 1024).await;
    assert!(offset > 0);

    let client = client_as(user, &node.addr).await;
    for wrong in [offset + 1, offset - 1, 0] {
        let err = put(&client, resume(wrong), &data[wrong as usize..])
            .await
            .unwrap_err();
        assert_eq!(err.class, ErrorClass::Refused, "offset {wrong}: {err}");
        assert!(
            err.message.contains(&format!("resumes at offset {offset}")),
            "{err}"
        );
        assert_eq!(
            client.staging_state("wrong-1").await.unwrap(),
            StagingState::Live {
                resume_offset: offset
            }
        );
    }
    assert!(node.node.store().pins().unwrap().pins.is_empty());

    let done = put(&client, resume(offset), &data[offset as usize..])
        .await
        .unwrap();
    assert_eq!(BlobRef::decode(&done.blob_ref).unwrap(), local_ref(&data));

    drop(client);
    node.shut().await;
}
