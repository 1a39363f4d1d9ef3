//! A resumable upload interrupted at any point (simulated by dropping the writer and the store
//! without finishing, which leaves exactly what a SIGKILL leaves) resumes from its checkpoint
//! and yields the uninterrupted upload's ref; chunks stored after the checkpoint are not stored
//! twice; a different replayed input is a typed error.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::*;
use net_mesh_engine::{BlobRef, ChunkingStrategy, Store, TreePolicy};
use net_mesh_staging::{CheckpointCadence, StagingConfig, StagingError, begin_streaming_store};

fn cadence(interval: u64) -> CheckpointCadence {
    CheckpointCadence {
        interval_bytes: interval,
        at_leaf_close: false,
        max_age_ms: u64::MAX,
    }
}

fn rconfig(id: &str, chunking: ChunkingStrategy, tree: TreePolicy, interval: u64) -> StagingConfig {
    StagingConfig {
        staging_id: Some(id.to_string()),
        pin_name: "input".to_string(),
        pin_name_given: false,
        chunking,
        tree,
        cadence: cadence(interval),
    }
}

fn plain_ref(data: &[u8], chunking: ChunkingStrategy, tree: TreePolicy) -> BlobRef {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path(), chunking, tree);
    store.store(data).unwrap().blob_ref
}

/// Writes `data[from..upto]` in pieces of `piece` bytes.
fn feed(
    w: &mut net_mesh_staging::StagingHandle<'_>,
    data: &[u8],
    from: usize,
    upto: usize,
    piece: usize,
) {
    for part in data[from..upto].chunks(piece) {
        w.write(part).unwrap();
    }
}

#[test]
fn resume_after_crash_at_many_points_yields_the_uninterrupted_ref() {
    let data = random_bytes(400_000, 5);
    let want = plain_ref(&data, SMALL_CDC, TINY_TREE);
    assert!(matches!(want, BlobRef::Tree { .. }));
    for (i, crash_at) in [0usize, 1, 5_000, 33_333, 150_000, 260_001, 399_999, 400_000]
        .into_iter()
        .enumerate()
    {
        let tmp = tempfile::tempdir().unwrap();
        let id = format!("up-{i}");
        {
            let store = open(tmp.path(), SMALL_CDC, TINY_TREE);
            let mut w =
                begin_streaming_store(&store, rconfig(&id, SMALL_CDC, TINY_TREE, 20_000)).unwrap();
            feed(&mut w, &data, 0, crash_at, 7_777);
            // crash: no finish, no abort
        }
        let store = open(tmp.path(), SMALL_CDC, TINY_TREE);
        let (mut w, from) = resume_live(&store, &id, cadence(20_000)).unwrap();
        assert!(
            from as usize <= crash_at,
            "{crash_at}: resume offset {from}"
        );
        feed(&mut w, &data, from as usize, data.len(), 4_096);
        let out = w.finish().unwrap();
        assert_eq!(out.blob_ref, want, "crash at {crash_at}");
        assert_eq!(fetch_all(&store, &out.blob_ref), data);
        assert!(net_mesh_staging::checkpoints(&store).unwrap().is_empty());
        assert_eq!(store.pins().unwrap().pins.len(), 1);
    }
}

#[test]
fn repeated_crashes_and_resumes_converge_on_the_same_ref() {
    let data = random_bytes(300_000, 6);
    let tree = TreePolicy {
        leaf_fanout: 3,
        internal_fanout: 2,
        manifest_max_refs: net_mesh_engine::tree::DEFAULT_MANIFEST_MAX_REFS,
    };
    let want = plain_ref(&data, SMALL_CDC, tree);
    let tmp = tempfile::tempdir().unwrap();
    {
        let store = open(tmp.path(), SMALL_CDC, tree);
        let mut w =
            begin_streaming_store(&store, rconfig("multi", SMALL_CDC, tree, 10_000)).unwrap();
        feed(&mut w, &data, 0, 40_000, 1_000);
    }
    let mut stop = 40_000usize;
    for step in [60_000usize, 91_000, 150_000, 220_000] {
        stop += step / 3;
        let store = open(tmp.path(), SMALL_CDC, tree);
        let (mut w, from) = resume_live(&store, "multi", cadence(10_000)).unwrap();
        feed(&mut w, &data, from as usize, stop.min(data.len()), 3_000);
    }
    let store = open(tmp.path(), SMALL_CDC, tree);
    let (mut w, from) = resume_live(&store, "multi", cadence(10_000)).unwrap();
    feed(&mut w, &data, from as usize, data.len(), 65_536);
    let out = w.finish().unwrap();
    assert_eq!(out.blob_ref, want);
    assert_eq!(fetch_all(&store, &out.blob_ref), data);
}

