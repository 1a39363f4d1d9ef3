//! An upload whose channel disappeared before it finished (its `channels_v1` row removed while
//! the store was closed) is refused at finish with `NoSuchChannel`: nothing is pinned, the store
//! stays usable and the upload stays live; once the channel exists again, the resumed upload
//! finishes pinned in it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::path::Path;

use common::*;
use net_mesh_engine::{StoreError, TreePolicy};
use net_mesh_staging::{CheckpointCadence, StagingError, begin_streaming_store_in, list_staging};
use redb::TableDefinition;

const CHANNELS: TableDefinition<&str, &[u8]> = TableDefinition::new("channels_v1");

fn cadence() -> CheckpointCadence {
    CheckpointCadence {
        interval_bytes: 16_384,
        at_leaf_close: false,
        max_age_ms: u64::MAX,
    }
}

/// Removes channel `name`'s row. The store must be closed.
fn remove_channel_row(dir: &Path, name: &str) {
    let db = redb::Database::open(dir.join("index.redb")).unwrap();
    let txn = db.begin_write().unwrap();
    assert!(
        txn.open_table(CHANNELS)
            .unwrap()
            .remove(name)
            .unwrap()
            .is_some()
    );
    txn.commit().unwrap();
}

#[test]
fn finishing_into_a_channel_that_no_longer_exists_is_refused_and_pins_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = random_bytes(150_000, 7);
    {
        let store = open(dir, SMALL_CDC, TreePolicy::default());
        store.create_channel("gone").unwrap();
        let mut w = begin_streaming_store_in(
            &store,
            "gone",
            upload_config("up", TreePolicy::default(), cadence()),
        )
        .unwrap();
        for part in data[..60_000].chunks(7_000) {
            w.write(part).unwrap();
        }
    }
    remove_channel_row(dir, "gone");
    let store = open(dir, SMALL_CDC, TreePolicy::default());
    let (mut w, from) = resume_live(&store, "up", cadence()).unwrap();
    for part in data[from as usize..].chunks(7_000) {
        w.write(part).unwrap();
    }
    let e = w.finish().unwrap_err();
    assert!(
        matches!(&e, StagingError::Store(StoreError::NoSuchChannel(c)) if c == "gone"),
        "{e:?}"
    );
    assert!(store.pins().unwrap().pins.is_empty());
    assert_eq!(
        list_staging(&store).unwrap().len(),
        1,
        "the upload is still live"
    );
    // The handle is not poisoned: another write works.
    store.store(b"still usable").unwrap();

    assert!(store.create_channel("gone").unwrap());
    let (mut w, from) = resume_live(&store, "up", cadence()).unwrap();
    for part in data[from as usize..].chunks(7_000) {
        w.write(part).unwrap();
    }
    let out = w.finish().unwrap();
    let pins = store.pins_in("gone").unwrap().pins;
    assert_eq!(pins.len(), 1);
    assert_eq!(pins[0].0, out.blob_id);
    assert_eq!(fetch_all(&store, &out.blob_ref), data);
}
