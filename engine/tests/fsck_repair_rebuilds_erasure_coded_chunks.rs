//! `fsck --repair` rebuilds the lost chunks of an erasure-coded blob from their stripes: a
//! corrupt chunk (found by reading data) and a chunk whose entry was force-removed come back,
//! with exactly the reference counts their lists hold (lost_refs_v1), and the store is clean.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod gc_common;

use gc_common::*;
use net_mesh_engine::TreePolicy;
use net_mesh_engine::codec::ChunkRole;
use net_mesh_engine::fsck::{ProblemKind as K, ReadData};

#[test]
fn repair_rebuilds_corrupt_and_removed_chunks_of_an_rs_blob() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let tree = TreePolicy {
        leaf_fanout: 12,
        internal_fanout: 3,
        manifest_max_refs: net_mesh_engine::tree::DEFAULT_MANIFEST_MAX_REFS,
    };
    let data = random_bytes(300_000, 61);
    let store = open_tree(dir, tree);
    let out = store.store_stream_with_rs(&data[..], 4, 6, "rs").unwrap();
    let chunks = store.blob_chunks(&out.blob_ref).unwrap();
    let stripes: std::collections::BTreeSet<u32> = chunks.iter().filter_map(|c| c.stripe).collect();
    assert!(stripes.len() >= 3);
    // A data chunk of stripe 0 gets corrupted, a parity chunk of stripe 1 force-removed.
    let corrupt = chunks
        .iter()
        .find(|c| c.stripe == Some(0) && c.role == ChunkRole::Data)
        .unwrap()
        .hash;
    let removed = chunks
        .iter()
        .find(|c| c.stripe == Some(1) && matches!(c.role, ChunkRole::Parity { .. }))
        .unwrap()
        .hash;
    let loc = entry(&store, &corrupt).loc;
    assert_eq!(store.remove_chunk(&removed, true).unwrap(), 1);
    drop(store);
    flip_payload_byte(dir, loc, 3);

    let report = fsck(dir, ReadData::All, false);
    let mut k = kinds(&report);
    k.sort_by_key(|k| format!("{k:?}"));
    assert_eq!(
        k,
        vec![K::MissingObject, K::ObjectCorrupt],
        "{:#?}",
        report.problems
    );

    let report = fsck(dir, ReadData::All, true);
    assert_eq!(
        report.unrepaired_count(),
        0,
        "{:#?}\n{:?}",
        report.problems,
        report.repairs
    );
    assert!(
        report
            .repairs
            .iter()
            .any(|r| r.contains("rebuilt 2 chunk(s) from parity")),
        "{:?}",
        report.repairs
    );
    assert_eq!(kinds(&fsck(dir, ReadData::All, false)), vec![]);
    let store = open_tree(dir, tree);
    assert!(fetch(&store, &out.blob_ref) == data);
    assert_eq!(entry(&store, &removed).refcount, 1);
    assert_eq!(entry(&store, &corrupt).refcount, 1);
}
