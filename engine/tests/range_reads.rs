//! `fetch_range` returns exactly the slice, and reads only the nodes and chunks it needs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::*;
use net_mesh_engine::{BlobError, ChunkingStrategy, TreePolicy};
use proptest::prelude::*;

fn range(store: &net_mesh_engine::Store, r: &net_mesh_engine::BlobRef, a: u64, b: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let n = store.fetch_range(r, a..b, &mut out).unwrap();
    assert_eq!(n, b - a);
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, .. ProptestConfig::default() })]
    #[test]
    fn random_ranges_equal_the_slice_for_small_manifest_and_deep_trees(seed in any::<u64>(), cdc in any::<bool>(), cuts in proptest::collection::vec((any::<u32>(), any::<u32>()), 12)) {
        let tmp = tempfile::tempdir().unwrap();
        let chunking = if cdc { SMALL_CDC } else { ChunkingStrategy::Fixed { size: 4096 } };
        let store = open(tmp.path(), chunking, TreePolicy { leaf_fanout: 16, internal_fanout: 2, manifest_max_refs: net_mesh_engine::tree::DEFAULT_MANIFEST_MAX_REFS });
        for len in [800usize, 40_000, 600_000] {
            let data = random_bytes(len, seed);
            let r = store.store(&data).unwrap().blob_ref;
            if !cdc {
                let expected_kind = match len { 800 => "small", 40_000 => "manifest", _ => "tree" };
                prop_assert_eq!(store.stat(&r).unwrap().kind, expected_kind, "len {}", len);
            }
            if len == 600_000 { prop_assert!(r.depth() >= 3); }
            for (x, y) in &cuts {
                let a = u64::from(*x) % (len as u64 + 1);
                let b = u64::from(*y) % (len as u64 + 1);
                let (a, b) = (a.min(b), a.max(b));
                prop_assert_eq!(range(&store, &r, a, b), data[a as usize..b as usize].to_vec());
            }
        }
    }
}

#[test]
fn a_64k_range_of_a_large_tree_reads_at_most_depth_plus_one_nodes_and_two_chunks() {
    let tmp = tempfile::tempdir().unwrap();
    const CHUNK: u64 = 64 * 1024;
    let store = open(
        tmp.path(),
        ChunkingStrategy::Fixed { size: CHUNK as u32 },
        TreePolicy {
            leaf_fanout: 4,
            internal_fanout: 4,
            manifest_max_refs: net_mesh_engine::tree::DEFAULT_MANIFEST_MAX_REFS,
        },
    );
    let data = random_bytes(16 * 1024 * 1024, 9); // 256 chunks, 64 leaves: depth 4
    let r = store.store(&data).unwrap().blob_ref;
    let depth = u64::from(r.depth());
    assert_eq!(depth, 4);
    // Inside one chunk, across a chunk boundary inside a leaf, across two leaves of one parent.
    for start in [
        5 * CHUNK,
        5 * CHUNK + 1000,
        4 * CHUNK - 1000,
        7 * CHUNK + 12_345,
    ] {
        store.stats().reset();
        let got = range(&store, &r, start, start + CHUNK);
        assert_eq!(got, data[start as usize..(start + CHUNK) as usize]);
        let (nodes, chunks) = store.stats().get();
        assert!(
            nodes <= depth + 1,
            "start {start}: {nodes} nodes for depth {depth}"
        );
        assert!(chunks <= 2, "start {start}: {chunks} chunks");
    }
    // The whole blob reads every chunk exactly once.
    store.stats().reset();
    let mut sink = std::io::sink();
    store.fetch(&r, &mut sink).unwrap();
    assert_eq!(store.stats().get().1, 256);
}

#[test]
fn invalid_and_overflowing_ranges_are_typed_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path(), SMALL_CDC, TINY_TREE);
    let r = store.store(&random_bytes(50_000, 1)).unwrap().blob_ref;
    let mut out = Vec::new();
    for (a, b) in [
        (10, 5),
        (0, 50_001),
        (u64::MAX - 1, u64::MAX),
        (50_001, 50_002),
    ] {
        let err = store.fetch_range(&r, a..b, &mut out).unwrap_err();
        assert!(
            matches!(err, BlobError::InvalidRange { .. }),
            "{a}..{b}: {err:?}"
        );
    }
    assert!(out.is_empty());
    assert_eq!(store.fetch_range(&r, 50_000..50_000, &mut out).unwrap(), 0);
}
