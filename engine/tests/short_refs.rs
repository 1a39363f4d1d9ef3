//! Printed refs stay short: with the default tree policy the `nm1…` text of every blob's ref is
//! at most `MAX_SHORT_REF_TEXT_LEN` (2048) characters, whatever its size, chunk count or
//! encoding; the Manifest → Tree cross-over sits at 30 refs (docs/FORMAT.md §2.11, with the
//! golden vectors `golden/crossover_*.txt`); refs written with the old cross-over still read.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::path::PathBuf;

use common::*;
use net_mesh_engine::codec::{
    BlobRef, ChunkRef, ChunkRole, Encoding, Hash, InternalNode, LeafNode, MAX_CHUNK_SIZE, chunk_id,
};
use net_mesh_engine::tree::{
    DEFAULT_MANIFEST_MAX_REFS, MAX_SHORT_REF_TEXT_LEN, NodeSink, TreeBuilder,
};
use net_mesh_engine::{ChunkingStrategy, TreePolicy};
use proptest::prelude::*;

/// Keeps the encoded nodes (for the golden vectors) or only their ids.
#[derive(Default)]
struct Sink {
    keep: bool,
    leaves: Vec<Vec<u8>>,
    internals: Vec<Vec<u8>>,
}

impl NodeSink for Sink {
    type Error = std::convert::Infallible;
    fn put_leaf(&mut self, leaf: &LeafNode) -> Result<Hash, Self::Error> {
        if self.keep {
            self.leaves.push(leaf.encode());
        }
        Ok(leaf.id())
    }
    fn put_internal(&mut self, node: &InternalNode) -> Result<Hash, Self::Error> {
        if self.keep {
            self.internals.push(node.encode());
        }
        Ok(node.id())
    }
}

/// Distinct chunk refs of the largest size (the size does not change a ref's encoded length,
/// but it makes the blob as large as a chunk count allows).
fn data_ref(i: u64, size: u32) -> ChunkRef {
    let mut hash = [0u8; 32];
    hash[..8].copy_from_slice(&i.to_le_bytes());
    ChunkRef {
        hash,
        size,
        role: ChunkRole::Data,
    }
}

/// The ref the default policy builds for `data_chunks` chunks under `encoding`: plain chunks are
/// pushed one by one; an erasure-coded blob is pushed in stripes of `k` data refs (the last may
/// be short) plus `n - k` 41-byte parity refs each, as the writer does.
fn build(data_chunks: u64, encoding: Encoding, size_of: impl Fn(u64) -> u32) -> (BlobRef, u64) {
    let mut sink = Sink::default();
    let mut b = TreeBuilder::new(TreePolicy::default(), encoding).unwrap();
    let mut refs = 0u64;
    match encoding {
        Encoding::Plain => {
            for i in 0..data_chunks {
                b.push(data_ref(i, size_of(i)), &mut sink).unwrap();
                refs += 1;
            }
        }
        Encoding::ReedSolomon {
            data_shards,
            total_shards,
        } => {
            let (k, n) = (u64::from(data_shards), u64::from(total_shards));
            let mut next = 0u64;
            let mut stripe_index = 0u32;
            while next < data_chunks {
                let take = k.min(data_chunks - next);
                let mut stripe: Vec<ChunkRef> = (next..next + take)
                    .map(|i| data_ref(i, size_of(i)))
                    .collect();
                let shard = stripe.iter().map(|c| c.size).max().unwrap();
                for j in 0..n - k {
                    let mut parity = data_ref(u64::MAX - j, shard);
                    parity.hash[8..12].copy_from_slice(&stripe_index.to_le_bytes());
                    parity.role = ChunkRole::Parity { stripe_index };
                    stripe.push(parity);
                }
                refs += stripe.len() as u64;
                b.push_stripe(&stripe, &mut sink).unwrap();
                next += take;
                stripe_index += 1;
            }
        }
    }
    (b.finish(&mut sink).unwrap(), refs)
}

fn check_short(r: &BlobRef, refs: u64, what: &str) {
    let text = r.to_text();
    assert!(
        text.len() <= MAX_SHORT_REF_TEXT_LEN,
        "{what}: {} refs print {} characters",
        refs,
        text.len()
    );
    // The cross-over decides the shape: a list of more than 30 refs is never inlined.
    match r {
        BlobRef::Manifest { chunks, .. } => {
            assert!(chunks.len() <= DEFAULT_MANIFEST_MAX_REFS, "{what}");
            assert_eq!(chunks.len() as u64, refs, "{what}");
        }
        BlobRef::Small { .. } => assert_eq!(refs, 1, "{what}"),
        BlobRef::Tree { .. } => assert!(refs > DEFAULT_MANIFEST_MAX_REFS as u64, "{what}"),
    }
    assert_eq!(BlobRef::from_text(&text).as_ref(), Ok(r), "{what}");
}

