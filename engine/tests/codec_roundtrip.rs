//! Property tests: every valid value round-trips exactly, every accepted byte string is
//! canonical, and no input makes a decoder panic.

// Test helpers outside #[test] fns: a failed expectation must panic, that is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use net_mesh_engine::codec::{
    BlobRef, Capabilities, ChildRef, ChunkRef, ChunkRole, Encoding, InternalNode, LeafNode,
    MAX_CHUNK_SIZE, MAX_DEPTH, chunk_id, fuzzing, internal_id, leaf_id,
};
use proptest::prelude::*;

fn encoding() -> impl Strategy<Value = Encoding> {
    prop_oneof![
        Just(Encoding::Plain),
        (1u8..=254)
            .prop_flat_map(|k| (Just(k), (k + 1)..=255u8))
            .prop_map(|(data_shards, total_shards)| Encoding::ReedSolomon {
                data_shards,
                total_shards
            }),
    ]
}

fn chunk_size() -> impl Strategy<Value = u32> {
    prop_oneof![1u32..=4096, Just(MAX_CHUNK_SIZE), 1u32..=MAX_CHUNK_SIZE]
}

fn chunk(parity_allowed: bool) -> BoxedStrategy<ChunkRef> {
    let role = if parity_allowed {
        prop_oneof![
            Just(ChunkRole::Data),
            any::<u32>().prop_map(|stripe_index| ChunkRole::Parity { stripe_index }),
        ]
        .boxed()
    } else {
        Just(ChunkRole::Data).boxed()
    };
    (any::<[u8; 32]>(), chunk_size(), role)
        .prop_map(|(hash, size, role)| ChunkRef { hash, size, role })
        .boxed()
}

/// A valid (encoding, chunk list): at least one Data chunk, parity only under RS.
fn chunk_list() -> impl Strategy<Value = (Encoding, Vec<ChunkRef>)> {
    encoding().prop_flat_map(|enc| {
        let parity = enc != Encoding::Plain;
        (
            Just(enc),
            chunk(false),
            prop::collection::vec(chunk(parity), 0..24),
            any::<prop::sample::Index>(),
        )
            .prop_map(|(enc, first_data, mut rest, at)| {
                let at = at.index(rest.len() + 1);
                rest.insert(at, first_data);
                (enc, rest)
            })
    })
}

fn data_sum(chunks: &[ChunkRef]) -> u64 {
    chunks
        .iter()
        .filter(|c| c.role == ChunkRole::Data)
        .map(|c| u64::from(c.size))
        .sum()
}

fn blob_ref() -> impl Strategy<Value = BlobRef> {
    prop_oneof![
        (any::<[u8; 32]>(), 0..=u64::from(MAX_CHUNK_SIZE))
            .prop_map(|(hash, size)| BlobRef::Small { hash, size }),
        chunk_list().prop_map(|(encoding, chunks)| BlobRef::Manifest {
            encoding,
            size: data_sum(&chunks),
            chunks,
        }),
        (encoding(), any::<[u8; 32]>(), 1..=u64::MAX, 2..=MAX_DEPTH).prop_map(
            |(encoding, root_hash, total_size, depth)| BlobRef::Tree {
                encoding,
                root_hash,
                total_size,
                depth,
            }
        ),
    ]
}

fn leaf() -> impl Strategy<Value = LeafNode> {
    chunk_list().prop_map(|(encoding, chunks)| LeafNode { encoding, chunks })
}

fn internal() -> impl Strategy<Value = InternalNode> {
    (
        1..MAX_DEPTH,
        prop::collection::vec(
            (any::<[u8; 32]>(), 1..=(u64::MAX / 64))
                .prop_map(|(hash, covered)| ChildRef { hash, covered }),
            1..40,
        ),
    )
        .prop_map(|(level, children)| InternalNode { level, children })
}

/// Flips, inserts or removes bytes of a valid encoding: inputs near the accepted set.
fn mutate(mut bytes: Vec<u8>, edits: &[(usize, u8, u8)]) -> Vec<u8> {
    for &(at, op, value) in edits {
        let at = at % (bytes.len() + 1);
        match op % 3 {
            0 if at < bytes.len() => bytes[at] ^= value | 1,
            1 => bytes.insert(at, value),
            _ if at < bytes.len() => {
                bytes.remove(at);
            }
            _ => {}
        }
    }
    bytes
}

