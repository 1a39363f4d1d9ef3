//! Store then fetch returns the same bytes, for edge sizes, random sizes and both chunkings.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::*;
use net_mesh_engine::{BlobRef, ChunkingStrategy, TreePolicy};
use proptest::prelude::*;

#[test]
fn edge_sizes_round_trip_with_cdc_and_fixed() {
    let tmp = tempfile::tempdir().unwrap();
    for (i, chunking) in [SMALL_CDC, ChunkingStrategy::Fixed { size: 4096 }]
        .into_iter()
        .enumerate()
    {
        let store = open(
            &tmp.path().join(i.to_string()),
            chunking,
            TreePolicy::default(),
        );
        for len in [
            0usize, 1, 1023, 1024, 1025, 4095, 4096, 4097, 16383, 16384, 16385, 65_537,
        ] {
            let data = random_bytes(len, len as u64);
            let out = store.store(&data).unwrap();
            assert_eq!(out.blob_ref.size(), len as u64);
            assert_eq!(
                fetch_all(&store, &out.blob_ref),
                data,
                "len {len} {chunking}"
            );
        }
    }
}

#[test]
fn empty_blob_is_small_with_the_empty_hash() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path(), SMALL_CDC, TreePolicy::default());
    let out = store.store(&[]).unwrap();
    assert_eq!(
        out.blob_ref,
        BlobRef::Small {
            hash: *blake3::hash(b"").as_bytes(),
            size: 0
        }
    );
    assert!(fetch_all(&store, &out.blob_ref).is_empty());
}

#[test]
fn chunk_ids_are_plain_blake3_so_b3sum_agrees() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path(), SMALL_CDC, TreePolicy::default());
    let data = random_bytes(1000, 1);
    let out = store.store(&data).unwrap();
    assert_eq!(
        out.blob_ref,
        BlobRef::Small {
            hash: *blake3::hash(&data).as_bytes(),
            size: 1000
        }
    );
}

#[test]
fn same_bytes_give_the_same_ref_across_stores_and_piece_sizes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = random_bytes(300_000, 42);
    let a = open(&tmp.path().join("a"), SMALL_CDC, TINY_TREE);
    let b = open(&tmp.path().join("b"), SMALL_CDC, TINY_TREE);
    let ra = a.store(&data).unwrap().blob_ref;
    let mut w = b.writer().unwrap();
    for piece in data.chunks(777) {
        w.write(piece).unwrap();
    }
    let rb = w.finish("x").unwrap().blob_ref;
    assert_eq!(ra, rb);
    assert!(ra.depth() >= 3);
}

/// Hands out its bytes in pieces of varying size, as a pipe or socket would.
struct Trickle<'a> {
    data: &'a [u8],
    turn: usize,
}

impl std::io::Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.turn += 1;
        let n = [1, 4093, 65_536, 1 << 20, 7 << 20][self.turn % 5]
            .min(buf.len())
            .min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

#[test]
fn store_stream_over_many_blocks_equals_store() {
    // Larger than several of store_stream's 16 MiB cut blocks, so chunks straddle blocks and
    // the block buffers are recycled; both chunkings, and an empty input.
    let tmp = tempfile::tempdir().unwrap();
    let data = random_bytes(50 << 20, 17);
    for (i, chunking) in [
        ChunkingStrategy::default(),
        ChunkingStrategy::Fixed { size: 3 << 20 },
    ]
    .into_iter()
    .enumerate()
    {
        let store = open(&tmp.path().join(i.to_string()), chunking, TINY_TREE);
        for len in [0, data.len() - 12_345] {
            let whole = store.store(&data[..len]).unwrap().blob_ref;
            let reader = Trickle {
                data: &data[..len],
                turn: 0,
            };
            let streamed = store.store_stream(reader, "s").unwrap().blob_ref;
            assert_eq!(streamed, whole, "{chunking} len {len}");
            assert_eq!(fetch_all(&store, &streamed), &data[..len]);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]
    #[test]
    fn random_sizes_round_trip(len in 0usize..200_000, seed in any::<u64>(), fixed in any::<bool>(), fan in 2usize..5) {
        let tmp = tempfile::tempdir().unwrap();
        let chunking = if fixed { ChunkingStrategy::Fixed { size: 2048 } } else { SMALL_CDC };
        let store = open(tmp.path(), chunking, TreePolicy { leaf_fanout: fan, internal_fanout: fan, manifest_max_refs: net_mesh_engine::tree::DEFAULT_MANIFEST_MAX_REFS });
        let data = random_bytes(len, seed);
        let out = store.store(&data).unwrap();
        prop_assert_eq!(fetch_all(&store, &out.blob_ref), data);
    }
}
