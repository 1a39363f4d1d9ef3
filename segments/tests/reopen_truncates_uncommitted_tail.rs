//! Reopen with committed lengths: the uncommitted tail is cut, appends continue after it,
//! unknown files become orphans, and inconsistent committed maps are typed errors.
mod common;

use std::collections::BTreeMap;

use common::*;
use net_mesh_segments::{RecordKind, SegmentConfig, SegmentError, Segments, segment_file_name};

#[test]
fn reopen_truncates_tail_and_active_continues_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut committed = BTreeMap::new();
    let segs = open(dir.path(), &committed).unwrap();
    let kept = payload(1, 300);
    let kept_loc = segs
        .append(RecordKind::Chunk, &id_of(&kept), &kept)
        .unwrap();
    commit(&mut committed, segs.sync().unwrap());
    let lost = payload(2, 300);
    let lost_loc = segs
        .append(RecordKind::Chunk, &id_of(&lost), &lost)
        .unwrap();
    segs.sync().unwrap(); // durable, but the "engine" crashed before committing it
    let active = segs.active_segment();
    drop(segs);

    let committed_len = committed[&active];
    assert!(
        std::fs::metadata(dir.path().join(segment_file_name(active)))
            .unwrap()
            .len()
            > committed_len
    );

    let segs = open(dir.path(), &committed).unwrap();
    assert_eq!(segs.active_segment(), active);
    assert_eq!(segs.file_len(active).unwrap(), committed_len);
    assert_eq!(
        segs.truncated_at_open(),
        vec![net_mesh_segments::TruncatedTail {
            segment: active,
            committed_len,
            file_len_before: committed_len + 52 + 300,
        }]
    );
    assert_eq!(
        segs.read(kept_loc, RecordKind::Chunk, &id_of(&kept))
            .unwrap(),
        kept
    );
    assert!(
        segs.read(lost_loc, RecordKind::Chunk, &id_of(&lost))
            .is_err()
    );

    let next = payload(3, 50);
    let next_loc = segs
        .append(RecordKind::LeafNode, &id_of(&next), &next)
        .unwrap();
    assert_eq!((next_loc.segment, next_loc.offset), (active, committed_len));
    commit(&mut committed, segs.sync().unwrap());
    drop(segs);
    let segs = open(dir.path(), &committed).unwrap();
    assert_eq!(
        segs.read(next_loc, RecordKind::LeafNode, &id_of(&next))
            .unwrap(),
        next
    );
    assert!(segs.orphan_files().is_empty());
}

#[test]
fn uncommitted_segments_are_orphans_and_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    let mut committed = BTreeMap::new();
    let segs = open(dir.path(), &committed).unwrap();
    let a = payload(1, 100);
    let a_loc = segs.append(RecordKind::Chunk, &id_of(&a), &a).unwrap();
    commit(&mut committed, segs.sync().unwrap());
    // Fill past a roll without committing the new segment.
    for n in 0..6 {
        let d = payload(10 + n, 1000);
        segs.append(RecordKind::Chunk, &id_of(&d), &d).unwrap();
    }
    segs.sync().unwrap();
    let highest = *segs.segment_ids().last().unwrap();
    assert!(highest > a_loc.segment);
    drop(segs);

    let segs = open(dir.path(), &committed).unwrap();
    assert_eq!(segs.active_segment(), a_loc.segment);
    let orphans = segs.orphan_files();
    assert_eq!(orphans.len() as u64, highest - a_loc.segment, "{orphans:?}");
    for path in &orphans {
        assert!(path.exists(), "orphans must not be deleted");
    }
    // Roll again: the new segment id is above every orphan.
    for n in 0..6 {
        let d = payload(20 + n, 1000);
        segs.append(RecordKind::Chunk, &id_of(&d), &d).unwrap();
    }
    assert!(segs.active_segment() > highest);
    assert_eq!(segs.read(a_loc, RecordKind::Chunk, &id_of(&a)).unwrap(), a);
}

