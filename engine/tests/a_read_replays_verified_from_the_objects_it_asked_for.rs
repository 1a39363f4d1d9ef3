//! A verified read can run over any object source: the objects a read of the store asked for,
//! in the order it asked (`Store::read_objects`), replayed to `fetch_range_from` give the same
//! bytes — also for an erasure-coded blob with a lost chunk (the replay hands on the store's
//! error, and both sides rebuild from parity). A replay with one byte changed in any object
//! fails with an integrity error and never yields wrong bytes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::cell::RefCell;
use std::collections::VecDeque;

use common::*;
use net_mesh_engine::codec::Hash;
use net_mesh_engine::{
    BlobError, BlobRef, Classify, ErrorClass, ObjectKind, ObjectSource, Store, fetch_range_from,
};

/// What the store answered for one object.
type Answer = (Hash, ObjectKind, Result<Vec<u8>, String>);
/// What the store answered for each object, in order.
type Recorded = Vec<Answer>;

fn record(store: &Store, blob: &BlobRef, range: std::ops::Range<u64>) -> Recorded {
    let mut out = Vec::new();
    store
        .read_objects(blob, range, &mut |hash, kind, answer| {
            let answer = answer.map(|b| b.to_vec()).map_err(|e| e.to_string());
            out.push((*hash, kind, answer));
            true
        })
        .unwrap();
    out
}

/// Hands the recorded answers on in order; asks for anything else are a test failure.
struct Replay(RefCell<VecDeque<Answer>>);

impl ObjectSource for Replay {
    fn object(
        &self,
        hash: &Hash,
        kind: ObjectKind,
        what: &'static str,
    ) -> Result<bytes::Bytes, BlobError> {
        let (h, k, answer) = self
            .0
            .borrow_mut()
            .pop_front()
            .expect("asked for more than recorded");
        assert_eq!((&h, k), (hash, kind), "asked out of order");
        answer
            .map(bytes::Bytes::from)
            .map_err(|_| BlobError::Missing { hash: *hash, what })
    }
}

fn replay(
    recorded: &Recorded,
    blob: &BlobRef,
    range: std::ops::Range<u64>,
) -> Result<Vec<u8>, BlobError> {
    let source = Replay(RefCell::new(recorded.iter().cloned().collect()));
    let mut out = Vec::new();
    fetch_range_from(&source, blob, range, &mut out)?;
    assert!(source.0.borrow().is_empty(), "recorded objects left over");
    Ok(out)
}

#[test]
fn recorded_objects_replay_to_the_same_bytes_and_a_changed_byte_is_caught() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path(), SMALL_CDC, TINY_TREE);
    let data = random_bytes(90_000, 3);
    let blob = store.store(&data).unwrap().blob_ref;
    assert!(matches!(blob, BlobRef::Tree { .. }));
    for range in [0..data.len() as u64, 12_345..54_321, 0..1] {
        let recorded = record(&store, &blob, range.clone());
        assert!(recorded.iter().any(|(_, k, _)| *k != ObjectKind::Chunk));
        let (a, b) = (range.start as usize, range.end as usize);
        assert!(replay(&recorded, &blob, range.clone()).unwrap() == data[a..b]);
        // One byte changed in any object: an integrity error, never other bytes.
        for i in 0..recorded.len() {
            let mut bad = recorded.clone();
            if let Ok(bytes) = &mut bad[i].2 {
                let mid = bytes.len() / 2;
                bytes[mid] ^= 1;
            }
            let err = replay_allowing_leftovers(&bad, &blob, range.clone()).unwrap_err();
            assert_eq!(err.class(), ErrorClass::Integrity, "object {i}: {err}");
        }
    }
}

/// [`Replay`] that hands each data chunk on in parts: one byte, then `part` bytes at a time
/// (as a node's pieces reach a client).
struct InParts(Replay, usize);

impl ObjectSource for InParts {
    fn object(
        &self,
        hash: &Hash,
        kind: ObjectKind,
        what: &'static str,
    ) -> Result<bytes::Bytes, BlobError> {
        self.0.object(hash, kind, what)
    }

    fn chunk_to_use(&self, hash: &Hash) -> Result<net_mesh_engine::ChunkParts, BlobError> {
        let bytes = self.0.object(hash, ObjectKind::Chunk, "chunk")?;
        let mut parts = vec![bytes.slice(..bytes.len().min(1))];
        let mut at = parts[0].len();
        while at < bytes.len() {
            let end = (at + self.1).min(bytes.len());
            parts.push(bytes.slice(at..end));
            at = end;
        }
        Ok(parts)
    }
}