fn rs(k: u8, n: u8) -> Encoding {
    Encoding::ReedSolomon {
        data_shards: k,
        total_shards: n,
    }
}

#[test]
fn every_chunk_count_up_to_a_few_leaves_prints_a_short_ref() {
    let encodings = [
        Encoding::Plain,
        rs(2, 3),
        rs(3, 5),
        rs(10, 14),
        rs(1, 30),
        rs(1, 31),
        rs(29, 30),
        rs(200, 255),
        rs(1, 255),
    ];
    for encoding in encodings {
        for chunks in 1..=400u64 {
            let (r, refs) = build(chunks, encoding, |_| MAX_CHUNK_SIZE);
            check_short(&r, refs, &format!("{encoding:?}, {chunks} chunks"));
        }
    }
}

#[test]
fn the_largest_manifest_sits_at_the_boundary() {
    // 1 data + 29 parity refs: 30 refs, 29 of them 41 bytes, under a 3-byte RS header.
    let (r, refs) = build(1, rs(1, 30), |_| MAX_CHUNK_SIZE);
    assert_eq!(refs, 30);
    assert!(matches!(r, BlobRef::Manifest { .. }), "{r:?}");
    assert_eq!(r.encode().len(), 21 + 37 + 29 * 41);
    assert_eq!(
        r.to_text().len(),
        3 + ((21 + 37 + 29 * 41) * 8usize).div_ceil(5)
    );
    // One more parity ref crosses over to a tree.
    let (r, refs) = build(1, rs(1, 31), |_| MAX_CHUNK_SIZE);
    assert_eq!(refs, 31);
    assert!(matches!(r, BlobRef::Tree { depth: 2, .. }), "{r:?}");
    // The worst case the default is derived from: 30 refs of 41 bytes, RS header. (Not a
    // valid Manifest, which needs a data ref, so strictly larger than any real one.)
    let worst = BlobRef::Manifest {
        encoding: rs(1, 255),
        chunks: (0..30)
            .map(|i| ChunkRef {
                hash: [i; 32],
                size: MAX_CHUNK_SIZE,
                role: ChunkRole::Parity {
                    stripe_index: u32::MAX,
                },
            })
            .collect(),
        size: 0,
    };
    assert_eq!(worst.encode().len(), 21 + 30 * 41);
    assert_eq!(worst.to_text().len(), 2005);
    assert!(worst.to_text().len() <= MAX_SHORT_REF_TEXT_LEN);
    // Plain: 30 refs are a Manifest, 31 a Tree.
    let (r, _) = build(30, Encoding::Plain, |_| 1);
    assert!(matches!(r, BlobRef::Manifest { ref chunks, .. } if chunks.len() == 30));
    let (r, _) = build(31, Encoding::Plain, |_| 1);
    assert!(matches!(r, BlobRef::Tree { depth: 2, .. }));
}

#[test]
fn the_largest_blobs_print_a_tree_of_fixed_length() {
    // 200 000 chunks of 16 MiB (~3.2 TB): a deep tree, still one short line.
    let (r, refs) = build(200_000, Encoding::Plain, |_| MAX_CHUNK_SIZE);
    check_short(&r, refs, "200 000 max-size chunks");
    assert_eq!(r.size(), 200_000 * u64::from(MAX_CHUNK_SIZE));
    assert_eq!(r.to_text().len(), 80);
    let (r, refs) = build(50_000, rs(10, 14), |_| MAX_CHUNK_SIZE);
    check_short(&r, refs, "50 000 max-size chunks, RS 10+4");
    assert_eq!(r.to_text().len(), 83);
}

