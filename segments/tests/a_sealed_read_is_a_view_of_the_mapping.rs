//! A large read from a sealed segment is a view of its mapping, not a copy: two reads of the
//! same record share their bytes, and a view keeps its bytes after other views of the same
//! pages are dropped (their pages leave the page tables), after the segment is removed, and
//! after the handle is closed.
mod common;

use std::collections::BTreeMap;

use common::*;
use net_mesh_segments::{RecordKind, SegmentConfig, SegmentError, Segments};

#[test]
fn a_large_sealed_read_is_shared_and_outlives_its_segment() {
    let dir = tempfile::tempdir().unwrap();
    let config = SegmentConfig {
        roll_size: 4 * 1024 * 1024,
        max_payload: 4 * 1024 * 1024,
        ..SegmentConfig::default()
    };
    let segs = Segments::open(dir.path(), config, &BTreeMap::new()).unwrap();
    let large = payload(1, 300_000);
    let small = payload(2, 1_000);
    let (large_id, small_id) = (id_of(&large), id_of(&small));
    let large_loc = segs.append(RecordKind::Chunk, &large_id, &large).unwrap();
    let small_loc = segs.append(RecordKind::Chunk, &small_id, &small).unwrap();
    let sealed = segs.active_segment();
    segs.seal_active().unwrap();
    let synced = segs.sync().unwrap();
    segs.acknowledge_committed(&synced);
    segs.settle(&BTreeMap::from([(sealed, 2)]));

    let first = segs.read(large_loc, RecordKind::Chunk, &large_id).unwrap();
    let second = segs.read(large_loc, RecordKind::Chunk, &large_id).unwrap();
    assert_eq!(first, large);
    assert_eq!(
        first.as_ptr(),
        second.as_ptr(),
        "two reads of a sealed record are views of one mapping"
    );
    let small_read = segs.read(small_loc, RecordKind::Chunk, &small_id).unwrap();
    assert_eq!(small_read, small);

    // Dropping one view releases its pages from the page tables; the other re-faults them.
    drop(first);
    assert_eq!(second, large);

    segs.remove_segment(sealed).unwrap();
    assert!(matches!(
        segs.read(large_loc, RecordKind::Chunk, &large_id),
        Err(SegmentError::UnknownSegment(s)) if s == sealed
    ));
    drop(segs);
    assert_eq!(
        second, large,
        "a view outlives its removed segment and its handle"
    );
    assert_eq!(small_read, small);
}
