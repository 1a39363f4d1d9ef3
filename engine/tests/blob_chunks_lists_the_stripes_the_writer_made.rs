//! Property: for random (k, n), chunk sizes and tree shapes — blobs spanning several leaves,
//! Manifests, a short last stripe — the stripes `blob chunks` (and GC's stripe guard) assign are
//! the writer's: the i-th data chunk of the blob is in stripe i / k, each stripe's n − k parity
//! refs follow its data refs and name it, and every list splits (`erasure::stripes`, the rule
//! reads and repair decode by) into exactly those stripes.
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
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, .. ProptestConfig::default() })]
    #[test]
    fn blob_chunks_lists_the_stripes_the_writer_made(
        seed in any::<u64>(),
        k in 2u8..8,
        p in 1u8..4,
        chunk_size in 64u32..2048,
        full_chunks in 1usize..40,
        tail in 0u32..2048,
        leaf_fanout in 1usize..24,
        inline in any::<bool>(),
    ) {
        let n = k + p;
        let (k_us, p_us) = (usize::from(k), usize::from(p));
        let tail = tail % chunk_size;
        let len = full_chunks * chunk_size as usize + tail as usize;
        let tree = TreePolicy {
            leaf_fanout,
            internal_fanout: 2,
            manifest_max_refs: if inline { 8192 } else { 1 },
        };
        let tmp = tempfile::tempdir().unwrap();
        let store = open(tmp.path(), ChunkingStrategy::Fixed { size: chunk_size }, tree);
        let data = random_bytes(len, seed);
        let r = store.store_stream_with_rs(&data[..], k, n, "").unwrap().blob_ref;
        let listed = store.blob_chunks(&r).unwrap();
        let lists = chunk_lists(&store, &r);
        prop_assert_eq!(lists.iter().map(Vec::len).sum::<usize>(), listed.len());
        if !inline {
            prop_assert!(matches!(r, BlobRef::Tree { .. }), "{:?}", r);
        }

        // The writer's rule: stripe s holds data chunks s·k .. min((s+1)·k, D), then p parity.
        let data_count = full_chunks + usize::from(tail > 0);
        let stripe_count = data_count.div_ceil(k_us);
        let mut at = 0;
        for s in 0..stripe_count {
            let in_stripe = k_us.min(data_count - s * k_us);
            let mut shard_len = 0;
            for _ in 0..in_stripe {
                let c = &listed[at];
                prop_assert_eq!(c.role, ChunkRole::Data, "entry {}", at);
                prop_assert_eq!(c.stripe, Some(s as u32), "data entry {}", at);
                shard_len = shard_len.max(c.size);
                at += 1;
            }
            for _ in 0..p_us {
                let c = &listed[at];
                prop_assert_eq!(c.role, ChunkRole::Parity { stripe_index: s as u32 }, "entry {}", at);
                prop_assert_eq!(c.stripe, Some(s as u32), "parity entry {}", at);
                prop_assert_eq!(c.size, shard_len, "parity entry {}", at);
                at += 1;
            }
        }
        prop_assert_eq!(at, listed.len(), "entries past the last stripe");

        // Each list splits, by the read path's rule, into the same stripes.
        let params = RsParams::new(k, n).unwrap();
        let mut base = 0;
        for list in &lists {
            for span in stripes(params, list).unwrap() {
                for i in span.all_range() {
                    prop_assert_eq!(listed[base + i].hash, list[i].hash);
                    prop_assert_eq!(listed[base + i].stripe, Some(span.stripe_index));
                }
            }
            base += list.len();
        }
        prop_assert!(fetch_all(&store, &r) == data);
    }
}
