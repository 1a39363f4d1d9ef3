//! Damaged bytes on disk: header flips are Corrupted, payload flips pass framing (the engine's
//! re-hash catches them), truncated segments stop scan with a typed error at the right offset.
// Helpers here are test code too (clippy only exempts #[test] fns themselves).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;

use common::*;
use net_mesh_segments::codec::{FILE_HEADER_LEN, FrameError, RECORD_HEADER_LEN};
use net_mesh_segments::{RecordKind, RecordLoc, SegmentError, Segments, segment_file_name};

struct Fixture {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    dir: std::path::PathBuf,
    committed: BTreeMap<u64, u64>,
    records: Vec<(RecordLoc, Vec<u8>)>,
}

/// Three synced records in one segment, store closed.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut committed = BTreeMap::new();
    let segs = open(dir.path(), &committed).unwrap();
    let records: Vec<_> = (0..3u64)
        .map(|n| {
            let d = payload(n, 200 + n as usize);
            (segs.append(RecordKind::Chunk, &id_of(&d), &d).unwrap(), d)
        })
        .collect();
    commit(&mut committed, segs.sync().unwrap());
    let path = dir.path().join(segment_file_name(segs.active_segment()));
    Fixture {
        path,
        dir: dir.path().to_path_buf(),
        _dir: dir,
        committed,
        records,
    }
}

fn flip(path: &std::path::Path, offset: u64) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).unwrap();
    b[0] ^= 0x40;
    f.write_all_at(&b, offset).unwrap();
}

fn reopen(fx: &Fixture) -> Segments {
    Segments::open(&fx.dir, small_config(), &fx.committed).unwrap()
}

#[test]
fn flipped_record_header_byte_is_a_checksum_corruption() {
    let fx = fixture();
    let (loc, data) = &fx.records[1];
    flip(&fx.path, loc.offset + 20); // inside the id
    let segs = reopen(&fx);
    let err = segs
        .read(*loc, RecordKind::Chunk, &id_of(data))
        .unwrap_err();
    assert!(
        matches!(&err, SegmentError::Corrupted { offset, reason: FrameError::ChecksumMismatch { .. }, .. } if *offset == loc.offset),
        "{err}"
    );
    assert!(
        err.to_string().contains(&format!("offset {}", loc.offset)),
        "{err}"
    );
    // Neighbours are unaffected.
    let (l0, d0) = &fx.records[0];
    assert_eq!(&segs.read(*l0, RecordKind::Chunk, &id_of(d0)).unwrap(), d0);
    // Scan stops at the damaged record with the same error.
    let items = segs.scan(loc.segment, fx.committed[&loc.segment]).unwrap();
    assert_eq!(items.len(), 2);
    assert!(items[0].is_ok());
    assert!(
        matches!(&items[1], Err(SegmentError::Corrupted { offset, .. }) if *offset == loc.offset)
    );
}

#[test]
fn flipped_payload_byte_still_reads_and_frames() {
    let fx = fixture();
    let (loc, data) = &fx.records[1];
    flip(&fx.path, loc.offset + RECORD_HEADER_LEN as u64 + 5);
    let segs = reopen(&fx);
    let read = segs.read(*loc, RecordKind::Chunk, &id_of(data)).unwrap();
    assert_ne!(&read, data);
    assert_ne!(
        id_of(&read),
        id_of(data),
        "the engine's re-hash would catch this"
    );
    let items = segs.scan(loc.segment, fx.committed[&loc.segment]).unwrap();
    assert_eq!(items.len(), 3);
    assert!(items.iter().all(|i| i.is_ok()));
}

#[test]
fn flipped_file_header_byte_fails_open() {
    let fx = fixture();
    flip(&fx.path, 3);
    let err = Segments::open(&fx.dir, small_config(), &fx.committed).unwrap_err();
    assert!(
        matches!(
            err,
            SegmentError::Corrupted {
                offset: 0,
                reason: FrameError::BadMagic { .. },
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn scan_lists_every_record_in_order() {
    let fx = fixture();
    let segs = reopen(&fx);
    let seg = fx.records[0].0.segment;
    let items = segs.scan(seg, fx.committed[&seg]).unwrap();
    let got: Vec<_> = items.into_iter().map(|i| i.unwrap()).collect();
    let want: Vec<_> = fx
        .records
        .iter()
        .map(|(l, d)| (*l, RecordKind::Chunk, id_of(d)))
        .collect();
    assert_eq!(got, want);
    // Only the file header: no items.
    assert!(segs.scan(seg, FILE_HEADER_LEN as u64).unwrap().is_empty());
    // Beyond the known length: typed error.
    let err = segs.scan(seg, fx.committed[&seg] + 1).unwrap_err();
    assert!(matches!(err, SegmentError::OutOfBounds { .. }), "{err}");
}

#[test]
fn scan_over_truncated_segment_stops_at_the_cut_record() {
    let fx = fixture();
    let segs = reopen(&fx);
    let (last, _) = fx.records[2];
    let seg = last.segment;
    // Cut inside the last record's payload.
    let upto = last.offset + RECORD_HEADER_LEN as u64 + 10;
    let items = segs.scan(seg, upto).unwrap();
    assert_eq!(items.len(), 3);
    let err = items[2].as_ref().unwrap_err();
    assert!(
        matches!(err, SegmentError::Corrupted { offset, reason: FrameError::Truncated { available: 62, .. }, .. } if *offset == last.offset),
        "{err}"
    );
    // Cut inside the last record's header.
    let items = segs.scan(seg, last.offset + 7).unwrap();
    assert_eq!(items.len(), 3);
    assert!(matches!(
        &items[2],
        Err(SegmentError::Corrupted { offset, reason: FrameError::Truncated { needed: 52, available: 7 }, .. }) if *offset == last.offset
    ));
    // Cut inside the file header.
    let items = segs.scan(seg, 10).unwrap();
    assert!(matches!(
        &items[..],
        [Err(SegmentError::Corrupted { offset: 0, .. })]
    ));
}

#[test]
fn truncated_file_on_disk_is_reported_at_open() {
    let fx = fixture();
    let (last, _) = fx.records[2];
    std::fs::OpenOptions::new()
        .write(true)
        .open(&fx.path)
        .unwrap()
        .set_len(last.offset + 30)
        .unwrap();
    let err = Segments::open(&fx.dir, small_config(), &fx.committed).unwrap_err();
    assert!(
        matches!(err, SegmentError::ShorterThanCommitted { file_len, .. } if file_len == last.offset + 30),
        "{err}"
    );
    // fsck-style: open with the shorter length and scan finds the cut.
    let mut shorter = fx.committed.clone();
    shorter.insert(last.segment, last.offset + 30);
    let segs = Segments::open(&fx.dir, small_config(), &shorter).unwrap();
    let items = segs.scan(last.segment, last.offset + 30).unwrap();
    assert!(
        matches!(items.last(), Some(Err(SegmentError::Corrupted { offset, .. })) if *offset == last.offset)
    );
}
