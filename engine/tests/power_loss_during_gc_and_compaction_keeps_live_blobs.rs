//! Power cuts during GC and compaction: at every sync boundary and at random points, every blob
//! still pinned reads back after reopen, unpinned blobs stay unpinned, a segment file that an
//! acknowledged GC removed does not come back, and fsck finds only reclaimable orphans (records
//! awaiting compaction, segment files a cut GC had not yet unlinked). The workload fills several
//! small segments, unpins half the blobs, collects and compacts, and puts again afterwards.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;
mod power_loss;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::{SMALL_CDC, TINY_TREE, random_bytes};
use net_mesh_engine::index::blob_id;
use net_mesh_engine::{GcOptions, Store, StoreConfig};
use net_mesh_segments::SegmentId;
use power_loss::{Effect, Recording, check_all, crash_points, no_extra_check};

fn config() -> StoreConfig {
    StoreConfig {
        chunking: SMALL_CDC,
        tree: TINY_TREE,
        segment_roll_size: 32 * 1024,
        batch_bytes: 16 * 1024,
    }
}

fn segment_ids(store: &Store) -> BTreeSet<SegmentId> {
    store.index().segments().unwrap().into_keys().collect()
}

#[test]
fn power_loss_during_gc_and_compaction_keeps_live_blobs() {
    let mut rec = Recording::new(config());
    let blobs: Vec<Arc<Vec<u8>>> = (0..4)
        .map(|i| Arc::new(random_bytes(40_000, 30 + i)))
        .collect();
    let late = Arc::new(random_bytes(20_000, 39));
    let gc = GcOptions {
        grace: Duration::ZERO,
        dry_run: false,
        compact_threshold: 0.6,
        ..GcOptions::default()
    };
    {
        let store = rec.open();
        let mut refs = Vec::new();
        for data in &blobs {
            let r = rec.step(
                || store.store(data).unwrap().blob_ref,
                |r| {
                    vec![Effect::Pinned {
                        blob_ref: r.clone(),
                        data: Arc::clone(data),
                    }]
                },
            );
            refs.push(r);
        }
        for r in [&refs[1], &refs[2]] {
            let id = blob_id(r);
            rec.step(
                || {
                    assert_eq!(
                        store.unpin(&id).unwrap(),
                        net_mesh_engine::Unpinned::Removed
                    )
                },
                |_| vec![Effect::Unpinned { id }],
            );
        }
        let before = segment_ids(&store);
        let report = rec.step(
            || store.gc(&gc).unwrap(),
            |_| {
                let removed = before.difference(&segment_ids(&store)).copied().collect();
                vec![Effect::SegmentsRemoved(removed)]
            },
        );
        assert!(report.objects_freed > 0, "{report:?}");
        assert!(report.segments_removed > 0, "{report:?}");
        rec.step(
            || store.store(&late).unwrap().blob_ref,
            |r| {
                vec![Effect::Pinned {
                    blob_ref: r.clone(),
                    data: Arc::clone(&late),
                }]
            },
        );
        let id = blob_id(&refs[0]);
        rec.step(
            || {
                assert_eq!(
                    store.unpin(&id).unwrap(),
                    net_mesh_engine::Unpinned::Removed
                )
            },
            |_| vec![Effect::Unpinned { id }],
        );
        let before = segment_ids(&store);
        rec.step(
            || store.gc(&gc).unwrap(),
            |_| {
                let removed = before.difference(&segment_ids(&store)).copied().collect();
                vec![Effect::SegmentsRemoved(removed)]
            },
        );
    }

    let points = crash_points(&rec.disk, 100, 0x5eed_0004);
    let checked = check_all(&rec, &points, &|_, _| false, &no_extra_check);
    let stats = rec.disk.stats();
    eprintln!(
        "gc: {checked} crash points over {} ops ({} syncs)",
        stats.ops, stats.syncs
    );
}
