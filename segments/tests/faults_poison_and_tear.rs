//! Fault injection through FaultyBackend: failed syncs poison, failed writes do not, torn
//! writes leave the records before them intact after reopen.
mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::*;
use net_mesh_segments::{FaultyBackend, RecordKind, SegmentError};

#[test]
fn failed_sync_returns_sync_error_then_poisoned_until_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let backend = FaultyBackend::new();
    let mut committed = BTreeMap::new();
    let segs = open_with(dir.path(), &committed, Arc::new(backend.clone())).unwrap();
    let a = payload(1, 100);
    let a_loc = segs.append(RecordKind::Chunk, &id_of(&a), &a).unwrap();
    commit(&mut committed, segs.sync().unwrap());

    backend.fail_nth_sync(backend.syncs() + 1);
    let b = payload(2, 100);
    segs.append(RecordKind::Chunk, &id_of(&b), &b).unwrap();
    let err = segs.sync().unwrap_err();
    assert!(matches!(err, SegmentError::SyncFailed { .. }), "{err}");
    assert!(segs.is_poisoned());
    assert!(matches!(segs.sync().unwrap_err(), SegmentError::Poisoned));
    assert!(matches!(
        segs.append(RecordKind::Chunk, &id_of(&b), &b).unwrap_err(),
        SegmentError::Poisoned
    ));
    // Reads of committed data still work.
    assert_eq!(segs.read(a_loc, RecordKind::Chunk, &id_of(&a)).unwrap(), a);
    drop(segs);

    // Reopen (same backend, fault spent): the committed state is intact and writable again.
    let segs = open_with(dir.path(), &committed, Arc::new(backend.clone())).unwrap();
    assert_eq!(segs.read(a_loc, RecordKind::Chunk, &id_of(&a)).unwrap(), a);
    let c_loc = segs.append(RecordKind::Chunk, &id_of(&b), &b).unwrap();
    assert_eq!(c_loc.offset, committed[&a_loc.segment]);
    segs.sync().unwrap();
}

#[test]
fn failed_directory_sync_after_roll_poisons_too() {
    let dir = tempfile::tempdir().unwrap();
    let backend = FaultyBackend::new();
    let segs = open_with(dir.path(), &BTreeMap::new(), Arc::new(backend.clone())).unwrap();
    let first = segs.active_segment();
    for n in 0..6 {
        let d = payload(n, 1000);
        segs.append(RecordKind::Chunk, &id_of(&d), &d).unwrap();
    }
    assert!(segs.active_segment() > first);
    // Segments are synced first (one per touched segment), then the directory.
    let touched = segs.segment_ids().len() as u64;
    backend.fail_nth_sync(backend.syncs() + touched + 1);
    let err = segs.sync().unwrap_err();
    assert!(
        matches!(
            err,
            SegmentError::SyncFailed {
                op: "fsync segment directory",
                ..
            }
        ),
        "{err}"
    );
    assert!(matches!(segs.sync().unwrap_err(), SegmentError::Poisoned));
}

#[test]
fn failed_write_is_an_io_error_and_the_next_append_reuses_the_offset() {
    let dir = tempfile::tempdir().unwrap();
    let backend = FaultyBackend::new();
    let mut committed = BTreeMap::new();
    let segs = open_with(dir.path(), &committed, Arc::new(backend.clone())).unwrap();
    backend.fail_nth_write(backend.writes() + 1);
    let a = payload(1, 100);
    let err = segs.append(RecordKind::Chunk, &id_of(&a), &a).unwrap_err();
    assert!(
        matches!(
            err,
            SegmentError::Io {
                op: "write record",
                ..
            }
        ),
        "{err}"
    );
    assert!(!segs.is_poisoned());
    let loc = segs.append(RecordKind::Chunk, &id_of(&a), &a).unwrap();
    assert_eq!(loc.offset, 32);
    commit(&mut committed, segs.sync().unwrap());
    drop(segs);
    let segs = open(dir.path(), &committed).unwrap();
    assert_eq!(segs.read(loc, RecordKind::Chunk, &id_of(&a)).unwrap(), a);
}

