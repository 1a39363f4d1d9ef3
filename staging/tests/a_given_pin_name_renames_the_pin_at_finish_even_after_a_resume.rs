//! A resumable upload whose pin name the user gave renames the blob's existing pin in its
//! channel when it finishes, also when the upload was interrupted and resumed from its
//! checkpoint (the checkpoint keeps that the name was given: flag bit 0, docs/FORMAT.md §4.2);
//! one whose name is a default (a file name) keeps the name the pin has.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::*;
use net_mesh_engine::{DEFAULT_CHANNEL, Store};
use net_mesh_staging::checkpoint::StagingCheckpoint;
use net_mesh_staging::{CheckpointCadence, StagingConfig, begin_streaming_store};

fn cadence() -> CheckpointCadence {
    CheckpointCadence {
        interval_bytes: 20_000,
        at_leaf_close: false,
        max_age_ms: u64::MAX,
    }
}

fn named(id: &str, name: &str, given: bool) -> StagingConfig {
    StagingConfig {
        staging_id: Some(id.to_string()),
        pin_name: name.to_string(),
        pin_name_given: given,
        cadence: cadence(),
        chunking: SMALL_CDC,
        tree: TINY_TREE,
    }
}

fn pin_name(store: &Store, blob_ref: &net_mesh_engine::BlobRef) -> Option<String> {
    store.pin_name_in(DEFAULT_CHANNEL, blob_ref).unwrap()
}

#[test]
fn a_given_pin_name_renames_the_pin_at_finish_even_after_a_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let data = random_bytes(200_000, 11);
    let blob_ref = {
        let store = open(tmp.path(), SMALL_CDC, TINY_TREE);
        let mut w = begin_streaming_store(&store, named("up-1", "photo", true)).unwrap();
        w.write(&data).unwrap();
        let put = w.finish().unwrap();
        assert_eq!(pin_name(&store, &put.blob_ref).as_deref(), Some("photo"));

        // A default name keeps the pin's name.
        let mut w = begin_streaming_store(&store, named("up-2", "file.bin", false)).unwrap();
        w.write(&data).unwrap();
        w.finish().unwrap();
        assert_eq!(pin_name(&store, &put.blob_ref).as_deref(), Some("photo"));

        // A given name, interrupted after a checkpoint: no finish, no abort.
        let mut w = begin_streaming_store(&store, named("up-3", "renamed", true)).unwrap();
        w.write(&data[..120_000]).unwrap();
        put.blob_ref
    };
    let store = open(tmp.path(), SMALL_CDC, TINY_TREE);
    let (stored_id, stored) = net_mesh_staging::checkpoints(&store)
        .unwrap()
        .into_iter()
        .find(|(id, _)| id == "up-3")
        .unwrap();
    assert_eq!(stored_id, "up-3");
    assert!(
        stored.pin_name_given,
        "the checkpoint keeps that the name was given"
    );
    let (mut w, from) = resume_live(&store, "up-3", cadence()).unwrap();
    w.write(&data[from as usize..]).unwrap();
    let put = w.finish().unwrap();
    assert_eq!(put.blob_ref, blob_ref);
    assert_eq!(pin_name(&store, &blob_ref).as_deref(), Some("renamed"));
    let channels = store.channels().unwrap();
    assert_eq!(channels[0].pins, 1, "one pin row, renamed");
}

/// Flag bit 0 round-trips; any other flag bit is refused.
#[test]
fn the_checkpoint_flag_says_whether_the_pin_name_was_given() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path(), SMALL_CDC, TINY_TREE);
    let mut w = begin_streaming_store(&store, named("up-1", "n", true)).unwrap();
    w.write(&random_bytes(50_000, 3)).unwrap();
    drop(w);
    let (_, stored) = net_mesh_staging::checkpoints(&store).unwrap().remove(0);
    let bytes = stored.encode();
    assert_eq!(bytes[5], 1);
    assert_eq!(StagingCheckpoint::decode(&bytes).unwrap(), stored);
    let mut not_given = stored.clone();
    not_given.pin_name_given = false;
    assert_eq!(not_given.encode()[5], 0);
    for bad in [2u8, 3, 0x80] {
        let mut corrupt = bytes.clone();
        corrupt[5] = bad;
        assert!(StagingCheckpoint::decode(&corrupt).is_err(), "flags {bad}");
    }
}