#[test]
fn chunks_handed_on_in_parts_read_back_the_same_bytes_and_a_changed_byte_is_caught() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path(), SMALL_CDC, TINY_TREE);
    let data = random_bytes(90_000, 6);
    let blob = store.store(&data).unwrap().blob_ref;
    let ranges = [
        0..data.len() as u64,
        1..2,
        0..1,
        12_345..54_321,
        4_097..4_099,
        89_999..90_000,
    ];
    for part in [1, 100, 4096] {
        for range in ranges.clone() {
            let recorded = record(&store, &blob, range.clone());
            let source = InParts(
                Replay(RefCell::new(recorded.iter().cloned().collect())),
                part,
            );
            let mut out = Vec::new();
            fetch_range_from(&source, &blob, range.clone(), &mut out).unwrap();
            let (a, b) = (range.start as usize, range.end as usize);
            assert!(out == data[a..b], "parts of {part}, range {range:?}");
            assert!(source.0.0.borrow().is_empty(), "recorded objects left over");
        }
    }
    let recorded = record(&store, &blob, 0..data.len() as u64);
    for i in 0..recorded.len() {
        let mut bad = recorded.clone();
        if let Ok(bytes) = &mut bad[i].2 {
            let last = bytes.len() - 1;
            bytes[last] ^= 1;
        }
        let source = InParts(Replay(RefCell::new(bad.into_iter().collect())), 100);
        let err =
            fetch_range_from(&source, &blob, 0..data.len() as u64, &mut Vec::new()).unwrap_err();
        assert_eq!(err.class(), ErrorClass::Integrity, "object {i}: {err}");
    }
}

fn replay_allowing_leftovers(
    recorded: &Recorded,
    blob: &BlobRef,
    range: std::ops::Range<u64>,
) -> Result<Vec<u8>, BlobError> {
    let source = Replay(RefCell::new(recorded.iter().cloned().collect()));
    let mut out = Vec::new();
    fetch_range_from(&source, blob, range, &mut out).map(|_| out)
}

#[test]
fn an_erasure_coded_read_with_a_lost_chunk_replays_through_parity() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(
        tmp.path(),
        net_mesh_engine::ChunkingStrategy::Fixed { size: 4096 },
        TINY_TREE,
    );
    let data = random_bytes(60_000, 4);
    let blob = store
        .store_stream_with_rs(&data[..], 3, 5, "rs")
        .unwrap()
        .blob_ref;
    let chunks = store.blob_chunks(&blob).unwrap();
    store.remove_chunk(&chunks[1].hash, true).unwrap();
    let recorded = record(&store, &blob, 0..data.len() as u64);
    assert!(
        recorded.iter().any(|(_, _, a)| a.is_err()),
        "the lost chunk was asked for"
    );
    assert!(replay(&recorded, &blob, 0..data.len() as u64).unwrap() == data);
}

#[test]
fn a_chunk_that_fails_its_check_is_never_handed_on() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path(), SMALL_CDC, TINY_TREE);
    let data = random_bytes(90_000, 5);
    let blob = store.store(&data).unwrap().blob_ref;
    let chunks = store.blob_chunks(&blob).unwrap();
    assert!(chunks.len() > 3);
    let bad = chunks[2].hash;
    flip_payload_byte(&store, &bad, 7);
    let mut handed = Vec::new();
    let err = store
        .read_objects(&blob, 0..data.len() as u64, &mut |hash, kind, answer| {
            handed.push((*hash, kind, answer.is_ok()));
            true
        })
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Integrity, "{err}");
    assert!(
        handed.iter().all(|(h, _, _)| *h != bad),
        "the damaged chunk was handed on"
    );
    // Everything before it was: the nodes on its path and the two chunks in front of it.
    let handed_chunks: Vec<Hash> = handed
        .iter()
        .filter(|(_, k, _)| *k == ObjectKind::Chunk)
        .map(|(h, _, _)| *h)
        .collect();
    assert_eq!(handed_chunks, vec![chunks[0].hash, chunks[1].hash]);
    assert!(handed.iter().all(|(_, _, ok)| *ok));
}
