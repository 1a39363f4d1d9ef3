//! Power cuts while blobs are pinned and unpinned: at every sync boundary and at random points,
//! every acknowledged pin is there after reopen and reads back, and no acknowledged unpin comes
//! back. A refused pin (its objects do not exist) in between changes nothing and does not
//! poison the handle.
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
use net_mesh_engine::index::{IndexError, blob_id};
use net_mesh_engine::{BlobRef, StoreConfig, StoreError};
use power_loss::{Effect, Recording, check_all, crash_points, no_extra_check};

fn config() -> StoreConfig {
    StoreConfig {
        chunking: SMALL_CDC,
        tree: TINY_TREE,
        segment_roll_size: 64 * 1024,
        batch_bytes: 32 * 1024,
    }
}

#[test]
fn power_loss_during_pin_and_unpin_keeps_acknowledged_pins() {
    let mut rec = Recording::new(config());
    let a = Arc::new(random_bytes(50_000, 21));
    let b = Arc::new(random_bytes(20_000, 22));
    let pinned = |r: &BlobRef, data: &Arc<Vec<u8>>| {
        vec![Effect::Pinned {
            blob_ref: r.clone(),
            data: Arc::clone(data),
        }]
    };
    {
        let store = rec.open();
        let ref_a = rec.step(|| store.store(&a).unwrap().blob_ref, |r| pinned(r, &a));
        let ref_b = rec.step(|| store.store(&b).unwrap().blob_ref, |r| pinned(r, &b));
        let (id_a, id_b) = (blob_id(&ref_a), blob_id(&ref_b));
        rec.step(
            || {
                assert_eq!(
                    store.unpin(&id_a).unwrap(),
                    net_mesh_engine::Unpinned::Removed
                )
            },
            |_| vec![Effect::Unpinned { id: id_a }],
        );
        rec.step(
            || store.pin(&ref_a, "again").unwrap(),
            |_| pinned(&ref_a, &a),
        );
        rec.step(
            || {
                assert_eq!(
                    store.unpin(&id_b).unwrap(),
                    net_mesh_engine::Unpinned::Removed
                )
            },
            |_| vec![Effect::Unpinned { id: id_b }],
        );
        // A pin of a blob whose objects were never stored is refused; the handle stays usable.
        let ghost = BlobRef::Small {
            hash: [7u8; 32],
            size: 10,
        };
        let refused = store.pin(&ghost, "ghost").unwrap_err();
        assert!(
            matches!(refused, StoreError::Index(IndexError::MissingObject(_))),
            "{refused}"
        );
        rec.step(
            || {
                assert_eq!(
                    store.unpin(&id_a).unwrap(),
                    net_mesh_engine::Unpinned::Removed
                )
            },
            |_| vec![Effect::Unpinned { id: id_a }],
        );
        rec.step(
            || store.pin(&ref_b, "b again").unwrap(),
            |_| pinned(&ref_b, &b),
        );
    }

    let points = crash_points(&rec.disk, 100, 0x5eed_0003);
    let checked = check_all(&rec, &points, &|_, _| false, &no_extra_check);
    let stats = rec.disk.stats();
    eprintln!(
        "pins: {checked} crash points over {} ops ({} syncs)",
        stats.ops, stats.syncs
    );
}
