//! A reference taken between GC's scan and its delete transaction always wins: the count is
//! re-checked inside the deleting transaction, and what an upload in flight relies on is held,
//! so GC skips it without waiting for the upload. Interleaved deterministically through the GC
//! test hook.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod gc_common;

use std::sync::mpsc;

use gc_common::*;
use net_mesh_engine::GcPhase;

#[test]
fn a_pin_taken_after_the_scan_keeps_the_blob() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let a = random_bytes(200_000, 11);
    let ra = store.store(&a).unwrap();
    store.unpin(&ra.blob_id).unwrap();
    let mut repinned = false;
    let report = store
        .gc_with_hook(&gc_now(), &mut |phase| {
            if phase == GcPhase::Scanned {
                store.pin(&ra.blob_ref, "again").unwrap();
                repinned = true;
            }
        })
        .unwrap();
    assert!(repinned);
    assert!(report.candidates > 0, "the scan saw A's roots at count 0");
    assert!(report.skipped_referenced > 0);
    assert_eq!(report.objects_freed, 0, "{report:?}");
    assert!(fetch(&store, &ra.blob_ref) == a);
}

#[test]
fn a_stalled_upload_neither_blocks_the_sweep_nor_loses_what_it_references() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let a = random_bytes(200_000, 12);
    let ra = store.store(&a).unwrap();
    store.unpin(&ra.blob_id).unwrap();
    let (report, outcome) = std::thread::scope(|s| {
        let (resume_tx, resume_rx) = mpsc::channel::<()>();
        let mut resume_rx = Some(resume_rx);
        let mut uploader = None;
        let report = store
            .gc_with_hook(&gc_now(), &mut |phase| {
                if phase != GcPhase::Scanned {
                    return;
                }
                // Start an upload of the same bytes (it finds every chunk already stored, at
                // count 0), let it write them, then stall it until GC has returned: GC must
                // finish without it.
                let (written_tx, written_rx) = mpsc::channel();
                let (store, a) = (&store, &a);
                let resume_rx = resume_rx.take().unwrap();
                uploader = Some(s.spawn(move || {
                    let mut w = store.writer().unwrap();
                    w.write(a).unwrap();
                    written_tx.send(()).unwrap();
                    resume_rx.recv().unwrap();
                    w.finish("re-upload").unwrap()
                }));
                written_rx.recv().unwrap();
            })
            .unwrap();
        resume_tx.send(()).unwrap();
        (report, uploader.unwrap().join().unwrap())
    });
    assert_eq!(outcome.blob_ref, ra.blob_ref);
    // The upload had cut and found every chunk but its last one (the chunker cuts that one
    // at finish): GC kept those for it and may have freed only the last, which the upload
    // then stored again.
    assert!(report.skipped_in_use > 0, "{report:?}");
    assert!(report.chunks_freed <= 1, "{report:?}");
    assert_eq!(outcome.new_chunks, report.chunks_freed, "{report:?}");
    assert!(fetch(&store, &ra.blob_ref) == a);
}
