//! Golden vectors: fixed values encode to the exact checked-in bytes, the bytes decode back, the
//! node ids match, and each corrupt vector fails with the exact expected error.
//!
//! Files live in `engine/tests/golden/`: hex, whitespace ignored, `#` starts a comment. To
//! regenerate after an intentional format change (with a version bump and a FORMAT.md history
//! entry!) run with `NET_MESH_BLESS_GOLDEN=1`.

// Test helpers outside #[test] fns: a failed expectation must panic, that is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::PathBuf;

use net_mesh_engine::codec::layout::{MANIFEST_COUNT_OFFSET, MANIFEST_SIZE_OFFSET};
use net_mesh_engine::codec::{
    BlobRef, ChildRef, ChunkRef, ChunkRole, DecodeError, Encoding, InternalNode, LeafNode,
    chunk_id, internal_id, leaf_id,
};

fn golden_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex(text: &str) -> Vec<u8> {
    let digits: String = text
        .lines()
        .map(|line| line.split('#').next().unwrap_or(""))
        .flat_map(|line| line.chars())
        .filter(|c| !c.is_whitespace())
        .collect();
    assert!(digits.len().is_multiple_of(2), "odd number of hex digits");
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).expect("hex digit"))
        .collect()
}

fn render(comment: &str, bytes: &[u8]) -> String {
    let mut out = format!("# {comment}\n# {} bytes\n", bytes.len());
    for row in bytes.chunks(16) {
        out.push_str(&to_hex(row));
        out.push('\n');
    }
    out
}

/// Returns the golden bytes, writing them first when blessing.
fn golden(name: &str, comment: &str, bytes: &[u8]) -> Vec<u8> {
    let path = golden_path(name);
    if std::env::var_os("NET_MESH_BLESS_GOLDEN").is_some() {
        std::fs::write(&path, render(comment, bytes)).expect("write golden");
    }
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    parse_hex(&text)
}

fn small() -> BlobRef {
    BlobRef::Small {
        hash: chunk_id(b"hello"),
        size: 5,
    }
}

fn empty() -> BlobRef {
    BlobRef::Small {
        hash: chunk_id(b""),
        size: 0,
    }
}

fn rs_2_3() -> Encoding {
    Encoding::ReedSolomon {
        data_shards: 2,
        total_shards: 3,
    }
}

fn chunks() -> Vec<ChunkRef> {
    vec![
        ChunkRef {
            hash: chunk_id(b"net-"),
            size: 4,
            role: ChunkRole::Data,
        },
        ChunkRef {
            hash: chunk_id(b"mesh"),
            size: 4,
            role: ChunkRole::Data,
        },
        ChunkRef {
            hash: chunk_id(b"parity"),
            size: 4,
            role: ChunkRole::Parity { stripe_index: 0 },
        },
    ]
}

fn manifest() -> BlobRef {
    BlobRef::Manifest {
        encoding: rs_2_3(),
        chunks: chunks(),
        size: 8,
    }
}

fn leaf() -> LeafNode {
    LeafNode {
        encoding: rs_2_3(),
        chunks: chunks(),
    }
}

fn internal() -> InternalNode {
    InternalNode {
        level: 1,
        children: vec![
            ChildRef {
                hash: leaf().id(),
                covered: 8,
            },
            ChildRef {
                hash: [0xab; 32],
                covered: 1 << 32,
            },
        ],
    }
}

fn tree() -> BlobRef {
    BlobRef::Tree {
        encoding: rs_2_3(),
        root_hash: internal().id(),
        total_size: 8 + (1 << 32),
        depth: 2,
    }
}

#[test]
fn small_blob_ref_matches_golden() {
    let bytes = golden(
        "blob_ref_small.hex",
        "BlobRef::Small { hash: BLAKE3(\"hello\"), size: 5 }",
        &small().encode(),
    );
    assert_eq!(small().encode(), bytes);
    assert_eq!(BlobRef::decode(&bytes), Ok(small()));
}

#[test]
fn empty_blob_ref_matches_golden() {
    let bytes = golden(
        "blob_ref_empty.hex",
        "BlobRef::Small { hash: BLAKE3(\"\"), size: 0 } (the empty blob)",
        &empty().encode(),
    );
    assert_eq!(empty().encode(), bytes);
    assert_eq!(BlobRef::decode(&bytes), Ok(empty()));
}

