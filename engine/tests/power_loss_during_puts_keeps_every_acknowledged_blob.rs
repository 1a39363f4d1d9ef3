//! Power cuts while blobs are put: at every sync boundary and at random points, every blob whose
//! put returned reads back byte for byte after reopen, and fsck finds only reclaimable orphans.
//! The workload starts on an empty disk (so the data dir, `index.redb` and `segments/` are
//! created under it), rolls segments, abandons an upload halfway (its tail is truncated at the
//! next open) and puts again after that reopen.
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
use net_mesh_engine::StoreConfig;
use power_loss::{Effect, Recording, check_all, crash_points, no_extra_check};

fn config() -> StoreConfig {
    StoreConfig {
        chunking: SMALL_CDC,
        tree: TINY_TREE,
        segment_roll_size: 64 * 1024,
        batch_bytes: 32 * 1024,
    }
}

fn pinned(out: &net_mesh_engine::PutOutcome, data: &Arc<Vec<u8>>) -> Vec<Effect> {
    vec![Effect::Pinned {
        blob_ref: out.blob_ref.clone(),
        data: Arc::clone(data),
    }]
}

#[test]
fn power_loss_during_puts_keeps_every_acknowledged_blob() {
    let mut rec = Recording::new(config());
    let small = Arc::new(random_bytes(3_000, 1));
    let tree = Arc::new(random_bytes(100_000, 2));
    let streamed = Arc::new(random_bytes(150_000, 3));
    let abandoned = random_bytes(60_000, 4);
    let after_reopen = Arc::new(random_bytes(40_000, 5));

    {
        let started = rec.now();
        let store = rec.open();
        rec.ack(started, vec![Effect::Other("open")]);
        rec.step(|| store.store(&small).unwrap(), |o| pinned(o, &small));
        rec.step(|| store.store(&tree).unwrap(), |o| pinned(o, &tree));
        rec.step(
            || store.store_stream(&streamed[..], "streamed").unwrap(),
            |o| pinned(o, &streamed),
        );
        // An upload that never finishes: one batch is committed, the rest is appended only.
        let started = rec.now();
        let mut w = store.writer().unwrap();
        w.write(&abandoned).unwrap();
        drop(w);
        rec.abandon(started, vec![Effect::Other("abandoned upload")]);
    }
    {
        let started = rec.now();
        let store = rec.open();
        rec.ack(
            started,
            vec![Effect::Other("reopen (truncates the abandoned tail)")],
        );
        rec.step(
            || store.store(&after_reopen).unwrap(),
            |o| pinned(o, &after_reopen),
        );
    }

    let points = crash_points(&rec.disk, 100, 0x5eed_0001);
    let checked = check_all(&rec, &points, &|_, _| false, &no_extra_check);
    let stats = rec.disk.stats();
    eprintln!(
        "puts: {checked} crash points over {} ops ({} syncs, {} bytes written)",
        stats.ops, stats.syncs, stats.bytes_written
    );
}
