//! Range reads of erasure-coded trees: stripes never straddle leaves, ranges across stripes and
//! leaves come back exact with chunks lost, and a range inside one stripe reads only that
//! stripe's chunks (parity only when a data chunk fails).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::*;
use net_mesh_engine::erasure::{RsParams, stripes};
use net_mesh_engine::{BlobRef, ChunkRole, ChunkingStrategy, TreePolicy};

const FIXED: ChunkingStrategy = ChunkingStrategy::Fixed { size: 1024 };

#[test]
fn leaves_hold_whole_stripes_with_consecutive_indexes() {
    let tmp = tempfile::tempdir().unwrap();
    for leaf_fanout in [1usize, 2, 5, 7, 9, 12] {
        let tree = TreePolicy {
            leaf_fanout,
            internal_fanout: 2,
            manifest_max_refs: net_mesh_engine::tree::DEFAULT_MANIFEST_MAX_REFS,
        };
        let store = open(&tmp.path().join(format!("f{leaf_fanout}")), SMALL_CDC, tree);
        let data = random_bytes(150_000, leaf_fanout as u64);
        let r = store
            .store_stream_with_rs(&data[..], 3, 5, "t")
            .unwrap()
            .blob_ref;
        assert!(
            matches!(r, BlobRef::Tree { .. }),
            "fan-out {leaf_fanout}: {r:?}"
        );
        let params = RsParams::new(3, 5).unwrap();
        let mut next = 0u32;
        for list in chunk_lists(&store, &r) {
            let spans = stripes(params, &list).unwrap();
            assert!(!spans.is_empty());
            // Whole stripes only; more than one only when they fit the fan-out.
            assert!(spans.len() == 1 || list.len() <= leaf_fanout.max(5));
            for s in spans {
                assert_eq!(s.stripe_index, next, "fan-out {leaf_fanout}");
                next += 1;
            }
        }
        assert!(next > 3);
        assert!(fetch_all(&store, &r) == data);
    }
}

#[test]
fn ranges_across_stripes_and_leaves_survive_lost_chunks() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = TreePolicy {
        leaf_fanout: 10,
        internal_fanout: 2,
        manifest_max_refs: net_mesh_engine::tree::DEFAULT_MANIFEST_MAX_REFS,
    };
    let store = open(tmp.path(), SMALL_CDC, tree);
    let data = random_bytes(300_000, 77);
    let r = store
        .store_stream_with_rs(&data[..], 4, 6, "t")
        .unwrap()
        .blob_ref;
    assert!(r.depth() >= 3, "depth {}", r.depth());
    // Lose two chunks of every stripe: alternate data and parity positions.
    let params = RsParams::new(4, 6).unwrap();
    let mut lost = 0;
    for list in chunk_lists(&store, &r) {
        for s in stripes(params, &list).unwrap() {
            let a = s.start + (s.stripe_index as usize % s.data_count);
            let b = s.start + s.data_count + (s.stripe_index as usize % 2);
            for i in [a, b] {
                toggle_payload_byte(&store, &list[i].hash, 3);
                lost += 1;
            }
        }
    }
    assert!(lost > 10);
    let len = data.len() as u64;
    let mut x = 12345u64;
    for _ in 0..200 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let a = (x >> 33) % len;
        let b = a + ((x >> 7) % (len - a + 1)).min(60_000);
        let mut out = Vec::new();
        store.fetch_range(&r, a..b, &mut out).unwrap();
        assert!(out[..] == data[a as usize..b as usize], "range {a}..{b}");
    }
    assert!(fetch_all(&store, &r) == data);
}

#[test]
fn a_range_in_one_stripe_reads_only_that_stripe() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path(), FIXED, TreePolicy::default());
    let data = random_bytes(1024 * 10 * 3, 5);
    let r = store
        .store_stream_with_rs(&data[..], 10, 14, "t")
        .unwrap()
        .blob_ref;
    // 3 stripes of 14 refs: past the Manifest cross-over, a Tree of one leaf.
    assert!(matches!(r, BlobRef::Tree { depth: 2, .. }), "{r:?}");
    let chunks = store.blob_chunks(&r).unwrap();
    // Stripe 1 covers bytes 10240..20480; read 3 chunks' worth inside it.
    let range = 10 * 1024 + 100..10 * 1024 + 3 * 1024 + 5;
    store.stats().reset();
    let mut out = Vec::new();
    store.fetch_range(&r, range.clone(), &mut out).unwrap();
    assert!(out[..] == data[range.start as usize..range.end as usize]);
    assert_eq!(
        store.stats().get().1,
        4,
        "healthy: only the 4 data chunks touched"
    );

    // Lose the second of those chunks: the stripe's other data chunks and one parity are
    // read (10 verified shards, added into the lost one and dropped), nothing from other
    // stripes. The first touched chunk, already written and dropped when the loss shows (a
    // read holds one chunk, not a stripe), is read once more for the rebuild, and the two
    // touched after the lost one once more to be written.
    let stripe1: Vec<_> = chunks[14..28].to_vec();
    assert!(stripe1[..10].iter().all(|c| c.role == ChunkRole::Data));
    assert!(stripe1.iter().all(|c| c.stripe == Some(1)));
    toggle_payload_byte(&store, &stripe1[1].hash, 0);
    store.stats().reset();
    let mut out = Vec::new();
    store.fetch_range(&r, range.clone(), &mut out).unwrap();
    assert!(out[..] == data[range.start as usize..range.end as usize]);
    assert_eq!(
        store.stats().get().1,
        14,
        "2 touched (1 lost) + the first again, 8 other data, 1 parity + the last 2 again"
    );
}
