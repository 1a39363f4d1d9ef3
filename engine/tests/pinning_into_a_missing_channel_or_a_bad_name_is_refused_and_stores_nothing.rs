//! Pinning into a channel the store does not have is refused with `NoSuchChannel` inside the
//! commit — nothing of the batch is written, the handle stays usable — and a bad channel name is
//! refused with `ChannelName` before anything is written, by every API that takes a channel.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod gc_common;

use gc_common::*;
use net_mesh_engine::fsck::ReadData;
use net_mesh_engine::index::pin_roots;
use net_mesh_engine::{Classify, ErrorClass, StoreError};

#[test]
fn pinning_into_a_missing_channel_or_a_bad_name_is_refused_and_stores_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = random_bytes(40_000, 31);
    let put = {
        let store = open(dir);
        let put = store.store_stream(&data[..], "x").unwrap();

        let e = store.pin_in("nope", &put.blob_ref, "y").unwrap_err();
        assert!(
            matches!(&e, StoreError::NoSuchChannel(c) if c == "nope"),
            "{e:?}"
        );
        assert_eq!(e.class(), ErrorClass::NotFound);
        for bad in ["", "*", ".x", "Upper", "a/b", &"a".repeat(65)] {
            let e = store.pin_in(bad, &put.blob_ref, "y").unwrap_err();
            assert!(matches!(e, StoreError::ChannelName(_)), "{bad:?}: {e:?}");
            assert_eq!(e.class(), ErrorClass::Usage);
            assert!(store.create_channel(bad).is_err(), "{bad:?}");
        }
        // A whole upload into a missing channel: its last commit is refused, nothing is pinned.
        let other = random_bytes(30_000, 32);
        let e = store.store_stream_in("nope", &other[..], "z").unwrap_err();
        assert!(matches!(e, StoreError::NoSuchChannel(_)), "{e:?}");
        // An import pinning into it: refused at commit.
        let mut importer = store.importer().unwrap();
        importer.pin_in("nope", &put.blob_ref, "w").unwrap();
        assert!(matches!(
            importer.commit().unwrap_err(),
            StoreError::NoSuchChannel(_)
        ));
        assert!(matches!(
            store.importer().unwrap().pin_in("*", &put.blob_ref, "w"),
            Err(StoreError::ChannelName(_))
        ));

        let listing = store.pins().unwrap();
        assert_eq!(listing.pins.len(), 1);
        assert!(listing.bad.is_empty());
        assert_eq!(store.channels().unwrap().len(), 1);
        assert!(store.pins_in("nope").unwrap().pins.is_empty());
        // Still usable: the handle was not poisoned.
        store.create_channel("nope").unwrap();
        store.pin_in("nope", &put.blob_ref, "y").unwrap();
        assert_eq!(store.pins_in("nope").unwrap().pins.len(), 1);
        put
    };
    // The refused pins added no reference: one per pin row that exists.
    assert!(
        pin_roots(&put.blob_ref)
            .iter()
            .all(|h| refcount(dir, h) == Some(2))
    );
    let report = fsck(dir, ReadData::All, false);
    assert!(kinds(&report).is_empty(), "{:?}", report.problems);
    let store = open(dir);
    store.gc(&gc_now()).unwrap();
    assert_eq!(fetch(&store, &put.blob_ref), data);
}
