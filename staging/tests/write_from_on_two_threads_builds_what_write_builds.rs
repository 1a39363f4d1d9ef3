//! `StagingHandle::write_from` (cut on one thread, stored on another) and
//! `write_from_on_this_thread` build exactly what `write` builds: the same ref for a fresh upload and across stops and resumes (a stop
//! checkpoints only what was cut and takes no more input; the replayed chunk is checked on the cutting thread, also
//! when pieces split it), the same typed errors for a different or a too-short replay, and it
//! falls back to one thread when an earlier `write` left bytes uncut.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::*;
use net_mesh_engine::{BlobRef, TreePolicy};
use net_mesh_staging::{
    CheckpointCadence, InputEnd, Piece, StagingError, StagingHandle, begin_streaming_store,
};

fn cadence() -> CheckpointCadence {
    CheckpointCadence {
        interval_bytes: 20_000,
        at_leaf_close: false,
        max_age_ms: u64::MAX,
    }
}

fn plain_ref(data: &[u8]) -> BlobRef {
    let tmp = tempfile::tempdir().unwrap();
    open(tmp.path(), SMALL_CDC, TINY_TREE)
        .store(data)
        .unwrap()
        .blob_ref
}

/// Gives `data` in pieces of `piece` bytes, then `End` when `end`, else stops (`None`).
fn pieces(data: &[u8], piece: usize, end: bool) -> impl FnMut() -> Option<Piece> + Send + '_ {
    let mut parts = data.chunks(piece);
    let mut done = false;
    move || match parts.next() {
        Some(p) => Some(Piece::Data(p.to_vec().into())),
        None if end && !done => {
            done = true;
            Some(Piece::End)
        }
        None => None,
    }
}

fn write_from(w: &mut StagingHandle<'_>, data: &[u8], piece: usize, end: bool) -> InputEnd {
    w.write_from(pieces(data, piece, end)).unwrap()
}

#[test]
fn a_fresh_upload_gets_the_ref_write_gets() {
    let data = random_bytes(400_000, 21);
    let want = plain_ref(&data);
    assert!(matches!(want, BlobRef::Tree { .. }));
    for piece in [1usize, 999, 4_096, 65_536, 400_000] {
        let tmp = tempfile::tempdir().unwrap();
        let store = open(tmp.path(), SMALL_CDC, TINY_TREE);
        let mut w =
            begin_streaming_store(&store, upload_config("fresh", TINY_TREE, cadence())).unwrap();
        assert_eq!(write_from(&mut w, &data, piece, true), InputEnd::Ended);
        let out = w.finish().unwrap();
        assert_eq!(out.blob_ref, want, "pieces of {piece}");
        assert_eq!(fetch_all(&store, &out.blob_ref), data);
    }
}

/// Gives `data` in pieces whose sizes cycle through `sizes`, then `End`.
fn mixed_pieces<'d>(
    data: &'d [u8],
    sizes: &'d [usize],
) -> impl FnMut() -> Option<Piece> + Send + 'd {
    let mut at = 0;
    let mut sizes = sizes.iter().cycle();
    let mut done = false;
    move || {
        if at < data.len() {
            let size = (*sizes.next().unwrap()).min(data.len() - at);
            at += size;
            return Some(Piece::Data(data[at - size..at].to_vec().into()));
        }
        if done {
            return None;
        }
        done = true;
        Some(Piece::End)
    }
}

/// Large pieces are cut where they lie and small ones gathered first (`SMALL_PIECE` is
/// 64 KiB); chunks that span large pieces, gathered runs and both give the same ref.
#[test]
fn pieces_of_mixed_sizes_give_the_ref_write_gets() {
    let data = random_bytes(700_000, 26);
    let want = plain_ref(&data);
    for sizes in [
        &[70_000, 3, 65_536, 10, 100_000, 65_535, 131_072][..],
        &[65_536, 1][..],
        &[16_383, 65_537][..],
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let store = open(tmp.path(), SMALL_CDC, TINY_TREE);
        let mut w =
            begin_streaming_store(&store, upload_config("mixed", TINY_TREE, cadence())).unwrap();
        assert_eq!(
            w.write_from(mixed_pieces(&data, sizes)).unwrap(),
            InputEnd::Ended
        );
        let out = w.finish().unwrap();
        assert_eq!(out.blob_ref, want, "pieces of {sizes:?}");
        assert_eq!(fetch_all(&store, &out.blob_ref), data);
    }
}