#[test]
fn chunks_stored_after_the_checkpoint_are_deduplicated_on_resume() {
    let data = random_bytes(200_000, 7);
    let tmp = tempfile::tempdir().unwrap();
    {
        let store = open(tmp.path(), SMALL_CDC, TreePolicy::default());
        let mut w = begin_streaming_store(
            &store,
            rconfig("dedup", SMALL_CDC, TreePolicy::default(), 1 << 40),
        )
        .unwrap();
        feed(&mut w, &data, 0, 100_000, 10_000);
        w.checkpoint().unwrap();
        // Covered by the checkpoint: everything cut so far.
        assert!(w.checkpointed_bytes() > 50_000);
    }
    let store = open(tmp.path(), SMALL_CDC, TreePolicy::default());
    let (mut w, from) = resume_live(&store, "dedup", cadence(1 << 40)).unwrap();
    feed(&mut w, &data, from as usize, data.len(), 10_000);
    let out = w.finish().unwrap();
    // Only bytes after the checkpoint (plus the uncut tail) are new.
    assert!(
        out.new_bytes <= (data.len() as u64 - from) + 16_384,
        "new {} from {from}",
        out.new_bytes
    );
    // A plain upload of the same bytes now stores nothing new.
    assert_eq!(store.store(&data).unwrap().new_bytes, 0);
}

#[test]
fn replaying_a_different_input_is_a_typed_error() {
    let data = random_bytes(120_000, 8);
    let tmp = tempfile::tempdir().unwrap();
    {
        let store = open(tmp.path(), SMALL_CDC, TINY_TREE);
        let mut w =
            begin_streaming_store(&store, rconfig("mismatch", SMALL_CDC, TINY_TREE, 10_000))
                .unwrap();
        feed(&mut w, &data, 0, 80_000, 5_000);
    }
    let store = open(tmp.path(), SMALL_CDC, TINY_TREE);
    let (mut w, from) = resume_live(&store, "mismatch", cadence(10_000)).unwrap();
    assert!(from > 0);
    let mut other = data[from as usize..].to_vec();
    other[10] ^= 0xff;
    let err = w.write(&other).unwrap_err();
    assert!(matches!(err, StagingError::ReplayMismatch { .. }), "{err}");
    // The handle refuses further use; the checkpoint is still there to resume correctly.
    assert!(matches!(w.write(b"x").unwrap_err(), StagingError::Failed));
    drop(w);
    let (mut w, from2) = resume_live(&store, "mismatch", cadence(10_000)).unwrap();
    assert_eq!(from, from2);
    w.write(&data[from2 as usize..]).unwrap();
    let out = w.finish().unwrap();
    assert_eq!(out.blob_ref, plain_ref(&data, SMALL_CDC, TINY_TREE));
}

#[test]
fn input_shorter_than_the_replayed_chunk_is_a_typed_error() {
    let data = random_bytes(60_000, 9);
    let tmp = tempfile::tempdir().unwrap();
    {
        let store = open(tmp.path(), SMALL_CDC, TINY_TREE);
        let mut w =
            begin_streaming_store(&store, rconfig("short", SMALL_CDC, TINY_TREE, 5_000)).unwrap();
        feed(&mut w, &data, 0, 50_000, 5_000);
    }
    let store = open(tmp.path(), SMALL_CDC, TINY_TREE);
    let (mut w, from) = resume_live(&store, "short", cadence(5_000)).unwrap();
    w.write(&data[from as usize..from as usize + 1]).unwrap();
    assert!(matches!(
        w.finish().unwrap_err(),
        StagingError::ReplayTooShort { .. }
    ));
}