fn encoding_strategy() -> impl Strategy<Value = Encoding> {
    prop_oneof![
        Just(Encoding::Plain),
        (1u8..=254, 1u8..=254).prop_map(|(k, p)| {
            let k = k.min(254);
            let n = k.saturating_add(p).max(k + 1);
            rs(k, n)
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]
    /// Any chunk count (up to ~20 000), any sizes, any encoding: the text ref fits.
    #[test]
    fn any_blob_prints_a_ref_of_at_most_2048_characters(
        chunks in prop_oneof![1u64..=64, 1u64..=20_000],
        encoding in encoding_strategy(),
        seed in any::<u64>(),
    ) {
        let size_of = |i: u64| {
            let x = (i ^ seed).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            u32::try_from(x % u64::from(MAX_CHUNK_SIZE)).unwrap() + 1
        };
        let (r, refs) = build(chunks, encoding, size_of);
        check_short(&r, refs, &format!("{encoding:?}, {chunks} chunks"));
    }
}

/// `i mod 251` for `i` in `0..len`.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

const FIXED_1K: ChunkingStrategy = ChunkingStrategy::Fixed { size: 1024 };

fn golden_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the golden file of a cross-over vector holds: the text ref, then each node in hex.
fn render(comment: &str, r: &BlobRef, sink: &Sink) -> String {
    let mut out = format!("# {comment}\nref {}\n", r.to_text());
    for node in &sink.internals {
        out.push_str(&format!("internal {}\n", hex(node)));
    }
    for node in &sink.leaves {
        out.push_str(&format!("leaf {}\n", hex(node)));
    }
    out
}

fn golden(name: &str, text: &str) -> String {
    let path = golden_path(name);
    if std::env::var_os("NET_MESH_BLESS_GOLDEN").is_some() {
        std::fs::write(&path, text).unwrap();
    }
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The pure builder over the chunk ids of `data` cut in 1 KiB chunks, keeping the nodes.
fn build_pattern(data: &[u8]) -> (BlobRef, Sink) {
    let mut sink = Sink {
        keep: true,
        ..Sink::default()
    };
    let mut b = TreeBuilder::new(TreePolicy::default(), Encoding::Plain).unwrap();
    for chunk in data.chunks(1024) {
        let c = ChunkRef {
            hash: chunk_id(chunk),
            size: chunk.len() as u32,
            role: ChunkRole::Data,
        };
        b.push(c, &mut sink).unwrap();
    }
    (b.finish(&mut sink).unwrap(), sink)
}

#[test]
fn cross_over_golden_vectors_match_the_builder_and_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path(), FIXED_1K, TreePolicy::default());
    for (chunks, name, comment) in [
        (
            30usize,
            "crossover_30_manifest.txt",
            "bytes i mod 251, 30 KiB, fixed 1 KiB chunks, default policy: a 30-ref Manifest",
        ),
        (
            31,
            "crossover_31_tree.txt",
            "bytes i mod 251, 31 KiB, fixed 1 KiB chunks, default policy: a depth-2 Tree \
             (one internal node over one 31-ref leaf)",
        ),
    ] {
        let data = pattern(chunks * 1024);
        let (r, sink) = build_pattern(&data);
        let text = render(comment, &r, &sink);
        assert_eq!(golden(name, &text), text, "{name}");
        match chunks {
            30 => assert!(sink.leaves.is_empty() && sink.internals.is_empty()),
            _ => {
                assert!(matches!(r, BlobRef::Tree { depth: 2, .. }), "{r:?}");
                assert_eq!((sink.leaves.len(), sink.internals.len()), (1, 1));
            }
        }
        // The store builds the same ref from the same bytes and reads it back.
        let put = store.store_stream(&data[..], name).unwrap();
        assert_eq!(put.blob_ref, r, "{name}");
        assert_eq!(fetch_all(&store, &r), data);
    }
}

#[test]
fn stored_blobs_of_any_shape_print_short_refs_and_read_back() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path(), FIXED_1K, TreePolicy::default());
    for len in [0usize, 1, 1024, 30 * 1024, 30 * 1024 + 1, 200 * 1024 + 17] {
        let data = random_bytes(len, len as u64);
        let plain = store.store_stream(&data[..], "").unwrap().blob_ref;
        assert!(plain.to_text().len() <= MAX_SHORT_REF_TEXT_LEN, "{len}");
        assert_eq!(fetch_all(&store, &plain), data);
        let coded = store
            .store_stream_with_rs(&data[..], 10, 14, "")
            .unwrap()
            .blob_ref;
        assert!(coded.to_text().len() <= MAX_SHORT_REF_TEXT_LEN, "{len}");
        assert_eq!(fetch_all(&store, &coded), data);
    }
}

/// Stores written before the cross-over moved keep their long Manifest refs: they still read
/// in a store opened with the default policy; a new put of the same bytes gets a Tree.
#[test]
fn long_manifest_refs_written_with_the_old_cross_over_still_read() {
    let tmp = tempfile::tempdir().unwrap();
    let old_policy = TreePolicy {
        manifest_max_refs: 8192,
        ..TreePolicy::default()
    };
    let data = random_bytes(100 * 1024, 7);
    let old_ref = {
        let store = open(tmp.path(), FIXED_1K, old_policy);
        store.store_stream(&data[..], "old").unwrap().blob_ref
    };
    assert!(matches!(old_ref, BlobRef::Manifest { ref chunks, .. } if chunks.len() == 100));
    let old_text = old_ref.to_text();
    assert!(old_text.len() > MAX_SHORT_REF_TEXT_LEN);

    let store = open(tmp.path(), FIXED_1K, TreePolicy::default());
    let parsed = BlobRef::from_text(&old_text).unwrap();
    assert_eq!(fetch_all(&store, &parsed), data);
    let new_ref = store.store_stream(&data[..], "new").unwrap().blob_ref;
    assert!(matches!(new_ref, BlobRef::Tree { depth: 2, .. }));
    assert_eq!(fetch_all(&store, &new_ref), data);
    assert_eq!(store.pins().unwrap().pins.len(), 2);
}
