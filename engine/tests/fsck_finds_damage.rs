//! fsck finds each kind of damage it claims to find, names its kind and location, and
//! `repair` fixes what can be fixed without losing data.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod gc_common;

use std::path::Path;

use gc_common::*;
use net_mesh_engine::fsck::{ProblemKind as K, ReadData};
use net_mesh_engine::{BlobRef, PutOutcome, TreePolicy};

/// A store with blob A (1 MB, many chunks over many segments) and unrelated blob B.
fn setup(dir: &Path, tree: TreePolicy) -> (PutOutcome, PutOutcome, Vec<u8>, Vec<u8>) {
    let store = open_tree(dir, tree);
    let a = random_bytes(1_000_000, 31);
    let b = random_bytes(300_000, 32);
    let ra = store.store(&a).unwrap();
    let rb = store.store(&b).unwrap();
    drop(store);
    assert_eq!(
        kinds(&fsck(dir, ReadData::All, false)),
        vec![],
        "fresh store is clean"
    );
    (ra, rb, a, b)
}

fn reads_back(dir: &Path, r: &BlobRef, want: &[u8]) -> bool {
    let store = open(dir);
    let mut out = Vec::new();
    store.fetch(r, &mut out).is_ok() && out == want
}

#[test]
fn flipped_chunk_byte_is_found_by_read_data_and_healed_by_repair_and_reupload() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (ra, rb, a, b) = setup(dir, TreePolicy::default());
    let store = open(dir);
    let x = sealed_chunk(&store, &ra.blob_ref);
    let loc = entry(&store, &x).loc;
    drop(store);
    flip_payload_byte(dir, loc, 10);

    assert_eq!(
        kinds(&fsck(dir, ReadData::None, false)),
        vec![],
        "chunks are not read"
    );
    let report = fsck(dir, ReadData::All, false);
    assert_eq!(kinds(&report), vec![K::ObjectCorrupt]);
    let p = &report
        .problems
        .iter()
        .find(|p| p.kind == K::ObjectCorrupt)
        .unwrap();
    assert_eq!(p.location.object.as_deref(), Some(hex(&x).as_str()));
    assert_eq!(p.location.segment, Some(loc.segment));
    assert_eq!(p.location.offset, Some(loc.offset));
    assert_eq!(report.affected_blobs.len(), 1);
    assert_eq!(report.affected_blobs[0].blob_id, hex(&ra.blob_id));

    let report = fsck(dir, ReadData::All, true);
    assert!(
        report
            .problems
            .iter()
            .all(|p| p.repaired || p.severity == net_mesh_engine::fsck::Severity::Info)
    );
    assert!(!report.repairs.is_empty());
    // A still needs the chunk: reported, not silently hidden.
    assert_eq!(
        kinds(&fsck(dir, ReadData::All, false)),
        vec![K::MissingObject]
    );
    assert!(reads_back(dir, &rb.blob_ref, &b));

    // Re-uploading A restores the chunk with the count its references hold (lost_refs_v1),
    // so GC keeps it and the store is clean without another repair.
    let store = open(dir);
    store.store(&a).unwrap();
    let report = store.gc(&gc_now()).unwrap();
    assert_eq!(report.objects_freed, 0, "{report:?}");
    drop(store);
    assert_eq!(kinds(&fsck(dir, ReadData::All, false)), vec![]);
    assert!(reads_back(dir, &ra.blob_ref, &a));
}

#[test]
fn flipped_node_byte_is_found_without_reading_data() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let tiny = TreePolicy {
        leaf_fanout: 4,
        internal_fanout: 4,
        manifest_max_refs: net_mesh_engine::tree::DEFAULT_MANIFEST_MAX_REFS,
    };
    let (ra, _rb, _a, _b) = setup(dir, tiny);
    let BlobRef::Tree { root_hash, .. } = ra.blob_ref else {
        panic!("tree")
    };
    let store = open(dir);
    let loc = entry(&store, &root_hash).loc;
    drop(store);
    flip_payload_byte(dir, loc, 12);
    let report = fsck(dir, ReadData::None, false);
    assert!(
        kinds(&report).contains(&K::ObjectCorrupt),
        "{:#?}",
        report.problems
    );
    let p = report
        .problems
        .iter()
        .find(|p| p.kind == K::ObjectCorrupt)
        .unwrap();
    assert_eq!(p.location.object.as_deref(), Some(hex(&root_hash).as_str()));
    assert_eq!(report.affected_blobs.len(), 1);
    assert_eq!(report.affected_blobs[0].blob_id, hex(&ra.blob_id));
}