#[test]
fn begin_twice_with_one_id_and_unknown_ids_are_typed_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path(), SMALL_CDC, TINY_TREE);
    let _w = begin_streaming_store(&store, rconfig("same", SMALL_CDC, TINY_TREE, 5_000)).unwrap();
    assert!(matches!(
        begin_streaming_store(&store, rconfig("same", SMALL_CDC, TINY_TREE, 5_000)).unwrap_err(),
        StagingError::Exists(_)
    ));
    assert!(matches!(
        resume_live(&store, "nope", cadence(5_000)).unwrap_err(),
        StagingError::NotFound(_)
    ));
    assert!(matches!(
        begin_streaming_store(&store, rconfig("bad id!", SMALL_CDC, TINY_TREE, 5_000)).unwrap_err(),
        StagingError::InvalidId(_)
    ));
    // The store is not poisoned by refused staging changes.
    store.store(b"still writable").unwrap();
}

#[test]
fn a_stale_handle_cannot_overwrite_a_newer_checkpoint() {
    let data = random_bytes(100_000, 10);
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path(), SMALL_CDC, TINY_TREE);
    let mut a =
        begin_streaming_store(&store, rconfig("race", SMALL_CDC, TINY_TREE, 1 << 40)).unwrap();
    feed(&mut a, &data, 0, 30_000, 5_000);
    a.checkpoint().unwrap();
    let (mut b, from) = resume_live(&store, "race", cadence(1 << 40)).unwrap();
    feed(&mut b, &data, from as usize, 60_000, 5_000);
    b.checkpoint().unwrap();
    let err = a.checkpoint().unwrap_err();
    assert!(matches!(err, StagingError::Conflict { .. }), "{err}");
    store.store(b"still writable").unwrap();
    feed(&mut b, &data, 60_000, data.len(), 5_000);
    assert_eq!(
        b.finish().unwrap().blob_ref,
        plain_ref(&data, SMALL_CDC, TINY_TREE)
    );
}

#[test]
fn resent_bytes_after_a_crash_stay_within_one_checkpoint_interval() {
    let interval = 64 * 1024u64;
    let data = random_bytes(1_500_000, 11);
    let max_chunk = 16_384u64;
    let mut worst = 0u64;
    for crash_at in (100_000..1_500_000).step_by(97_301) {
        let tmp = tempfile::tempdir().unwrap();
        {
            let store = open(tmp.path(), SMALL_CDC, TreePolicy::default());
            let mut w = begin_streaming_store(
                &store,
                StagingConfig {
                    cadence: CheckpointCadence {
                        interval_bytes: interval,
                        ..CheckpointCadence::default()
                    },
                    ..rconfig("resent", SMALL_CDC, TreePolicy::default(), interval)
                },
            )
            .unwrap();
            feed(&mut w, &data, 0, crash_at, 32_768);
        }
        let store: Store = open(tmp.path(), SMALL_CDC, TreePolicy::default());
        let (_w, from) = resume_live(&store, "resent", cadence(interval)).unwrap();
        let resent = crash_at as u64 - from;
        worst = worst.max(resent);
        // interval since the checkpoint + the uncut tail in the chunker + the replayed chunk
        assert!(
            resent <= interval + 2 * max_chunk,
            "crash at {crash_at}: resent {resent}"
        );
    }
    eprintln!("worst resent bytes: {worst} (interval {interval})");
}

#[test]
fn fixed_chunking_and_manifest_and_small_blobs_resume_too() {
    for (len, chunking) in [
        (0usize, SMALL_CDC),
        (500, SMALL_CDC),
        (30_000, ChunkingStrategy::Fixed { size: 4_096 }),
        (90_000, ChunkingStrategy::Fixed { size: 4_096 }),
    ] {
        let data = random_bytes(len, 12);
        let tree = TreePolicy {
            leaf_fanout: 16,
            internal_fanout: 2,
            manifest_max_refs: net_mesh_engine::tree::DEFAULT_MANIFEST_MAX_REFS,
        };
        let tmp = tempfile::tempdir().unwrap();
        {
            let store = open(tmp.path(), chunking, tree);
            let mut w = begin_streaming_store(&store, rconfig("k", chunking, tree, 8_000)).unwrap();
            feed(&mut w, &data, 0, len / 2, 1_000);
        }
        let store = open(tmp.path(), chunking, tree);
        let (mut w, from) = resume_live(&store, "k", cadence(8_000)).unwrap();
        if (from as usize) < len {
            feed(&mut w, &data, from as usize, len, 1_000);
        }
        let out = w.finish().unwrap();
        assert_eq!(out.blob_ref, plain_ref(&data, chunking, tree), "len {len}");
        assert_eq!(fetch_all(&store, &out.blob_ref), data);
    }
}