#[test]
fn manifest_blob_ref_with_parity_matches_golden() {
    let bytes = golden(
        "blob_ref_manifest_rs.hex",
        "BlobRef::Manifest { RS k=2 n=3, [Data BLAKE3(\"net-\") 4, Data BLAKE3(\"mesh\") 4, \
         Parity BLAKE3(\"parity\") 4 stripe 0], size: 8 }",
        &manifest().encode(),
    );
    assert_eq!(manifest().encode(), bytes);
    assert_eq!(BlobRef::decode(&bytes), Ok(manifest()));
}

#[test]
fn tree_blob_ref_matches_golden() {
    let bytes = golden(
        "blob_ref_tree.hex",
        "BlobRef::Tree { RS k=2 n=3, root_hash: id of internal.hex, total_size: 8 + 2^32, depth: 2 }",
        &tree().encode(),
    );
    assert_eq!(tree().encode(), bytes);
    assert_eq!(BlobRef::decode(&bytes), Ok(tree()));
}

#[test]
fn leaf_node_and_its_id_match_golden() {
    let bytes = golden(
        "leaf.hex",
        "LeafNode { RS k=2 n=3, same chunks as blob_ref_manifest_rs.hex }",
        &leaf().encode(),
    );
    assert_eq!(leaf().encode(), bytes);
    assert_eq!(LeafNode::decode(&bytes), Ok(leaf()));
    let id = golden(
        "leaf.id.hex",
        "derive_key(\"net-mesh 2026-11 tree leaf node v1\", leaf.hex)",
        &leaf().id(),
    );
    assert_eq!(leaf().id().to_vec(), id);
    assert_eq!(leaf_id(&bytes).to_vec(), id);
}

#[test]
fn internal_node_and_its_id_match_golden() {
    let bytes = golden(
        "internal.hex",
        "InternalNode { level 1, [(id of leaf.hex, 8), ([0xab; 32], 2^32)] }",
        &internal().encode(),
    );
    assert_eq!(internal().encode(), bytes);
    assert_eq!(InternalNode::decode(&bytes), Ok(internal()));
    let id = golden(
        "internal.id.hex",
        "derive_key(\"net-mesh 2026-11 tree internal node v1\", internal.hex)",
        &internal().id(),
    );
    assert_eq!(internal().id().to_vec(), id);
    assert_eq!(internal_id(&bytes).to_vec(), id);
}

#[test]
fn chunk_id_is_plain_blake3_like_b3sum() {
    // `printf hello | b3sum`
    assert_eq!(
        to_hex(&chunk_id(b"hello")),
        "ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f"
    );
    // `b3sum` of the empty input.
    assert_eq!(
        to_hex(&chunk_id(b"")),
        "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
    );
}

#[test]
fn text_form_matches_golden() {
    let path = golden_path("blob_ref_small.txt");
    if std::env::var_os("NET_MESH_BLESS_GOLDEN").is_some() {
        std::fs::write(&path, format!("{}\n", small().to_text())).expect("write golden");
    }
    let text = std::fs::read_to_string(&path).expect("read golden");
    assert_eq!(small().to_text(), text.trim_end());
    assert_eq!(BlobRef::from_text(text.trim_end()), Ok(small()));
}

/// (file, description, how to corrupt the valid encoding, decoder, expected error)
type Decoder = fn(&[u8]) -> Result<(), DecodeError>;

fn decode_blob(b: &[u8]) -> Result<(), DecodeError> {
    BlobRef::decode(b).map(|_| ())
}
fn decode_leaf(b: &[u8]) -> Result<(), DecodeError> {
    LeafNode::decode(b).map(|_| ())
}
fn decode_internal(b: &[u8]) -> Result<(), DecodeError> {
    InternalNode::decode(b).map(|_| ())
}

fn check_corrupt(
    name: &str,
    comment: &str,
    corrupt: Vec<u8>,
    decode: Decoder,
    expected: DecodeError,
) {
    let bytes = golden(name, comment, &corrupt);
    assert_eq!(
        bytes, corrupt,
        "{name} differs from the corruption it documents"
    );
    assert_eq!(decode(&bytes), Err(expected), "{name}");
}

