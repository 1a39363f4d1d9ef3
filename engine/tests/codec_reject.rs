//! One named test per decoder rejection rule, each checking the exact error.

// Test helpers outside #[test] fns: a failed expectation must panic, that is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use net_mesh_engine::codec::layout::{
    BLOB_REF_MAGIC, INTERNAL_NODE_MAGIC, LEAF_NODE_MAGIC, MANIFEST_COUNT_OFFSET,
    MANIFEST_ENCODING_OFFSET, TREE_DEPTH_OFFSET, TREE_ENCODING_OFFSET,
};
use net_mesh_engine::codec::{
    BlobRef, Capabilities, ChildRef, ChunkRef, ChunkRole, DecodeError, Encoding, InternalNode,
    LeafNode, MAX_CHUNK_SIZE, MAX_INTERNAL_FANOUT, MAX_LEAF_FANOUT, chunk_id,
};

const RS_4_6: Encoding = Encoding::ReedSolomon {
    data_shards: 4,
    total_shards: 6,
};

fn data(n: u8, size: u32) -> ChunkRef {
    ChunkRef {
        hash: [n; 32],
        size,
        role: ChunkRole::Data,
    }
}

fn parity(n: u8, size: u32, stripe_index: u32) -> ChunkRef {
    ChunkRef {
        hash: [n; 32],
        size,
        role: ChunkRole::Parity { stripe_index },
    }
}

fn manifest(encoding: Encoding, chunks: Vec<ChunkRef>) -> BlobRef {
    let size = chunks
        .iter()
        .filter(|c| c.role == ChunkRole::Data)
        .map(|c| u64::from(c.size))
        .sum();
    BlobRef::Manifest {
        encoding,
        chunks,
        size,
    }
}

fn tree(depth: u8, total_size: u64) -> BlobRef {
    BlobRef::Tree {
        encoding: Encoding::Plain,
        root_hash: [7; 32],
        total_size,
        depth,
    }
}

fn small(size: u64) -> BlobRef {
    BlobRef::Small {
        hash: [1; 32],
        size,
    }
}

fn internal(level: u8, covered: &[u64]) -> InternalNode {
    InternalNode {
        level,
        children: covered
            .iter()
            .enumerate()
            .map(|(i, &covered)| ChildRef {
                hash: [i as u8; 32],
                covered,
            })
            .collect(),
    }
}

