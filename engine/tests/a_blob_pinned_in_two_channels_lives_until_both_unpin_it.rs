//! The same blob pinned in two channels counts each pin: unpinned in one, GC with zero grace
//! keeps it and it reads back; unpinned in the other too, GC removes it. fsck is clean at every
//! step (the recomputed counts include one reference per (channel, blob) row).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod gc_common;

use std::path::Path;

use gc_common::*;
use net_mesh_engine::fsck::ReadData;
use net_mesh_engine::index::pin_roots;
use net_mesh_engine::{DEFAULT_CHANNEL, Unpinned};

fn assert_fsck_clean(dir: &Path) {
    let report = fsck(dir, ReadData::All, false);
    assert!(kinds(&report).is_empty(), "{:?}", report.problems);
}

#[test]
fn a_blob_pinned_in_two_channels_lives_until_both_unpin_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = random_bytes(50_000, 21);
    let put = {
        let store = open(dir);
        let put = store.store_stream(&data[..], "x").unwrap();
        assert!(store.create_channel("photos").unwrap());
        assert!(!store.create_channel("photos").unwrap(), "created twice");
        assert_eq!(
            store.pin_in("photos", &put.blob_ref, "x2").unwrap(),
            put.blob_id
        );
        // Pinning again in the same channel is a no-op.
        store.pin_in("photos", &put.blob_ref, "again").unwrap();
        let channels = store.channels().unwrap();
        let counts: Vec<(String, u64)> =
            channels.iter().map(|c| (c.name.clone(), c.pins)).collect();
        assert_eq!(
            counts,
            vec![(DEFAULT_CHANNEL.to_string(), 1), ("photos".to_string(), 1)]
        );
        let in_photos = store
            .find_pin_in("photos", &hex(&put.blob_id)[..8])
            .unwrap();
        assert_eq!(in_photos.1.name, "x2");
        assert_eq!(in_photos.1.channel, "photos");
        put
    };
    let roots = pin_roots(&put.blob_ref);
    assert!(roots.iter().all(|h| refcount(dir, h) == Some(2)));
    assert_fsck_clean(dir);

    {
        let store = open(dir);
        assert_eq!(store.unpin(&put.blob_id).unwrap(), Unpinned::Removed);
        store.gc(&gc_now()).unwrap();
        assert_eq!(fetch(&store, &put.blob_ref), data);
        assert!(store.pins_in(DEFAULT_CHANNEL).unwrap().pins.is_empty());
        assert_eq!(store.pins().unwrap().pins.len(), 1);
    }
    assert!(roots.iter().all(|h| refcount(dir, h) == Some(1)));
    assert_fsck_clean(dir);

    {
        let store = open(dir);
        assert_eq!(
            store.unpin_in("photos", &put.blob_id).unwrap(),
            Unpinned::Removed
        );
        assert_eq!(
            store.unpin_in("photos", &put.blob_id).unwrap(),
            Unpinned::NotPinned
        );
        let report = store.gc(&gc_now()).unwrap();
        assert!(report.objects_freed > 0, "{report:?}");
        assert!(store.pins().unwrap().pins.is_empty());
    }
    assert!(roots.iter().all(|h| refcount(dir, h).is_none()));
    assert_fsck_clean(dir);
}
