//! A reference taken between GC's scan and its delete transaction always wins: the count is
//! re-checked inside the deleting transaction, and an upload in flight holds off the delete
//! phase. Interleaved deterministically through the GC test hook.
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
fn an_upload_in_flight_during_the_sweep_keeps_what_it_references() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let a = random_bytes(200_000, 12);
    let ra = store.store(&a).unwrap();
    store.unpin(&ra.blob_id).unwrap();
    let report = std::thread::scope(|s| {
        let mut uploader = None;
        let report = store
            .gc_with_hook(&gc_now(), &mut |phase| {
                if phase != GcPhase::Scanned {
                    return;
                }
                // Start an upload of the same bytes (it finds every object already stored,
                // at count 0) and return once it has written them; GC's delete phase must
                // wait for it to finish and pin.
                let (tx, rx) = mpsc::channel();
                let store = &store;
                let a = &a;
                uploader = Some(s.spawn(move || {
                    let mut w = store.writer().unwrap();
                    w.write(a).unwrap();
                    tx.send(()).unwrap();
                    w.finish("re-upload").unwrap()
                }));
                rx.recv().unwrap();
            })
            .unwrap();
        let outcome = uploader.unwrap().join().unwrap();
        assert_eq!(outcome.blob_ref, ra.blob_ref);
        assert_eq!(
            outcome.new_chunks, 0,
            "the upload deduplicated against the count-0 objects"
        );
        report
    });
    assert_eq!(report.objects_freed, 0, "{report:?}");
    assert!(fetch(&store, &ra.blob_ref) == a);
}