fn edits() -> impl Strategy<Value = Vec<(usize, u8, u8)>> {
    prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..4)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn blob_ref_round_trips_exactly(blob in blob_ref()) {
        let bytes = blob.encode();
        prop_assert_eq!(BlobRef::decode(&bytes), Ok(blob.clone()));
        prop_assert_eq!(BlobRef::decode(&bytes).map(|b| b.encode()), Ok(bytes));
        prop_assert_eq!(blob.validate(), Ok(()));
    }

    #[test]
    fn blob_ref_text_form_round_trips(blob in blob_ref()) {
        let text = blob.to_text();
        prop_assert!(text.starts_with("nm1"));
        prop_assert!(text.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
        prop_assert_eq!(BlobRef::from_text(&text), Ok(blob.clone()));
        prop_assert_eq!(text.parse::<BlobRef>(), Ok(blob.clone()));
        prop_assert_eq!(blob.to_string(), text);
    }

    #[test]
    fn blob_ref_accessors_agree_with_fields(blob in blob_ref()) {
        match &blob {
            BlobRef::Small { size, .. } => {
                prop_assert_eq!(blob.size(), *size);
                prop_assert_eq!(blob.depth(), 0);
                prop_assert_eq!(blob.encoding(), Encoding::Plain);
            }
            BlobRef::Manifest { encoding, chunks, size } => {
                prop_assert_eq!(blob.size(), *size);
                prop_assert_eq!(blob.size(), data_sum(chunks));
                prop_assert_eq!(blob.depth(), 1);
                prop_assert_eq!(blob.encoding(), *encoding);
            }
            BlobRef::Tree { encoding, total_size, depth, .. } => {
                prop_assert_eq!(blob.size(), *total_size);
                prop_assert_eq!(blob.depth(), *depth);
                prop_assert_eq!(blob.encoding(), *encoding);
            }
        }
    }

    #[test]
    fn leaf_node_round_trips_exactly(leaf in leaf()) {
        let bytes = leaf.encode();
        prop_assert_eq!(LeafNode::decode(&bytes), Ok(leaf.clone()));
        prop_assert_eq!(leaf.id(), leaf_id(&bytes));
        prop_assert_eq!(leaf.covered(), Ok(data_sum(&leaf.chunks)));
    }

    #[test]
    fn internal_node_round_trips_exactly(node in internal()) {
        let bytes = node.encode();
        prop_assert_eq!(InternalNode::decode(&bytes), Ok(node.clone()));
        prop_assert_eq!(node.id(), internal_id(&bytes));
        prop_assert_eq!(node.covered(), Ok(node.children.iter().map(|c| c.covered).sum::<u64>()));
    }

    #[test]
    fn node_ids_never_collide_with_chunk_ids_or_other_kind(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        prop_assert_ne!(leaf_id(&bytes), chunk_id(&bytes));
        prop_assert_ne!(internal_id(&bytes), chunk_id(&bytes));
        prop_assert_ne!(leaf_id(&bytes), internal_id(&bytes));
    }

    #[test]
    fn mutated_blob_refs_never_panic_and_stay_canonical(blob in blob_ref(), e in edits()) {
        let bytes = mutate(blob.encode(), &e);
        fuzzing::blob_ref(&bytes);
        let _ = BlobRef::decode_with(&bytes, &Capabilities::none());
    }

    #[test]
    fn mutated_leaves_never_panic_and_stay_canonical(leaf in leaf(), e in edits()) {
        fuzzing::leaf_node(&mutate(leaf.encode(), &e));
    }

    #[test]
    fn mutated_internal_nodes_never_panic_and_stay_canonical(node in internal(), e in edits()) {
        fuzzing::internal_node(&mutate(node.encode(), &e));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        fuzzing::blob_ref(&bytes);
        fuzzing::leaf_node(&bytes);
        fuzzing::internal_node(&bytes);
    }

    #[test]
    fn arbitrary_bytes_after_valid_headers_never_panic(
        head in prop::sample::select(vec![&b"NMBR\x01"[..], b"NMLF\x01", b"NMIN\x01"]),
        tail in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut bytes = head.to_vec();
        bytes.extend_from_slice(&tail);
        fuzzing::blob_ref(&bytes);
        fuzzing::leaf_node(&bytes);
        fuzzing::internal_node(&bytes);
    }

    #[test]
    fn arbitrary_text_never_panics(s in "nm1[a-z2-7A-Z=]{0,120}") {
        if let Ok(blob) = BlobRef::from_text(&s) {
            prop_assert_eq!(blob.to_text(), s);
        }
    }
}
