//! Compaction takes its live set from the index, so a segment whose *dead* records are damaged
//! (here: a clobbered record header of a collected chunk) is still compacted away, and fsck's
//! framing complaint goes with it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod gc_common;

use gc_common::*;
use net_mesh_engine::GcOptions;
use net_mesh_engine::codec::BlobRef;
use net_mesh_engine::fsck::{ProblemKind, ReadData};

#[test]
fn a_segment_with_a_damaged_dead_record_is_still_compacted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = open(dir);
    let mut dead = Vec::new();
    let mut live = Vec::new();
    for i in 0..120u64 {
        // Below the CDC minimum: each blob is one chunk (a Small ref).
        let a = store.store(&random_bytes(1000, 1000 + i)).unwrap();
        let b = store.store(&random_bytes(500, 2000 + i)).unwrap();
        dead.push(a);
        live.push((b, random_bytes(500, 2000 + i)));
    }
    // Fill the active segment with something else so the interleaved ones are sealed.
    let filler = store.store(&random_bytes(300_000, 9)).unwrap();
    let active = store.segments().active_segment();
    // The first segment holds only the interleaved small blobs (about a third live after GC).
    let BlobRef::Small { hash, .. } = dead[0].blob_ref else {
        panic!("small")
    };
    let victim = entry(&store, &hash).loc;
    assert_ne!(victim.segment, active);
    for a in &dead {
        store.unpin(&a.blob_id).unwrap();
    }
    // Sweep only (no compaction), then clobber a dead record's header magic.
    let swept = store
        .gc(&GcOptions {
            compact_threshold: 0.0,
            ..gc_now()
        })
        .unwrap();
    assert_eq!(swept.chunks_freed, 120);
    assert_eq!(swept.segments_compacted, 0);
    drop(store);
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(seg_path(dir, victim.segment))
            .unwrap();
        f.seek(SeekFrom::Start(victim.offset)).unwrap();
        f.write_all(b"XXXX").unwrap();
        f.sync_all().unwrap();
    }
    let report = fsck(dir, ReadData::All, false);
    assert_eq!(
        kinds(&report),
        vec![ProblemKind::SegmentFraming],
        "{:#?}",
        report.problems
    );

    let store = open(dir);
    let report = store.gc(&gc_now()).unwrap();
    assert!(report.segments_removed >= 1, "{report:?}");
    assert!(!seg_path(dir, victim.segment).exists());
    for (b, want) in &live {
        assert!(fetch(&store, &b.blob_ref) == *want);
    }
    assert!(fetch(&store, &filler.blob_ref) == random_bytes(300_000, 9));
    drop(store);
    assert_eq!(kinds(&fsck(dir, ReadData::All, false)), vec![]);
}
