//! A checkpoint written before channels (version 2: no channel field) resumes into channel
//! `default`: an upload begun in `photos` whose stored checkpoint is rewritten at the old layout
//! finishes pinned in `default`, and its next checkpoint is written at the current version.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::path::Path;

use common::*;
use net_mesh_engine::fsck::ReadData;
use net_mesh_engine::{DEFAULT_CHANNEL, TreePolicy};
use net_mesh_staging::checkpoint::layout::{FIXED_LEN, PIN_NAME_LEN_OFFSET, VERSION_OFFSET};
use net_mesh_staging::checkpoint::{CHECKPOINT_VERSION, CHECKPOINT_VERSION_V2};
use net_mesh_staging::{CheckpointCadence, begin_streaming_store_in, checkpoint_of};
use redb::{ReadableTable, TableDefinition};

const UPLOADS: TableDefinition<&str, &[u8]> = TableDefinition::new("ext.staging.uploads_v1");

fn cadence() -> CheckpointCadence {
    CheckpointCadence {
        interval_bytes: 16_384,
        at_leaf_close: false,
        max_age_ms: u64::MAX,
    }
}

/// Rewrites the stored checkpoint of `id` at version 2 (no channel after the pin name). The
/// store must be closed.
fn rewrite_as_version_2(dir: &Path, id: &str) {
    let db = redb::Database::open(dir.join("index.redb")).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut t = txn.open_table(UPLOADS).unwrap();
        let mut v = t.get(id).unwrap().unwrap().value().to_vec();
        assert_eq!(v[VERSION_OFFSET], CHECKPOINT_VERSION);
        v[VERSION_OFFSET] = CHECKPOINT_VERSION_V2;
        let name_len =
            u16::from_le_bytes([v[PIN_NAME_LEN_OFFSET], v[PIN_NAME_LEN_OFFSET + 1]]) as usize;
        let channel_at = FIXED_LEN + name_len;
        let channel_len = v[channel_at] as usize;
        assert_eq!(&v[channel_at + 1..channel_at + 1 + channel_len], b"photos");
        v.drain(channel_at..channel_at + 1 + channel_len);
        t.insert(id, v.as_slice()).unwrap();
    }
    txn.commit().unwrap();
}

fn stored_version(dir: &Path, id: &str) -> u8 {
    let db = redb::Database::open(dir.join("index.redb")).unwrap();
    let txn = db.begin_write().unwrap();
    let t = txn.open_table(UPLOADS).unwrap();
    t.get(id).unwrap().unwrap().value()[VERSION_OFFSET]
}

#[test]
fn an_old_format_checkpoint_resumes_into_the_default_channel() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = random_bytes(200_000, 6);
    {
        let store = open(dir, SMALL_CDC, TreePolicy::default());
        store.create_channel("photos").unwrap();
        let mut w = begin_streaming_store_in(
            &store,
            "photos",
            upload_config("old", TreePolicy::default(), cadence()),
        )
        .unwrap();
        for part in data[..80_000].chunks(7_000) {
            w.write(part).unwrap();
        }
    }
    rewrite_as_version_2(dir, "old");
    {
        let store = open(dir, SMALL_CDC, TreePolicy::default());
        let stored = checkpoint_of(&store, "old").unwrap().unwrap();
        assert_eq!(stored.channel, DEFAULT_CHANNEL);
        let (mut w, from) = resume_live(&store, "old", cadence()).unwrap();
        assert_eq!(w.channel(), DEFAULT_CHANNEL);
        for part in data[from as usize..120_000].chunks(7_000) {
            w.write(part).unwrap();
        }
        w.checkpoint().unwrap();
    }
    assert_eq!(stored_version(dir, "old"), CHECKPOINT_VERSION);
    let store = open(dir, SMALL_CDC, TreePolicy::default());
    let (mut w, from) = resume_live(&store, "old", cadence()).unwrap();
    for part in data[from as usize..].chunks(7_000) {
        w.write(part).unwrap();
    }
    let out = w.finish().unwrap();
    let default = store.pins_in(DEFAULT_CHANNEL).unwrap();
    assert_eq!(default.pins.len(), 1);
    assert_eq!(default.pins[0].0, out.blob_id);
    assert!(store.pins_in("photos").unwrap().pins.is_empty());
    assert_eq!(fetch_all(&store, &out.blob_ref), data);
    drop(store);
    let report = fsck(dir, config(SMALL_CDC, TreePolicy::default()), ReadData::All);
    assert!(kinds(&report).is_empty(), "{:?}", report.problems);
}