#[test]
fn truncated_segment_is_found_and_repair_cuts_it_to_its_last_whole_record() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (ra, rb, _a, b) = setup(dir, TreePolicy::default());
    let store = open(dir);
    let x = sealed_chunk(&store, &ra.blob_ref);
    let segment = entry(&store, &x).loc.segment;
    drop(store);
    let path = seg_path(dir, segment);
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 100)
        .unwrap();
    assert!(net_mesh_engine::Store::open(dir, config(TreePolicy::default())).is_err());

    let report = fsck(dir, ReadData::All, false);
    let k = kinds(&report);
    assert!(k.contains(&K::SegmentTruncated), "{k:?}");
    assert!(k.contains(&K::ObjectBytesMissing), "{k:?}");
    let p = report
        .problems
        .iter()
        .find(|p| p.kind == K::SegmentTruncated)
        .unwrap();
    assert_eq!(p.location.segment, Some(segment));

    let report = fsck(dir, ReadData::All, true);
    assert_eq!(report.unrepaired_count(), 0, "{:#?}", report.problems);
    let k = kinds(&fsck(dir, ReadData::All, false));
    assert!(
        k.iter().all(|k| *k == K::MissingObject),
        "only A's lost chunk remains: {k:?}"
    );
    assert!(reads_back(dir, &rb.blob_ref, &b));
}

#[test]
fn deleted_segment_is_found_and_repair_drops_its_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (ra, rb, _a, b) = setup(dir, TreePolicy::default());
    let store = open(dir);
    let x = sealed_chunk(&store, &ra.blob_ref);
    let segment = entry(&store, &x).loc.segment;
    drop(store);
    std::fs::remove_file(seg_path(dir, segment)).unwrap();

    let report = fsck(dir, ReadData::None, false);
    let k = kinds(&report);
    assert!(k.contains(&K::SegmentMissing), "{k:?}");
    assert!(k.contains(&K::ObjectBytesMissing), "{k:?}");
    assert!(
        report
            .affected_blobs
            .iter()
            .any(|a| a.blob_id == hex(&ra.blob_id))
    );

    let report = fsck(dir, ReadData::None, true);
    assert_eq!(report.unrepaired_count(), 0, "{:#?}", report.problems);
    let k = kinds(&fsck(dir, ReadData::All, false));
    assert!(k.iter().all(|k| *k == K::MissingObject), "{k:?}");
    assert!(
        reads_back(dir, &rb.blob_ref, &b),
        "B (other segments) still reads"
    );
}

#[test]
fn a_check_gives_no_new_file_the_id_of_a_missing_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = open(dir);
    store.store(&random_bytes(5_000, 7)).unwrap();
    let ids = store.segments().segment_ids();
    drop(store);
    assert_eq!(ids.len(), 1, "one segment, the one the check leaves out");
    let only = ids[0];
    std::fs::remove_file(seg_path(dir, only)).unwrap();
    // Each check opens the store without the missing segment, so the open starts a segment of
    // its own: never under the id the index still names, or the next check (and any open)
    // would find that segment short instead of missing.
    for _ in 0..2 {
        let k = kinds(&fsck(dir, ReadData::None, false));
        assert!(k.contains(&K::SegmentMissing), "{k:?}");
        assert!(!k.contains(&K::SegmentTruncated), "{k:?}");
        assert!(!seg_path(dir, only).exists());
    }
}

#[test]
fn corrupted_refcount_is_found_and_recomputed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (ra, _rb, _a, _b) = setup(dir, TreePolicy::default());
    let store = open(dir);
    let x = sealed_chunk(&store, &ra.blob_ref);
    drop(store);
    let good = refcount(dir, &x).unwrap();
    set_refcount(dir, &x, good + 6);
    let report = fsck(dir, ReadData::None, false);
    assert_eq!(kinds(&report), vec![K::RefcountMismatch]);
    assert_eq!(
        report
            .problems
            .iter()
            .find(|p| p.kind == K::RefcountMismatch)
            .unwrap()
            .location
            .object,
        Some(hex(&x))
    );
    fsck(dir, ReadData::None, true);
    assert_eq!(refcount(dir, &x), Some(good));
    assert_eq!(kinds(&fsck(dir, ReadData::None, false)), vec![]);
}

#[test]
fn orphan_segment_file_is_found_and_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let _ = setup(dir, TreePolicy::default());
    let orphan = seg_path(dir, 0x1000);
    std::fs::copy(seg_path(dir, 1), &orphan).unwrap();
    let report = fsck(dir, ReadData::None, false);
    assert_eq!(kinds(&report), vec![K::OrphanFile]);
    assert_eq!(
        report.problems[0].location.path.as_deref(),
        Some(orphan.display().to_string().as_str())
    );
    let report = fsck(dir, ReadData::None, true);
    assert_eq!(report.unrepaired_count(), 0);
    assert!(!orphan.exists());
    assert_eq!(kinds(&fsck(dir, ReadData::None, false)), vec![]);
}