#[test]
fn corrupt_trailing_byte_matches_golden_error() {
    let mut b = small().encode();
    b.push(0);
    check_corrupt(
        "corrupt_trailing_byte.hex",
        "blob_ref_small.hex + one 00 byte",
        b,
        decode_blob,
        DecodeError::TrailingBytes {
            offset: 46,
            count: 1,
        },
    );
}

#[test]
fn corrupt_bad_magic_matches_golden_error() {
    let mut b = small().encode();
    b[0] = b'X';
    check_corrupt(
        "corrupt_bad_magic.hex",
        "blob_ref_small.hex with magic \"XMBR\"",
        b,
        decode_blob,
        DecodeError::BadMagic {
            form: "BlobRef",
            expected: *b"NMBR",
            found: *b"XMBR",
        },
    );
}

#[test]
fn corrupt_unknown_version_matches_golden_error() {
    let mut b = leaf().encode();
    b[4] = 2;
    check_corrupt(
        "corrupt_unknown_version.hex",
        "leaf.hex with version byte 2",
        b,
        decode_leaf,
        DecodeError::UnsupportedVersion {
            form: "leaf node",
            version: 2,
            supported: 1,
        },
    );
}

#[test]
fn corrupt_count_too_large_matches_golden_error() {
    let mut b = manifest().encode();
    b[MANIFEST_COUNT_OFFSET..MANIFEST_COUNT_OFFSET + 4].copy_from_slice(&65_537u32.to_le_bytes());
    check_corrupt(
        "corrupt_count_too_large.hex",
        "blob_ref_manifest_rs.hex with chunk count 65537",
        b,
        decode_blob,
        DecodeError::TooMany {
            what: "manifest chunks",
            count: 65_537,
            max: 65_536,
        },
    );
}

#[test]
fn corrupt_size_mismatch_matches_golden_error() {
    let mut b = manifest().encode();
    b[MANIFEST_SIZE_OFFSET..MANIFEST_SIZE_OFFSET + 8].copy_from_slice(&12u64.to_le_bytes());
    check_corrupt(
        "corrupt_size_mismatch.hex",
        "blob_ref_manifest_rs.hex with size 12 (data chunks sum to 8)",
        b,
        decode_blob,
        DecodeError::SizeMismatch {
            declared: 12,
            computed: 8,
        },
    );
}

#[test]
fn corrupt_internal_zero_covered_matches_golden_error() {
    let mut b = internal().encode();
    b[10 + 40 + 32..10 + 40 + 40].copy_from_slice(&0u64.to_le_bytes());
    check_corrupt(
        "corrupt_internal_zero_covered.hex",
        "internal.hex with the second child covering 0 bytes",
        b,
        decode_internal,
        DecodeError::ZeroSize {
            what: "child covered",
            offset: 82,
        },
    );
}

#[test]
fn corrupt_unknown_role_matches_golden_error() {
    let mut b = leaf().encode();
    b[12 + 36] = 7;
    check_corrupt(
        "corrupt_unknown_role.hex",
        "leaf.hex with the first chunk's role tag 7",
        b,
        decode_leaf,
        DecodeError::UnknownRole { tag: 7, offset: 48 },
    );
}

#[test]
fn fuzz_seed_corpus_is_the_golden_vectors() {
    let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let targets = [
        (
            "blob_ref",
            &[
                "blob_ref_small",
                "blob_ref_empty",
                "blob_ref_manifest_rs",
                "blob_ref_tree",
                "corrupt_trailing_byte",
                "corrupt_bad_magic",
                "corrupt_count_too_large",
                "corrupt_size_mismatch",
            ][..],
        ),
        (
            "leaf_node",
            &["leaf", "corrupt_unknown_version", "corrupt_unknown_role"][..],
        ),
        (
            "internal_node",
            &["internal", "corrupt_internal_zero_covered"][..],
        ),
    ];
    for (target, names) in targets {
        for name in names {
            let seed = corpus
                .join(target)
                .join(format!("seed-{}", name.replace('_', "-")));
            let seed_bytes =
                std::fs::read(&seed).unwrap_or_else(|e| panic!("read {}: {e}", seed.display()));
            let golden_text =
                std::fs::read_to_string(golden_path(&format!("{name}.hex"))).expect("golden");
            assert_eq!(seed_bytes, parse_hex(&golden_text), "{}", seed.display());
        }
    }
}