fn set_u32(bytes: &mut [u8], at: usize, v: u32) {
    bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn empty_input_is_truncated_for_every_form() {
    let expect = DecodeError::Truncated {
        what: "magic",
        offset: 0,
        needed: 4,
        available: 0,
    };
    assert_eq!(BlobRef::decode(&[]), Err(expect.clone()));
    assert_eq!(LeafNode::decode(&[]), Err(expect.clone()));
    assert_eq!(InternalNode::decode(&[]), Err(expect));
}

#[test]
fn bad_magic_is_rejected_and_forms_are_not_interchangeable() {
    let leaf = LeafNode {
        encoding: Encoding::Plain,
        chunks: vec![data(1, 10)],
    };
    assert_eq!(
        BlobRef::decode(&leaf.encode()),
        Err(DecodeError::BadMagic {
            form: "BlobRef",
            expected: BLOB_REF_MAGIC,
            found: LEAF_NODE_MAGIC,
        })
    );
    assert_eq!(
        InternalNode::decode(&leaf.encode()),
        Err(DecodeError::BadMagic {
            form: "internal node",
            expected: INTERNAL_NODE_MAGIC,
            found: LEAF_NODE_MAGIC,
        })
    );
    assert!(matches!(
        LeafNode::decode(&small(3).encode()),
        Err(DecodeError::BadMagic { .. })
    ));
}

#[test]
fn unknown_version_is_rejected_with_the_version_seen() {
    let mut bytes = small(3).encode();
    bytes[4] = 2;
    assert_eq!(
        BlobRef::decode(&bytes),
        Err(DecodeError::UnsupportedVersion {
            form: "BlobRef",
            version: 2,
            supported: 1,
        })
    );
    let mut bytes = internal(1, &[5]).encode();
    bytes[4] = 0;
    assert!(matches!(
        InternalNode::decode(&bytes),
        Err(DecodeError::UnsupportedVersion { version: 0, .. })
    ));
}

#[test]
fn unknown_variant_tag_reports_byte_and_offset() {
    let mut bytes = small(3).encode();
    bytes[5] = 3;
    assert_eq!(
        BlobRef::decode(&bytes),
        Err(DecodeError::UnknownVariant { tag: 3, offset: 5 })
    );
}

#[test]
fn unknown_role_tag_reports_byte_and_offset() {
    let mut bytes = manifest(Encoding::Plain, vec![data(1, 10)]).encode();
    let role_at = MANIFEST_ENCODING_OFFSET + 1 + 36;
    bytes[role_at] = 9;
    assert_eq!(
        BlobRef::decode(&bytes),
        Err(DecodeError::UnknownRole {
            tag: 9,
            offset: role_at,
        })
    );
}

#[test]
fn unknown_encoding_tag_reports_byte_and_offset() {
    let mut bytes = tree(2, 100).encode();
    bytes[TREE_ENCODING_OFFSET] = 2;
    assert_eq!(
        BlobRef::decode(&bytes),
        Err(DecodeError::UnknownEncoding {
            tag: 2,
            offset: TREE_ENCODING_OFFSET,
        })
    );
}

#[test]
fn reed_solomon_needs_one_le_k_lt_n() {
    for (k, n) in [(0u8, 1u8), (0, 255), (3, 3), (5, 4), (255, 255)] {
        let blob = BlobRef::Tree {
            encoding: Encoding::ReedSolomon {
                data_shards: k,
                total_shards: n,
            },
            root_hash: [0; 32],
            total_size: 1,
            depth: 2,
        };
        assert_eq!(
            BlobRef::decode(&blob.encode()),
            Err(DecodeError::InvalidErasure {
                data_shards: k,
                total_shards: n,
                offset: TREE_ENCODING_OFFSET,
            }),
            "k={k} n={n}"
        );
    }
    for (k, n) in [(1u8, 2u8), (254, 255), (1, 255)] {
        let blob = BlobRef::Tree {
            encoding: Encoding::ReedSolomon {
                data_shards: k,
                total_shards: n,
            },
            root_hash: [0; 32],
            total_size: 1,
            depth: 2,
        };
        assert_eq!(BlobRef::decode(&blob.encode()), Ok(blob));
    }
}

#[test]
fn trailing_bytes_are_rejected() {
    let mut bytes = small(3).encode();
    bytes.push(0);
    assert_eq!(
        BlobRef::decode(&bytes),
        Err(DecodeError::TrailingBytes {
            offset: 46,
            count: 1,
        })
    );
    let mut leaf = LeafNode {
        encoding: Encoding::Plain,
        chunks: vec![data(1, 10)],
    }
    .encode();
    leaf.extend_from_slice(&[0, 0]);
    assert!(matches!(
        LeafNode::decode(&leaf),
        Err(DecodeError::TrailingBytes { count: 2, .. })
    ));
    let mut node = internal(1, &[5]).encode();
    node.push(1);
    assert!(matches!(
        InternalNode::decode(&node),
        Err(DecodeError::TrailingBytes { count: 1, .. })
    ));
}

#[test]
fn every_truncation_of_a_valid_encoding_is_rejected() {
    let blobs = [
        small(3),
        manifest(RS_4_6, vec![data(1, 10), parity(2, 10, 0)]),
        tree(3, 1 << 40),
    ];
    for blob in blobs {
        let bytes = blob.encode();
        for len in 0..bytes.len() {
            assert!(
                matches!(
                    BlobRef::decode(&bytes[..len]),
                    Err(DecodeError::Truncated { .. })
                ),
                "{blob:?} cut at {len}"
            );
        }
    }
}

#[test]
fn manifest_count_above_max_leaf_fanout_is_rejected_before_allocating() {
    let mut bytes = manifest(Encoding::Plain, vec![data(1, 10)]).encode();
    set_u32(
        &mut bytes,
        MANIFEST_COUNT_OFFSET,
        MAX_LEAF_FANOUT as u32 + 1,
    );
    assert_eq!(
        BlobRef::decode(&bytes),
        Err(DecodeError::TooMany {
            what: "manifest chunks",
            count: MAX_LEAF_FANOUT as u64 + 1,
            max: MAX_LEAF_FANOUT as u64,
        })
    );
    set_u32(&mut bytes, MANIFEST_COUNT_OFFSET, u32::MAX);
    assert!(matches!(
        BlobRef::decode(&bytes),
        Err(DecodeError::TooMany { .. })
    ));
}

#[test]
fn count_larger_than_remaining_input_is_rejected_before_allocating() {
    let mut bytes = manifest(Encoding::Plain, vec![data(1, 10)]).encode();
    set_u32(&mut bytes, MANIFEST_COUNT_OFFSET, MAX_LEAF_FANOUT as u32);
    assert_eq!(
        BlobRef::decode(&bytes),
        Err(DecodeError::Truncated {
            what: "manifest chunks",
            offset: MANIFEST_ENCODING_OFFSET + 1,
            needed: MAX_LEAF_FANOUT * 37,
            available: 37,
        })
    );
    let mut node = internal(1, &[5]).encode();
    set_u32(&mut node, 6, 2);
    assert_eq!(
        InternalNode::decode(&node),
        Err(DecodeError::Truncated {
            what: "internal node children",
            offset: 10,
            needed: 80,
            available: 40,
        })
    );
}

#[test]
fn leaf_count_above_max_is_rejected() {
    let mut bytes = LeafNode {
        encoding: Encoding::Plain,
        chunks: vec![data(1, 10)],
    }
    .encode();
    set_u32(&mut bytes, 5, MAX_LEAF_FANOUT as u32 + 1);
    assert!(matches!(
        LeafNode::decode(&bytes),
        Err(DecodeError::TooMany {
            what: "leaf chunks",
            ..
        })
    ));
}

#[test]
fn internal_count_above_max_is_rejected() {
    let mut bytes = internal(1, &[5]).encode();
    set_u32(&mut bytes, 6, MAX_INTERNAL_FANOUT as u32 + 1);
    assert_eq!(
        InternalNode::decode(&bytes),
        Err(DecodeError::TooMany {
            what: "internal node children",
            count: MAX_INTERNAL_FANOUT as u64 + 1,
            max: MAX_INTERNAL_FANOUT as u64,
        })
    );
}

#[test]
fn full_fanout_lists_are_accepted() {
    let leaf = LeafNode {
        encoding: Encoding::Plain,
        chunks: (0..MAX_LEAF_FANOUT).map(|i| data(i as u8, 1)).collect(),
    };
    assert_eq!(LeafNode::decode(&leaf.encode()), Ok(leaf.clone()));
    let mut too_many = leaf;
    too_many.chunks.push(data(0, 1));
    assert!(matches!(
        LeafNode::decode(&too_many.encode()),
        Err(DecodeError::TooMany { .. })
    ));
}

#[test]
fn chunk_size_zero_is_rejected() {
    let bytes = manifest(Encoding::Plain, vec![data(1, 10), data(2, 0)]).encode();
    assert_eq!(
        BlobRef::decode(&bytes),
        Err(DecodeError::ZeroSize {
            what: "chunk size",
            offset: MANIFEST_ENCODING_OFFSET + 1 + 37 + 32,
        })
    );
}

#[test]
fn chunk_size_above_max_is_rejected() {
    let leaf = LeafNode {
        encoding: Encoding::Plain,
        chunks: vec![data(1, MAX_CHUNK_SIZE + 1)],
    };
    assert_eq!(
        LeafNode::decode(&leaf.encode()),
        Err(DecodeError::ChunkTooLarge {
            size: u64::from(MAX_CHUNK_SIZE) + 1,
            max: MAX_CHUNK_SIZE,
            offset: 10 + 32,
        })
    );
}

#[test]
fn small_size_above_max_chunk_size_is_rejected() {
    assert_eq!(
        BlobRef::decode(&small(u64::from(MAX_CHUNK_SIZE) + 1).encode()),
        Err(DecodeError::ChunkTooLarge {
            size: u64::from(MAX_CHUNK_SIZE) + 1,
            max: MAX_CHUNK_SIZE,
            offset: 38,
        })
    );
    let max = small(u64::from(MAX_CHUNK_SIZE));
    assert_eq!(BlobRef::decode(&max.encode()), Ok(max));
}

#[test]
fn small_size_zero_is_the_empty_blob() {
    let empty = BlobRef::Small {
        hash: chunk_id(b""),
        size: 0,
    };
    assert_eq!(BlobRef::decode(&empty.encode()), Ok(empty.clone()));
    assert_eq!(empty.size(), 0);
}

#[test]
fn manifest_with_zero_chunks_is_rejected() {
    let blob = BlobRef::Manifest {
        encoding: Encoding::Plain,
        chunks: vec![],
        size: 0,
    };
    assert_eq!(
        BlobRef::decode(&blob.encode()),
        Err(DecodeError::Empty {
            what: "manifest chunks",
            offset: MANIFEST_COUNT_OFFSET,
        })
    );
}

#[test]
fn leaf_with_zero_chunks_is_rejected() {
    let leaf = LeafNode {
        encoding: RS_4_6,
        chunks: vec![],
    };
    assert_eq!(
        LeafNode::decode(&leaf.encode()),
        Err(DecodeError::Empty {
            what: "leaf chunks",
            offset: 5,
        })
    );
}

#[test]
fn chunk_list_of_only_parity_is_rejected() {
    let blob = manifest(RS_4_6, vec![parity(1, 10, 0)]);
    assert_eq!(
        BlobRef::decode(&blob.encode()),
        Err(DecodeError::ZeroSize {
            what: "data bytes in chunk list",
            offset: MANIFEST_COUNT_OFFSET,
        })
    );
    let leaf = LeafNode {
        encoding: RS_4_6,
        chunks: vec![parity(1, 10, 0)],
    };
    assert!(matches!(
        LeafNode::decode(&leaf.encode()),
        Err(DecodeError::ZeroSize { .. })
    ));
}

#[test]
fn manifest_size_must_equal_sum_of_data_chunk_sizes() {
    let blob = BlobRef::Manifest {
        encoding: RS_4_6,
        chunks: vec![data(1, 10), data(2, 20), parity(3, 20, 0)],
        size: 50,
    };
    assert_eq!(
        BlobRef::decode(&blob.encode()),
        Err(DecodeError::SizeMismatch {
            declared: 50,
            computed: 30,
        })
    );
    assert!(blob.validate().is_err());
}

#[test]
fn parity_chunk_under_plain_encoding_is_rejected() {
    let blob = BlobRef::Manifest {
        encoding: Encoding::Plain,
        chunks: vec![data(1, 10), parity(2, 10, 0)],
        size: 10,
    };
    assert_eq!(
        BlobRef::decode(&blob.encode()),
        Err(DecodeError::ParityInPlain {
            offset: MANIFEST_ENCODING_OFFSET + 1 + 37,
        })
    );
    let leaf = LeafNode {
        encoding: Encoding::Plain,
        chunks: vec![parity(2, 10, 0), data(1, 10)],
    };
    assert_eq!(
        LeafNode::decode(&leaf.encode()),
        Err(DecodeError::ParityInPlain { offset: 10 })
    );
}

#[test]
fn tree_depth_below_two_or_above_max_is_rejected() {
    for depth in [0u8, 1, 33, 255] {
        assert_eq!(
            BlobRef::decode(&tree(depth, 10).encode()),
            Err(DecodeError::DepthOutOfRange {
                depth,
                min: 2,
                max: 32,
            })
        );
    }
    for depth in [2u8, 32] {
        assert_eq!(
            BlobRef::decode(&tree(depth, 10).encode()),
            Ok(tree(depth, 10))
        );
    }
    assert_eq!(TREE_DEPTH_OFFSET, 46);
}

#[test]
fn tree_total_size_zero_is_rejected() {
    assert_eq!(
        BlobRef::decode(&tree(2, 0).encode()),
        Err(DecodeError::ZeroSize {
            what: "tree total_size",
            offset: 38,
        })
    );
}

#[test]
fn tree_needs_capability_but_small_and_manifest_do_not() {
    let none = Capabilities::none();
    assert_eq!(
        BlobRef::decode_with(&tree(2, 10).encode(), &none),
        Err(DecodeError::UnsupportedVariant {
            variant: "BlobRef::Tree",
            capability: "dataforts.blob_tree_v3",
        })
    );
    let small = small(3);
    assert_eq!(BlobRef::decode_with(&small.encode(), &none), Ok(small));
    let m = manifest(RS_4_6, vec![data(1, 10), parity(2, 10, 0)]);
    assert_eq!(BlobRef::decode_with(&m.encode(), &none), Ok(m));
    let with_cap = Capabilities::from_iter(["dataforts.blob_tree_v3"]);
    assert_eq!(
        BlobRef::decode_with(&tree(2, 10).encode(), &with_cap),
        Ok(tree(2, 10))
    );
    assert!(Capabilities::all().contains(net_mesh_engine::codec::CAP_BLOB_TREE_V3));
    assert!(!Capabilities::none().contains(net_mesh_engine::codec::CAP_BLOB_TREE_V3));
}

#[test]
fn internal_node_with_zero_children_is_rejected() {
    assert_eq!(
        InternalNode::decode(&internal(1, &[]).encode()),
        Err(DecodeError::Empty {
            what: "internal node children",
            offset: 6,
        })
    );
}

#[test]
fn internal_child_covering_zero_bytes_is_rejected() {
    assert_eq!(
        InternalNode::decode(&internal(1, &[5, 0]).encode()),
        Err(DecodeError::ZeroSize {
            what: "child covered",
            offset: 10 + 40 + 32,
        })
    );
}

#[test]
fn internal_covered_sum_overflowing_u64_is_rejected() {
    let node = internal(2, &[u64::MAX, 1]);
    assert_eq!(
        InternalNode::decode(&node.encode()),
        Err(DecodeError::Overflow {
            what: "sum of child covered sizes",
        })
    );
    assert!(node.covered().is_err());
    let max = internal(2, &[u64::MAX - 1, 1]);
    assert_eq!(InternalNode::decode(&max.encode()), Ok(max.clone()));
    assert_eq!(max.covered(), Ok(u64::MAX));
}

#[test]
fn internal_level_zero_or_at_least_max_depth_is_rejected() {
    for level in [0u8, 32, 255] {
        assert_eq!(
            InternalNode::decode(&internal(level, &[5]).encode()),
            Err(DecodeError::LevelOutOfRange {
                level,
                min: 1,
                max: 31,
            })
        );
    }
    for level in [1u8, 31] {
        let node = internal(level, &[5]);
        assert_eq!(InternalNode::decode(&node.encode()), Ok(node));
    }
}

#[test]
fn leaf_covered_counts_only_data_chunks() {
    let leaf = LeafNode {
        encoding: RS_4_6,
        chunks: vec![data(1, 10), parity(2, 99, 0), data(3, 5)],
    };
    assert_eq!(leaf.covered(), Ok(15));
}
