//! Power cuts while an erasure-coded blob is repaired: one of its data chunks is dropped from
//! the index (as `chunk rm --force` does to simulate loss), then `Store::repair` rebuilds it. At
//! every sync boundary and at random points the blob reads back after reopen (rebuilt on the
//! fly while the chunk is missing); fsck reports the missing chunk until the repair is
//! acknowledged, and nothing but reclaimable orphans from then on.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;
mod power_loss;

use std::sync::Arc;

use common::{SMALL_CDC, TINY_TREE, random_bytes};
use net_mesh_engine::error::hex;
use net_mesh_engine::fsck::ProblemKind;
use net_mesh_engine::{ChunkRole, StoreConfig};
use power_loss::{Effect, Recording, Status, check_all, crash_points, no_extra_check};

fn config() -> StoreConfig {
    StoreConfig {
        chunking: SMALL_CDC,
        tree: TINY_TREE,
        segment_roll_size: 64 * 1024,
        batch_bytes: 32 * 1024,
    }
}

#[test]
fn power_loss_during_repair_keeps_erasure_coded_blobs() {
    let mut rec = Recording::new(config());
    let data = Arc::new(random_bytes(80_000, 41));
    let lost;
    {
        let store = rec.open();
        let blob_ref = rec.step(
            || {
                store
                    .store_stream_with_rs(&data[..], 3, 5, "rs")
                    .unwrap()
                    .blob_ref
            },
            |r| {
                vec![Effect::Pinned {
                    blob_ref: r.clone(),
                    data: Arc::clone(&data),
                }]
            },
        );
        let chunks = store.blob_chunks(&blob_ref).unwrap();
        lost = chunks
            .iter()
            .filter(|c| c.role == ChunkRole::Data)
            .nth(2)
            .unwrap()
            .hash;
        rec.step(
            || store.remove_chunk(&lost, true).unwrap(),
            |_| vec![Effect::Other("chunk rm --force")],
        );
        let report = rec.step(
            || store.repair(&blob_ref).unwrap(),
            |_| vec![Effect::Other("repair")],
        );
        assert_eq!(report.chunks_rebuilt, 1, "{report:?}");
    }

    let repair = rec.steps.last().unwrap().clone();
    let lost_hex = hex(&lost);
    let points = crash_points(&rec.disk, 100, 0x5eed_0005);
    let checked = check_all(
        &rec,
        &points,
        &|p, cut| {
            p.kind == ProblemKind::MissingObject
                && p.location.object.as_deref() == Some(lost_hex.as_str())
                && repair.status(cut) != Status::Acked
        },
        &no_extra_check,
    );
    let stats = rec.disk.stats();
    eprintln!(
        "repair: {checked} crash points over {} ops ({} syncs)",
        stats.ops, stats.syncs
    );
}
