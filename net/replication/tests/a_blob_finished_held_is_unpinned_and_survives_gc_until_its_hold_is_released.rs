//! An upload into a replicated channel finishes **held**, not pinned (`BlobWriter::finish_held`
//! with the channel's hold op, committed in the blob's last transaction): the store lists no
//! pin for it, GC with no grace keeps every object of it (an unpinned blob written the plain
//! way beside it is collected by the same GC), and once its pin is applied in the channel the
//! hold is released with the pin keeping it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::time::Duration;

use net_mesh_engine::GcOptions;
use net_mesh_replication::prefetch::hold_op;
use net_mesh_rpc::Identity;
use support::*;

fn bytes(seed: u8) -> Vec<u8> {
    (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ seed)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_finished_held_is_unpinned_and_survives_gc_until_its_hold_is_released() {
    let root = tempfile::tempdir().unwrap();
    let member = Member::start(Identity::from_seed([1; 32]), root.path().join("m"), 0).await;
    let store = member.store.clone();
    let channel = create_all(std::slice::from_ref(&member)).await.remove(0);
    wait_for_leader(&[&channel]).await;

    let held = bytes(1);
    let mut writer = store.writer().unwrap();
    writer.write(&held).unwrap();
    let held_ref = writer
        .finish_held(|r| Box::new(hold_op(CHANNEL, r)))
        .unwrap()
        .blob_ref;
    // The control: an unpinned blob with no hold.
    let loose = bytes(2);
    let loose_ref = store.store(&loose).unwrap().blob_ref;
    store
        .unpin(&net_mesh_engine::index::blob_id(&loose_ref))
        .unwrap();

    assert!(pinned(&store).is_empty(), "a held blob is not pinned");
    let no_grace = GcOptions {
        grace: Duration::ZERO,
        ..GcOptions::default()
    };
    store.gc(&no_grace).unwrap();
    let mut read = Vec::new();
    store.fetch(&held_ref, &mut read).unwrap();
    assert!(read == held, "the held blob reads back after GC");
    assert!(
        store.fetch(&loose_ref, &mut Vec::new()).is_err(),
        "the unpinned blob without a hold was collected by the same GC"
    );

    // Its pin applies in the channel (releasing the hold): the pin keeps it.
    channel.propose_pin(&held_ref, "held").await.unwrap();
    assert_eq!(pinned(&store).len(), 1);
    store.gc(&no_grace).unwrap();
    let mut read = Vec::new();
    store.fetch(&held_ref, &mut read).unwrap();
    assert!(read == held);
    channel.shutdown().await.unwrap();
    member.stop().await;
}
