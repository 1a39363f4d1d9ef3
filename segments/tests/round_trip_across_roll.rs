//! append + sync + read round trip across segment rolls; typed errors for wrong id/kind/loc.
mod common;

use std::collections::BTreeMap;

use common::*;
use net_mesh_segments::{RecordKind, RecordLoc, SegmentError, codec::FILE_HEADER_LEN};

#[test]
fn appended_records_read_back_across_a_roll() {
    let dir = tempfile::tempdir().unwrap();
    let segs = open(dir.path(), &BTreeMap::new()).unwrap();
    let first = segs.active_segment();
    let mut written = Vec::new();
    for n in 0..20u64 {
        let data = payload(n, 700);
        let id = id_of(&data);
        let kind = if n % 3 == 0 {
            RecordKind::LeafNode
        } else {
            RecordKind::Chunk
        };
        let loc = segs.append(kind, &id, &data).unwrap();
        written.push((loc, kind, id, data));
    }
    // 20 records of 752 bytes in 4096-byte segments: several rolls.
    assert!(
        segs.active_segment() > first + 2,
        "expected rolls, active {}",
        segs.active_segment()
    );
    // First record lands right after the file header.
    assert_eq!(written[0].0.offset, FILE_HEADER_LEN as u64);
    // Reads before sync work (active via pread, sealed via mmap).
    for (loc, kind, id, data) in &written {
        assert_eq!(&segs.read(*loc, *kind, id).unwrap(), data);
    }
    let synced = segs.sync().unwrap();
    let touched: Vec<_> = synced.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        touched,
        segs.segment_ids(),
        "every segment was written since open"
    );
    for (segment, len) in &synced {
        assert_eq!(*len, segs.file_len(*segment).unwrap());
        assert!(*len <= 4096);
    }
    for (loc, kind, id, data) in &written {
        assert_eq!(&segs.read(*loc, *kind, id).unwrap(), data);
    }
    // Until acknowledged as committed, every sync returns those lengths again; after, a sync
    // with nothing written returns nothing.
    assert_eq!(segs.sync().unwrap(), synced);
    segs.acknowledge_committed(&synced);
    assert_eq!(segs.sync().unwrap(), vec![]);
}

#[test]
fn a_record_larger_than_roll_size_gets_its_own_segment() {
    let dir = tempfile::tempdir().unwrap();
    let segs = open(dir.path(), &BTreeMap::new()).unwrap();
    let small = payload(1, 10);
    let big = payload(2, 10_000);
    let a = segs
        .append(RecordKind::Chunk, &id_of(&small), &small)
        .unwrap();
    let b = segs.append(RecordKind::Chunk, &id_of(&big), &big).unwrap();
    assert_ne!(a.segment, b.segment);
    assert_eq!(b.offset, FILE_HEADER_LEN as u64);
    assert_eq!(segs.read(b, RecordKind::Chunk, &id_of(&big)).unwrap(), big);
}

#[test]
fn read_with_wrong_id_kind_or_location_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let segs = open(dir.path(), &BTreeMap::new()).unwrap();
    let data = payload(7, 100);
    let id = id_of(&data);
    let loc = segs.append(RecordKind::Chunk, &id, &data).unwrap();
    segs.append(RecordKind::Chunk, &id, &data).unwrap(); // room for a misaligned read
    segs.sync().unwrap();

    let err = segs.read(loc, RecordKind::Chunk, &[9u8; 32]).unwrap_err();
    assert!(
        matches!(err, SegmentError::IdMismatch { offset, .. } if offset == loc.offset),
        "{err}"
    );
    let err = segs.read(loc, RecordKind::InternalNode, &id).unwrap_err();
    assert!(
        matches!(
            err,
            SegmentError::KindMismatch {
                found: RecordKind::Chunk,
                expected: RecordKind::InternalNode,
                ..
            }
        ),
        "{err}"
    );
    let err = segs
        .read(
            RecordLoc {
                payload_len: 99,
                ..loc
            },
            RecordKind::Chunk,
            &id,
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            SegmentError::LengthMismatch {
                expected: 99,
                found: 100,
                ..
            }
        ),
        "{err}"
    );
    let err = segs
        .read(
            RecordLoc {
                payload_len: 5000,
                ..loc
            },
            RecordKind::Chunk,
            &id,
        )
        .unwrap_err();
    assert!(matches!(err, SegmentError::OutOfBounds { .. }), "{err}");
    let err = segs
        .read(RecordLoc { offset: 0, ..loc }, RecordKind::Chunk, &id)
        .unwrap_err();
    assert!(matches!(err, SegmentError::OutOfBounds { .. }), "{err}");
    let err = segs
        .read(
            RecordLoc {
                offset: loc.offset + 1,
                ..loc
            },
            RecordKind::Chunk,
            &id,
        )
        .unwrap_err();
    assert!(matches!(err, SegmentError::Corrupted { .. }), "{err}");
    let err = segs
        .read(
            RecordLoc {
                segment: 999,
                ..loc
            },
            RecordKind::Chunk,
            &id,
        )
        .unwrap_err();
    assert!(matches!(err, SegmentError::UnknownSegment(999)), "{err}");
}

