//! A verified read can run over any object source: the objects a read of the store asked for,
//! in the order it asked (`Store::read_objects`), replayed to `fetch_range_from` give the same
//! bytes — also for an erasure-coded blob with a lost chunk (the replay hands on the store's
//! error, and both sides rebuild from parity) — also when each data chunk is handed on in
//! parts, as a node's pieces reach a client. A replay with one byte changed in any object fails
//! with an integrity error and never yields wrong bytes.
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

/// Hands the recorded answers on in order; asks for anything else are a test failure. With a
/// part size (`.1` > 0), each data chunk is handed on in parts, as a node's pieces reach a
/// client: one byte, then that many bytes at a time.
struct Replay(RefCell<VecDeque<Answer>>, usize);

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

    fn chunk_to_use(&self, hash: &Hash) -> Result<net_mesh_engine::ChunkParts, BlobError> {
        let bytes = self.object(hash, ObjectKind::Chunk, "chunk")?;
        if self.1 == 0 {
            return Ok(vec![bytes]);
        }
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

fn replay(
    recorded: &Recorded,
    blob: &BlobRef,
    range: std::ops::Range<u64>,
    part: usize,
) -> Result<Vec<u8>, BlobError> {
    let source = Replay(RefCell::new(recorded.iter().cloned().collect()), part);
    let mut out = Vec::new();
    fetch_range_from(&source, blob, range, &mut out)?;
    assert!(source.0.borrow().is_empty(), "recorded objects left over");
    Ok(out)
}

#[test]
fn recorded_objects_replay_whole_or_in_parts_to_the_same_bytes_and_a_changed_byte_is_caught() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path(), SMALL_CDC, TINY_TREE);
    let data = random_bytes(90_000, 3);
    let blob = store.store(&data).unwrap().blob_ref;
    assert!(matches!(blob, BlobRef::Tree { .. }));
    let ranges = [
        0..data.len() as u64,
        12_345..54_321,
        0..1,
        1..2,
        4_097..4_099,
        89_999..90_000,
    ];
    for range in ranges {
        let recorded = record(&store, &blob, range.clone());
        assert!(recorded.iter().any(|(_, k, _)| *k != ObjectKind::Chunk));
        let (a, b) = (range.start as usize, range.end as usize);
        for part in [0, 1, 100, 4096] {
            let got = replay(&recorded, &blob, range.clone(), part).unwrap();
            assert!(got == data[a..b], "range {range:?}, parts of {part}");
            // One byte changed in any object: an integrity error, never other bytes.
            for i in 0..recorded.len() {
                let mut bad = recorded.clone();
                if let Ok(bytes) = &mut bad[i].2 {
                    let mid = bytes.len() / 2;
                    bytes[mid] ^= 1;
                }
                let err = replay_allowing_leftovers(&bad, &blob, range.clone(), part).unwrap_err();
                assert_eq!(err.class(), ErrorClass::Integrity, "object {i}: {err}");
            }
        }
    }
}

fn replay_allowing_leftovers(
    recorded: &Recorded,
    blob: &BlobRef,
    range: std::ops::Range<u64>,
    part: usize,
) -> Result<Vec<u8>, BlobError> {
    let source = Replay(RefCell::new(recorded.iter().cloned().collect()), part);
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
    assert!(replay(&recorded, &blob, 0..data.len() as u64, 0).unwrap() == data);
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
