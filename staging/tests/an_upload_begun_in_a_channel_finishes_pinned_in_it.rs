//! An upload begun in channel `photos` finishes pinned in `photos` (and nowhere else), also
//! after a crash and a resume: the channel is part of the checkpoint. Beginning in a channel
//! the store does not have, or with a bad channel name, is refused and stores no checkpoint.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::*;
use net_mesh_engine::fsck::ReadData;
use net_mesh_engine::{DEFAULT_CHANNEL, StoreError, TreePolicy};
use net_mesh_staging::{
    CheckpointCadence, StagingError, begin_streaming_store_in, checkpoint_of, list_staging,
};

fn cadence() -> CheckpointCadence {
    CheckpointCadence {
        interval_bytes: 16_384,
        at_leaf_close: false,
        max_age_ms: u64::MAX,
    }
}

#[test]
fn an_upload_begun_in_a_channel_finishes_pinned_in_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = random_bytes(200_000, 5);
    {
        let store = open(dir, SMALL_CDC, TreePolicy::default());
        // A channel the store does not have, and a bad name: refused, nothing stored.
        let e = begin_streaming_store_in(
            &store,
            "photos",
            upload_config("up", TreePolicy::default(), cadence()),
        )
        .unwrap_err();
        assert!(
            matches!(&e, StagingError::Store(StoreError::NoSuchChannel(c)) if c == "photos"),
            "{e:?}"
        );
        let e = begin_streaming_store_in(
            &store,
            "*",
            upload_config("up", TreePolicy::default(), cadence()),
        )
        .unwrap_err();
        assert!(
            matches!(&e, StagingError::Store(StoreError::ChannelName(_))),
            "{e:?}"
        );
        assert!(list_staging(&store).unwrap().is_empty());

        assert!(store.create_channel("photos").unwrap());
        let mut w = begin_streaming_store_in(
            &store,
            "photos",
            upload_config("up", TreePolicy::default(), cadence()),
        )
        .unwrap();
        assert_eq!(w.channel(), "photos");
        for part in data[..90_000].chunks(7_000) {
            w.write(part).unwrap();
        }
        // Crash: the handle is dropped with checkpoints committed.
    }
    let store = open(dir, SMALL_CDC, TreePolicy::default());
    let stored = checkpoint_of(&store, "up").unwrap().unwrap();
    assert_eq!(stored.channel, "photos");
    assert_eq!(list_staging(&store).unwrap()[0].channel, "photos");
    let (mut w, from) = resume_live(&store, "up", cadence()).unwrap();
    assert_eq!(w.channel(), "photos");
    for part in data[from as usize..].chunks(7_000) {
        w.write(part).unwrap();
    }
    let out = w.finish().unwrap();

    let photos = store.pins_in("photos").unwrap();
    assert_eq!(photos.pins.len(), 1);
    assert_eq!(photos.pins[0].0, out.blob_id);
    assert_eq!(photos.pins[0].1.channel, "photos");
    assert_eq!(photos.pins[0].1.name, "up");
    assert!(store.pins_in(DEFAULT_CHANNEL).unwrap().pins.is_empty());
    assert_eq!(fetch_all(&store, &out.blob_ref), data);
    drop(store);
    let report = fsck(dir, config(SMALL_CDC, TreePolicy::default()), ReadData::All);
    assert!(kinds(&report).is_empty(), "{:?}", report.problems);
}