#[test]
fn oversized_payload_is_refused_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let segs = open(dir.path(), &BTreeMap::new()).unwrap();
    let data = vec![0u8; 64 * 1024 + 1];
    let err = segs.append(RecordKind::Chunk, &[0; 32], &data).unwrap_err();
    assert!(
        matches!(err, SegmentError::PayloadTooLarge { len, max: 65536 } if len == 65537),
        "{err}"
    );
    assert_eq!(
        segs.file_len(segs.active_segment()).unwrap(),
        FILE_HEADER_LEN as u64
    );
}

#[test]
fn remove_segment_unlinks_sealed_only() {
    let dir = tempfile::tempdir().unwrap();
    let segs = open(dir.path(), &BTreeMap::new()).unwrap();
    let mut locs = Vec::new();
    for n in 0..8u64 {
        let data = payload(n, 1500);
        locs.push((
            segs.append(RecordKind::Chunk, &id_of(&data), &data)
                .unwrap(),
            data,
        ));
    }
    segs.sync().unwrap();
    let first = locs[0].0.segment;
    // Records not yet settled (indexed or given up) keep their segment.
    let err = segs.remove_segment(first).unwrap_err();
    assert!(
        matches!(err, SegmentError::Unsettled(s) if s == first),
        "{err}"
    );
    let mut appended = BTreeMap::new();
    for (loc, _) in &locs {
        *appended.entry(loc.segment).or_insert(0) += 1;
    }
    segs.settle(&appended);
    assert!(!segs.has_unsettled(first));
    // Map the sealed segment, then remove it: the mapping must stay valid for held readers,
    // and later reads report an unknown segment.
    assert_eq!(
        segs.read(locs[0].0, RecordKind::Chunk, &id_of(&locs[0].1))
            .unwrap(),
        locs[0].1
    );
    segs.remove_segment(first).unwrap();
    assert!(
        !dir.path()
            .join(net_mesh_segments::segment_file_name(first))
            .exists()
    );
    assert!(!segs.segment_ids().contains(&first));
    let err = segs
        .read(locs[0].0, RecordKind::Chunk, &id_of(&locs[0].1))
        .unwrap_err();
    assert!(
        matches!(err, SegmentError::UnknownSegment(s) if s == first),
        "{err}"
    );
    let err = segs.remove_segment(segs.active_segment()).unwrap_err();
    assert!(matches!(err, SegmentError::ActiveSegment(_)), "{err}");
    let err = segs.remove_segment(12345).unwrap_err();
    assert!(matches!(err, SegmentError::UnknownSegment(12345)), "{err}");
    // Remaining records still read.
    let last = locs.last().unwrap();
    assert_eq!(
        segs.read(last.0, RecordKind::Chunk, &id_of(&last.1))
            .unwrap(),
        last.1
    );
}

#[test]
fn concurrent_appends_and_reads_from_threads() {
    let dir = tempfile::tempdir().unwrap();
    let segs = std::sync::Arc::new(open(dir.path(), &BTreeMap::new()).unwrap());
    let handles: Vec<_> = (0..4u64)
        .map(|t| {
            let segs = segs.clone();
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                for n in 0..25u64 {
                    let data = payload(t * 1000 + n, (n as usize * 37) % 900);
                    let loc = segs
                        .append(RecordKind::Chunk, &id_of(&data), &data)
                        .unwrap();
                    mine.push((loc, data));
                    if n % 10 == 0 {
                        segs.sync().unwrap();
                    }
                }
                for (loc, data) in &mine {
                    assert_eq!(
                        &segs.read(*loc, RecordKind::Chunk, &id_of(data)).unwrap(),
                        data
                    );
                }
                mine
            })
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.join().unwrap());
    }
    segs.sync().unwrap();
    let mut locs: Vec<_> = all.iter().map(|(l, _)| (l.segment, l.offset)).collect();
    locs.sort_unstable();
    locs.dedup();
    assert_eq!(locs.len(), 100, "two appends got the same location");
}