#[test]
fn a_fresh_open_takes_its_empty_segment_again_and_starts_above_one_with_records() {
    let dir = tempfile::tempdir().unwrap();
    let files = || std::fs::read_dir(dir.path()).unwrap().count();
    let segs = open(dir.path(), &BTreeMap::new()).unwrap();
    let first = segs.active_segment();
    drop(segs); // never written to
    for _ in 0..3 {
        let segs = open(dir.path(), &BTreeMap::new()).unwrap();
        assert_eq!(
            segs.active_segment(),
            first,
            "the empty segment is taken again"
        );
        assert!(segs.orphan_files().is_empty());
        drop(segs);
    }
    assert_eq!(files(), 1, "no empty file per open");

    let segs = open(dir.path(), &BTreeMap::new()).unwrap();
    let d = payload(1, 100);
    segs.append(RecordKind::Chunk, &id_of(&d), &d).unwrap();
    segs.sync().unwrap();
    drop(segs); // written, never committed
    let segs = open(dir.path(), &BTreeMap::new()).unwrap();
    assert!(segs.active_segment() > first);
    assert_eq!(
        segs.orphan_files(),
        vec![dir.path().join(segment_file_name(first))]
    );
}

#[test]
fn a_new_segment_never_takes_an_id_below_new_ids_from() {
    let dir = tempfile::tempdir().unwrap();
    let config = |from| SegmentConfig {
        new_ids_from: from,
        ..small_config()
    };
    let segs = Segments::open(dir.path(), config(7), &BTreeMap::new()).unwrap();
    assert_eq!(segs.active_segment(), 7);
    drop(segs);
    // Ids up to 8 are named by the index (say, a missing segment 8 that the open left out):
    // the empty segment 7 is below them and is not taken again.
    let segs = Segments::open(dir.path(), config(9), &BTreeMap::new()).unwrap();
    assert_eq!(segs.active_segment(), 9);
    assert_eq!(
        segs.orphan_files(),
        vec![dir.path().join(segment_file_name(7))]
    );
    // Rolls stay above it too.
    for n in 0..6 {
        let d = payload(30 + n, 1000);
        segs.append(RecordKind::Chunk, &id_of(&d), &d).unwrap();
    }
    assert!(segs.active_segment() > 9);
}

#[test]
fn inconsistent_committed_lengths_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut committed = BTreeMap::new();
    let segs = open(dir.path(), &committed).unwrap();
    let d = payload(1, 100);
    segs.append(RecordKind::Chunk, &id_of(&d), &d).unwrap();
    commit(&mut committed, segs.sync().unwrap());
    let active = segs.active_segment();
    drop(segs);

    let mut longer = committed.clone();
    *longer.get_mut(&active).unwrap() += 1;
    let err = open(dir.path(), &longer).unwrap_err();
    assert!(
        matches!(err, SegmentError::ShorterThanCommitted { segment, .. } if segment == active),
        "{err}"
    );

    let mut missing = committed.clone();
    missing.insert(active + 5, 100);
    let err = open(dir.path(), &missing).unwrap_err();
    assert!(
        matches!(err, SegmentError::MissingSegment { segment, .. } if segment == active + 5),
        "{err}"
    );

    let mut tiny = committed.clone();
    tiny.insert(active, 3);
    let err = open(dir.path(), &tiny).unwrap_err();
    assert!(
        matches!(
            err,
            SegmentError::InvalidCommittedLength { committed: 3, .. }
        ),
        "{err}"
    );

    // The failed opens changed nothing.
    let segs = open(dir.path(), &committed).unwrap();
    assert_eq!(segs.file_len(active).unwrap(), committed[&active]);
}

#[test]
fn file_header_naming_another_segment_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let mut committed = BTreeMap::new();
    let segs = open(dir.path(), &committed).unwrap();
    commit(&mut committed, segs.sync().unwrap());
    let active = segs.active_segment();
    drop(segs);
    let from = dir.path().join(segment_file_name(active));
    let to = dir.path().join(segment_file_name(active + 1));
    std::fs::rename(&from, &to).unwrap();
    let renamed: BTreeMap<_, _> = [(active + 1, committed[&active])].into();
    let err = open(dir.path(), &renamed).unwrap_err();
    assert!(
        matches!(err, SegmentError::Corrupted { offset: 0, .. }),
        "{err}"
    );
    assert!(err.is_corruption());
}
