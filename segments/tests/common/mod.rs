//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use net_mesh_segments::{
    ObjectId, SegmentBackend, SegmentConfig, SegmentError, SegmentId, Segments,
};

/// Small segments so a few records force rolls.
pub fn small_config() -> SegmentConfig {
    SegmentConfig {
        roll_size: 4096,
        max_payload: 64 * 1024,
        ..SegmentConfig::default()
    }
}

pub fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for _ in 0..len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push(x as u8);
    }
    out
}

pub fn id_of(payload: &[u8]) -> ObjectId {
    *blake3::hash(payload).as_bytes()
}

pub fn open(dir: &Path, committed: &BTreeMap<SegmentId, u64>) -> Result<Segments, SegmentError> {
    Segments::open(dir, small_config(), committed)
}

pub fn open_with(
    dir: &Path,
    committed: &BTreeMap<SegmentId, u64>,
    backend: Arc<dyn SegmentBackend>,
) -> Result<Segments, SegmentError> {
    Segments::open_with_backend(dir, small_config(), committed, backend)
}

/// Merges `sync()` results into a committed-length map, as the engine does.
pub fn commit(committed: &mut BTreeMap<SegmentId, u64>, synced: Vec<(SegmentId, u64)>) {
    for (segment, len) in synced {
        committed.insert(segment, len);
    }
}
