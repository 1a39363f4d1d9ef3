//! The Manifest → Tree cross-over is part of the tree policy a checkpoint records: a resumed
//! upload finishes with the cross-over it began with, whatever the resuming store's config; a
//! version 1 checkpoint (written before the field existed, under the table name older builds
//! used) resumes with the default cross-over.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::path::Path;

use common::*;
use net_mesh_engine::{BlobRef, TreePolicy};
use net_mesh_staging::checkpoint::layout::{
    FIXED_LEN, MANIFEST_MAX_REFS_OFFSET, PIN_NAME_LEN_OFFSET, VERSION_OFFSET,
};
use net_mesh_staging::checkpoint::{CHECKPOINT_VERSION, CHECKPOINT_VERSION_V1};
use net_mesh_staging::{CheckpointCadence, StagingConfig, begin_streaming_store};
use redb::{ReadableTable, TableDefinition};

const UPLOADS: TableDefinition<&str, &[u8]> = TableDefinition::new("ext.staging.uploads_v1");
const LEGACY_UPLOADS: TableDefinition<&str, &[u8]> = TableDefinition::new("staging_v1");

fn cadence() -> CheckpointCadence {
    CheckpointCadence {
        interval_bytes: 16_384,
        at_leaf_close: false,
        max_age_ms: u64::MAX,
    }
}

/// Begins an upload of `data` under `policy`, feeds `upto` bytes and "crashes".
fn begin_and_crash(dir: &Path, id: &str, policy: TreePolicy, data: &[u8], upto: usize) {
    let store = open(dir, SMALL_CDC, policy);
    let mut w = begin_streaming_store(
        &store,
        StagingConfig {
            staging_id: Some(id.into()),
            pin_name: "in".into(),
            pin_name_given: false,
            chunking: SMALL_CDC,
            tree: policy,
            cadence: cadence(),
        },
    )
    .unwrap();
    for part in data[..upto].chunks(5_000) {
        w.write(part).unwrap();
    }
}

fn resume_to_end(dir: &Path, id: &str, data: &[u8]) -> BlobRef {
    let store = open(dir, SMALL_CDC, TreePolicy::default());
    let (mut w, from) = resume_live(&store, id, cadence()).unwrap();
    for part in data[from as usize..].chunks(5_000) {
        w.write(part).unwrap();
    }
    let r = w.finish().unwrap().blob_ref;
    assert_eq!(fetch_all(&store, &r), data);
    r
}

fn plain_ref(data: &[u8], policy: TreePolicy) -> BlobRef {
    let tmp = tempfile::tempdir().unwrap();
    open(tmp.path(), SMALL_CDC, policy)
        .store(data)
        .unwrap()
        .blob_ref
}

/// Rewrites the stored checkpoint of `id` with `edit` and moves it to the table older builds
/// used (`staging_v1`), as a store written by such a build has it. The store must be closed.
fn rewrite_as_legacy(dir: &Path, id: &str, edit: impl FnOnce(Vec<u8>) -> Vec<u8>) -> Vec<u8> {
    let db = redb::Database::open(dir.join("index.redb")).unwrap();
    let txn = db.begin_write().unwrap();
    let old = txn
        .open_table(UPLOADS)
        .unwrap()
        .get(id)
        .unwrap()
        .unwrap()
        .value()
        .to_vec();
    assert!(txn.delete_table(UPLOADS).unwrap());
    txn.open_table(LEGACY_UPLOADS)
        .unwrap()
        .insert(id, edit(old.clone()).as_slice())
        .unwrap();
    txn.commit().unwrap();
    old
}

#[test]
fn a_resumed_upload_finishes_with_the_cross_over_it_began_with() {
    // ~70 chunks: a Manifest under an 8192-ref cross-over, a Tree under the default.
    let data = random_bytes(300_000, 11);
    let wide = TreePolicy {
        manifest_max_refs: 8192,
        ..TreePolicy::default()
    };
    let want = plain_ref(&data, wide);
    assert!(matches!(want, BlobRef::Manifest { ref chunks, .. } if chunks.len() > 30));
    let tmp = tempfile::tempdir().unwrap();
    begin_and_crash(tmp.path(), "wide", wide, &data, 120_000);
    // Resumed by a store whose own config has the default cross-over.
    assert_eq!(resume_to_end(tmp.path(), "wide", &data), want);
}

#[test]
fn a_version_1_checkpoint_resumes_with_the_default_cross_over() {
    let data = random_bytes(300_000, 12);
    let want = plain_ref(&data, TreePolicy::default());
    assert!(matches!(want, BlobRef::Tree { .. }));
    let tmp = tempfile::tempdir().unwrap();
    // Began with the old cross-over; stored as version 1, which cannot say so.
    let wide = TreePolicy {
        manifest_max_refs: 8192,
        ..TreePolicy::default()
    };
    begin_and_crash(tmp.path(), "old", wide, &data, 150_000);
    let current = rewrite_as_legacy(tmp.path(), "old", |mut v| {
        v[VERSION_OFFSET] = CHECKPOINT_VERSION_V1;
        // Version 1 has neither the channel after the pin name nor the cross-over field.
        let name_len =
            u16::from_le_bytes([v[PIN_NAME_LEN_OFFSET], v[PIN_NAME_LEN_OFFSET + 1]]) as usize;
        let channel_at = FIXED_LEN + name_len;
        let channel_len = v[channel_at] as usize;
        v.drain(channel_at..channel_at + 1 + channel_len);
        v.drain(MANIFEST_MAX_REFS_OFFSET..MANIFEST_MAX_REFS_OFFSET + 4);
        v
    });
    assert_eq!(current[VERSION_OFFSET], CHECKPOINT_VERSION);
    {
        // Opening renames the legacy table into staging's namespace.
        let store = open(tmp.path(), SMALL_CDC, TreePolicy::default());
        let (_, stored) = net_mesh_staging::checkpoints(&store)
            .unwrap()
            .pop()
            .unwrap();
        assert_eq!(stored.tree.policy, TreePolicy::default());
    }
    assert_eq!(resume_to_end(tmp.path(), "old", &data), want);
}