#[test]
fn torn_last_record_is_ignored_after_reopen_with_committed_lengths() {
    let dir = tempfile::tempdir().unwrap();
    let backend = FaultyBackend::new();
    let mut committed = BTreeMap::new();
    let segs = open_with(dir.path(), &committed, Arc::new(backend.clone())).unwrap();
    let mut kept = Vec::new();
    for n in 0..3 {
        let d = payload(n, 400);
        kept.push((segs.append(RecordKind::Chunk, &id_of(&d), &d).unwrap(), d));
    }
    commit(&mut committed, segs.sync().unwrap());
    // Tear the next write after 30 bytes (inside the record header), then "crash".
    backend.tear_nth_write(backend.writes() + 1, 30);
    let torn = payload(99, 400);
    assert!(
        segs.append(RecordKind::Chunk, &id_of(&torn), &torn)
            .is_err()
    );
    assert!(backend.crashed());
    let seg = kept[0].0.segment;
    let file_len = std::fs::metadata(dir.path().join(net_mesh_segments::segment_file_name(seg)))
        .unwrap()
        .len();
    assert_eq!(
        file_len,
        committed[&seg] + 30,
        "the torn prefix hit the disk"
    );
    drop(segs);

    // Reopen with the real backend: the torn tail is cut, every committed record reads back,
    // a scan frames exactly the committed records, and appends continue at the committed end.
    let segs = open(dir.path(), &committed).unwrap();
    assert_eq!(segs.file_len(seg).unwrap(), committed[&seg]);
    for (loc, d) in &kept {
        assert_eq!(&segs.read(*loc, RecordKind::Chunk, &id_of(d)).unwrap(), d);
    }
    let items = segs.scan(seg, committed[&seg]).unwrap();
    assert_eq!(items.len(), 3);
    assert!(items.iter().all(|i| i.is_ok()));
    let next = segs
        .append(RecordKind::Chunk, &id_of(&torn), &torn)
        .unwrap();
    assert_eq!(next.offset, committed[&seg]);
}

#[test]
fn torn_write_with_tail_scanned_before_truncation_reports_the_tear() {
    // fsck view: the file holds committed bytes + a torn record; scanning to the file's end
    // (as recovery would, before trusting it) stops with a typed error at the torn offset.
    let dir = tempfile::tempdir().unwrap();
    let backend = FaultyBackend::new();
    let mut committed = BTreeMap::new();
    let segs = open_with(dir.path(), &committed, Arc::new(backend.clone())).unwrap();
    let d = payload(1, 100);
    let loc = segs.append(RecordKind::Chunk, &id_of(&d), &d).unwrap();
    commit(&mut committed, segs.sync().unwrap());
    // An append writes the 52-byte record header, then the payload: tear the payload write
    // after 18 bytes, leaving 70 bytes of the record on disk.
    backend.tear_nth_write(backend.writes() + 2, 18);
    assert!(segs.append(RecordKind::Chunk, &id_of(&d), &d).is_err());
    drop(segs);
    let file_len = committed[&loc.segment] + 70;
    let mut whole = committed.clone();
    whole.insert(loc.segment, file_len);
    let segs = open(dir.path(), &whole).unwrap();
    let items = segs.scan(loc.segment, file_len).unwrap();
    assert_eq!(items.len(), 2);
    assert!(
        matches!(&items[1], Err(SegmentError::Corrupted { offset, .. }) if *offset == committed[&loc.segment])
    );
}

#[test]
fn sealed_reads_fall_back_to_pread_without_mmap() {
    // FaultyBackend offers no mappings: sealed segments are read through read_at.
    let dir = tempfile::tempdir().unwrap();
    let segs = open_with(dir.path(), &BTreeMap::new(), Arc::new(FaultyBackend::new())).unwrap();
    let mut written = Vec::new();
    for n in 0..10u64 {
        let d = payload(n, 900);
        written.push((segs.append(RecordKind::Chunk, &id_of(&d), &d).unwrap(), d));
    }
    segs.sync().unwrap();
    assert!(written[0].0.segment < segs.active_segment());
    for (loc, d) in &written {
        assert_eq!(&segs.read(*loc, RecordKind::Chunk, &id_of(d)).unwrap(), d);
    }
    let first = written[0].0.segment;
    let len = segs.segment_len(first).unwrap();
    assert_eq!(
        segs.scan(first, len).unwrap().len(),
        written.iter().filter(|(l, _)| l.segment == first).count()
    );
}