/// The default chunking (chunks of 256 KiB to 4 MiB) over pieces of 1 MiB, as a node
/// receives them: most chunks span several pieces.
#[test]
fn default_chunks_over_pieces_of_a_mebibyte_give_the_ref_store_gets() {
    let data = random_bytes(12 << 20, 27);
    let chunking = net_mesh_engine::ChunkingStrategy::default();
    let tmp = tempfile::tempdir().unwrap();
    let want = open(tmp.path(), chunking, TreePolicy::default())
        .store(&data)
        .unwrap()
        .blob_ref;
    for sizes in [&[1 << 20][..], &[1 << 20, 1, 300_000][..]] {
        let tmp = tempfile::tempdir().unwrap();
        let store = open(tmp.path(), chunking, TreePolicy::default());
        let config = net_mesh_staging::StagingConfig {
            chunking,
            ..upload_config("default", TreePolicy::default(), cadence())
        };
        let mut w = begin_streaming_store(&store, config).unwrap();
        assert_eq!(
            w.write_from(mixed_pieces(&data, sizes)).unwrap(),
            InputEnd::Ended
        );
        let out = w.finish().unwrap();
        assert_eq!(out.blob_ref, want, "pieces of {sizes:?}");
        assert!(out.chunks > 3, "{} chunks", out.chunks);
        assert_eq!(fetch_all(&store, &out.blob_ref), data);
    }
}

/// `write_from_on_this_thread` (cut and stored in turn, as a node does when its cores are
/// busy) gives the same ref, stops and resumes as `write_from`, and refuses a different replay.
#[test]
fn on_this_thread_the_same_refs_stops_and_replay_checks() {
    let data = random_bytes(700_000, 28);
    let want = plain_ref(&data);
    let sizes = [70_000, 3, 65_536, 10, 100_000];
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path(), SMALL_CDC, TINY_TREE);
    let mut w = begin_streaming_store(&store, upload_config("one", TINY_TREE, cadence())).unwrap();
    let end = w
        .write_from_on_this_thread(mixed_pieces(&data, &sizes))
        .unwrap();
    assert_eq!(end, InputEnd::Ended);
    assert_eq!(w.finish().unwrap().blob_ref, want);

    let tmp = tempfile::tempdir().unwrap();
    {
        let store = open(tmp.path(), SMALL_CDC, TINY_TREE);
        let mut w =
            begin_streaming_store(&store, upload_config("stop", TINY_TREE, cadence())).unwrap();
        let end = w
            .write_from_on_this_thread(pieces(&data[..333_333], 5_000, false))
            .unwrap();
        assert_eq!(end, InputEnd::Stopped);
        assert!(w.chunked_bytes() > 300_000, "{}", w.chunked_bytes());
        w.checkpoint().unwrap();
    }
    let store = open(tmp.path(), SMALL_CDC, TINY_TREE);
    let (mut w, from) = resume_live(&store, "stop", cadence()).unwrap();
    assert!(from > 0);
    let mut other = data[from as usize..].to_vec();
    other[10] ^= 0xff;
    let err = w
        .write_from_on_this_thread(pieces(&other, 3_000, true))
        .unwrap_err();
    assert!(matches!(err, StagingError::ReplayMismatch { .. }), "{err}");
    drop(w);
    let (mut w, again) = resume_live(&store, "stop", cadence()).unwrap();
    assert_eq!(again, from);
    let end = w
        .write_from_on_this_thread(mixed_pieces(&data[from as usize..], &sizes))
        .unwrap();
    assert_eq!(end, InputEnd::Ended);
    let out = w.finish().unwrap();
    assert_eq!(out.blob_ref, want);
    assert_eq!(fetch_all(&store, &out.blob_ref), data);
}

#[test]
fn stops_checkpoint_what_was_cut_and_resumes_reach_the_same_ref() {
    let data = random_bytes(400_000, 22);
    let want = plain_ref(&data);
    for (i, stop_at) in [0usize, 3, 33_333, 150_000, 399_999, 400_000]
        .into_iter()
        .enumerate()
    {
        let tmp = tempfile::tempdir().unwrap();
        let id = format!("stop-{i}");
        {
            let store = open(tmp.path(), SMALL_CDC, TINY_TREE);
            let mut w =
                begin_streaming_store(&store, upload_config(&id, TINY_TREE, cadence())).unwrap();
            assert_eq!(
                write_from(&mut w, &data[..stop_at], 7_777, false),
                InputEnd::Stopped
            );
            // Only what was cut is stored: the chunker's tail is re-sent on resume. The
            // handle takes no more input and does not finish, but checkpoints.
            assert!(w.chunked_bytes() <= stop_at as u64);
            assert!(matches!(w.write(b"x").unwrap_err(), StagingError::Failed));
            w.checkpoint().unwrap();
            assert_eq!(w.checkpointed_bytes(), w.chunked_bytes());
        }
        let store = open(tmp.path(), SMALL_CDC, TINY_TREE);
        let (mut w, from) = resume_live(&store, &id, cadence()).unwrap();
        assert!(from as usize <= stop_at, "{stop_at}: resume offset {from}");
        // Pieces of 1,000 bytes split the replayed chunk (SMALL_CDC chunks are larger).
        assert_eq!(
            write_from(&mut w, &data[from as usize..], 1_000, true),
            InputEnd::Ended
        );
        let out = w.finish().unwrap();
        assert_eq!(out.blob_ref, want, "stop at {stop_at}");
        assert_eq!(fetch_all(&store, &out.blob_ref), data);
    }
}

/// An upload of `data` stopped after `upto` bytes, on disk in `dir`.
fn stopped_upload(dir: &std::path::Path, id: &str, data: &[u8], upto: usize) {
    let store = open(dir, SMALL_CDC, TINY_TREE);
    let mut w = begin_streaming_store(&store, upload_config(id, TINY_TREE, cadence())).unwrap();
    write_from(&mut w, &data[..upto], 5_000, false);
    w.checkpoint().unwrap();
}

#[test]
fn a_different_replay_is_refused_on_the_cutting_thread_and_fails_the_handle() {
    let data = random_bytes(120_000, 23);
    let tmp = tempfile::tempdir().unwrap();
    stopped_upload(tmp.path(), "mismatch", &data, 80_000);
    let store = open(tmp.path(), SMALL_CDC, TINY_TREE);
    let (mut w, from) = resume_live(&store, "mismatch", cadence()).unwrap();
    assert!(from > 0);
    let mut other = data[from as usize..].to_vec();
    other[10] ^= 0xff;
    let err = w.write_from(pieces(&other, 3_000, true)).unwrap_err();
    assert!(matches!(err, StagingError::ReplayMismatch { .. }), "{err}");
    assert!(matches!(
        w.write_from(pieces(b"x", 1, true)).unwrap_err(),
        StagingError::Failed
    ));
    drop(w);
    let (mut w, again) = resume_live(&store, "mismatch", cadence()).unwrap();
    assert_eq!(again, from);
    write_from(&mut w, &data[from as usize..], 3_000, true);
    assert_eq!(w.finish().unwrap().blob_ref, plain_ref(&data));
}

#[test]
fn an_input_ending_inside_the_replayed_chunk_is_refused_at_finish() {
    let data = random_bytes(60_000, 24);
    let tmp = tempfile::tempdir().unwrap();
    stopped_upload(tmp.path(), "short", &data, 50_000);
    let store = open(tmp.path(), SMALL_CDC, TINY_TREE);
    let (mut w, from) = resume_live(&store, "short", cadence()).unwrap();
    let one = &data[from as usize..from as usize + 1];
    assert_eq!(write_from(&mut w, one, 1, true), InputEnd::Ended);
    assert!(matches!(
        w.finish().unwrap_err(),
        StagingError::ReplayTooShort { .. }
    ));
}

#[test]
fn bytes_an_earlier_write_left_uncut_are_kept_in_order() {
    let data = random_bytes(300_000, 25);
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path(), SMALL_CDC, TreePolicy::default());
    let mut w = begin_streaming_store(
        &store,
        upload_config("mixed", TreePolicy::default(), cadence()),
    )
    .unwrap();
    // 10 bytes are too few to cut: they wait in the handle's own chunker.
    w.write(&data[..10]).unwrap();
    assert_eq!(w.chunked_bytes(), 0);
    assert_eq!(
        write_from(&mut w, &data[10..], 8_192, true),
        InputEnd::Ended
    );
    let out = w.finish().unwrap();
    let tmp2 = tempfile::tempdir().unwrap();
    let want = open(tmp2.path(), SMALL_CDC, TreePolicy::default())
        .store(&data)
        .unwrap()
        .blob_ref;
    assert_eq!(out.blob_ref, want);
}
