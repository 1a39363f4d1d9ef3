//! docs/FORMAT.md section 2, the `codec::layout` constants and the encoders all agree.
//!
//! The doc's offset/size tables are parsed and compared with rows built from the constants; then
//! the encoders are checked to put distinctive field values exactly at those offsets.

// Test helpers outside #[test] fns: a failed expectation must panic, that is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::BTreeMap;

use net_mesh_engine::codec::layout::*;
use net_mesh_engine::codec::{
    BlobRef, ChildRef, ChunkRef, ChunkRole, Encoding, INTERNAL_NODE_CONTEXT, InternalNode,
    LEAF_NODE_CONTEXT, LeafNode, MAX_CHUNK_SIZE, MAX_DEPTH, MAX_INTERNAL_FANOUT, MAX_LEAF_FANOUT,
};

const FORMAT_MD: &str = include_str!("../../docs/FORMAT.md");

fn section_2() -> &'static str {
    let start = FORMAT_MD.find("## 2. Objects").expect("section 2 heading");
    let rest = &FORMAT_MD[start..];
    let end = rest.find("\n## 3.").expect("section 3 heading");
    &rest[..end]
}

/// Rows `| offset | size | `field` | meaning |` of section 2: field -> every (offset, size) seen.
fn documented_rows() -> BTreeMap<String, Vec<(String, String)>> {
    let mut rows: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for line in section_2().lines() {
        let cells: Vec<&str> = line.trim().split('|').map(str::trim).collect();
        // ["", offset, size, `field`, meaning, ""]
        if cells.len() != 6 || !cells[3].starts_with('`') {
            continue;
        }
        let offset = cells[1];
        if !offset.starts_with(|c: char| c.is_ascii_digit() || c == '+') {
            continue;
        }
        rows.entry(cells[3].trim_matches('`').to_string())
            .or_default()
            .push((offset.to_string(), cells[2].to_string()));
    }
    rows
}

fn abs(offset: usize, size: usize) -> (String, String) {
    (offset.to_string(), size.to_string())
}

fn rel(offset: usize, size: usize) -> (String, String) {
    (format!("+{offset}"), size.to_string())
}

fn either(a: usize, b: usize) -> String {
    format!("{a} or {b}")
}

fn expected_rows() -> BTreeMap<String, (String, String)> {
    let enc_len = either(ENCODING_PLAIN_LEN, ENCODING_REED_SOLOMON_LEN);
    let rows = [
        ("magic", abs(MAGIC_OFFSET, MAGIC_LEN)),
        ("version", abs(VERSION_OFFSET, HEADER_LEN - VERSION_OFFSET)),
        ("encoding_tag", rel(ENCODING_TAG_REL, 1)),
        (
            "data_shards",
            rel(
                ENCODING_DATA_SHARDS_REL,
                ENCODING_TOTAL_SHARDS_REL - ENCODING_DATA_SHARDS_REL,
            ),
        ),
        (
            "total_shards",
            rel(
                ENCODING_TOTAL_SHARDS_REL,
                ENCODING_REED_SOLOMON_LEN - ENCODING_TOTAL_SHARDS_REL,
            ),
        ),
        ("hash", rel(CHUNK_HASH_REL, CHUNK_SIZE_REL - CHUNK_HASH_REL)),
        ("size", rel(CHUNK_SIZE_REL, CHUNK_ROLE_REL - CHUNK_SIZE_REL)),
        (
            "role_tag",
            rel(CHUNK_ROLE_REL, CHUNK_STRIPE_INDEX_REL - CHUNK_ROLE_REL),
        ),
        (
            "stripe_index",
            rel(
                CHUNK_STRIPE_INDEX_REL,
                CHUNK_REF_PARITY_LEN - CHUNK_STRIPE_INDEX_REL,
            ),
        ),
        (
            "variant_tag",
            abs(BLOB_VARIANT_OFFSET, SMALL_HASH_OFFSET - BLOB_VARIANT_OFFSET),
        ),
        (
            "small.hash",
            abs(SMALL_HASH_OFFSET, SMALL_SIZE_OFFSET - SMALL_HASH_OFFSET),
        ),
        (
            "small.size",
            abs(SMALL_SIZE_OFFSET, SMALL_LEN - SMALL_SIZE_OFFSET),
        ),
        (
            "manifest.size",
            abs(
                MANIFEST_SIZE_OFFSET,
                MANIFEST_COUNT_OFFSET - MANIFEST_SIZE_OFFSET,
            ),
        ),
        (
            "manifest.count",
            abs(
                MANIFEST_COUNT_OFFSET,
                MANIFEST_ENCODING_OFFSET - MANIFEST_COUNT_OFFSET,
            ),
        ),
        (
            "manifest.encoding",
            (MANIFEST_ENCODING_OFFSET.to_string(), enc_len.clone()),
        ),
        (
            "manifest.chunks",
            (
                either(
                    MANIFEST_ENCODING_OFFSET + ENCODING_PLAIN_LEN,
                    MANIFEST_ENCODING_OFFSET + ENCODING_REED_SOLOMON_LEN,
                ),
                "count entries".to_string(),
            ),
        ),
        (
            "tree.root_hash",
            abs(
                TREE_ROOT_HASH_OFFSET,
                TREE_TOTAL_SIZE_OFFSET - TREE_ROOT_HASH_OFFSET,
            ),
        ),
        (
            "tree.total_size",
            abs(
                TREE_TOTAL_SIZE_OFFSET,
                TREE_DEPTH_OFFSET - TREE_TOTAL_SIZE_OFFSET,
            ),
        ),
        (
            "tree.depth",
            abs(TREE_DEPTH_OFFSET, TREE_ENCODING_OFFSET - TREE_DEPTH_OFFSET),
        ),
        (
            "tree.encoding",
            (TREE_ENCODING_OFFSET.to_string(), enc_len.clone()),
        ),
        (
            "leaf.count",
            abs(LEAF_COUNT_OFFSET, LEAF_ENCODING_OFFSET - LEAF_COUNT_OFFSET),
        ),
        (
            "leaf.encoding",
            (LEAF_ENCODING_OFFSET.to_string(), enc_len.clone()),
        ),
        (
            "leaf.chunks",
            (
                either(
                    LEAF_ENCODING_OFFSET + ENCODING_PLAIN_LEN,
                    LEAF_ENCODING_OFFSET + ENCODING_REED_SOLOMON_LEN,
                ),
                "count entries".to_string(),
            ),
        ),
        (
            "internal.level",
            abs(
                INTERNAL_LEVEL_OFFSET,
                INTERNAL_COUNT_OFFSET - INTERNAL_LEVEL_OFFSET,
            ),
        ),
        (
            "internal.count",
            abs(
                INTERNAL_COUNT_OFFSET,
                INTERNAL_CHILDREN_OFFSET - INTERNAL_COUNT_OFFSET,
            ),
        ),
        (
            "internal.children",
            (
                INTERNAL_CHILDREN_OFFSET.to_string(),
                format!("{CHILD_REF_LEN} × count"),
            ),
        ),
        (
            "child.hash",
            rel(CHILD_HASH_REL, CHILD_COVERED_REL - CHILD_HASH_REL),
        ),
        (
            "child.covered",
            rel(CHILD_COVERED_REL, CHILD_REF_LEN - CHILD_COVERED_REL),
        ),
    ];
    rows.into_iter()
        .map(|(field, row)| (field.to_string(), row))
        .collect()
}

#[test]
fn documented_offset_tables_match_layout_constants() {
    let documented = documented_rows();
    let expected = expected_rows();
    for (field, want) in &expected {
        let seen = documented
            .get(field)
            .unwrap_or_else(|| panic!("FORMAT.md section 2 has no row for `{field}`"));
        for got in seen {
            assert_eq!(got, want, "FORMAT.md row for `{field}` (offset, size)");
        }
    }
    for field in documented.keys() {
        assert!(
            expected.contains_key(field),
            "FORMAT.md documents `{field}` but no layout constant backs it"
        );
    }
}

#[test]
fn documented_magics_contexts_and_limits_match_code() {
    let doc = section_2();
    for (form, magic) in [
        ("BlobRef", BLOB_REF_MAGIC),
        ("leaf node", LEAF_NODE_MAGIC),
        ("internal node", INTERNAL_NODE_MAGIC),
    ] {
        let ascii = String::from_utf8(magic.to_vec()).unwrap();
        let hex: Vec<String> = magic.iter().map(|b| format!("{b:02x}")).collect();
        let row = format!("| {form} | `{ascii}` | `{}` |", hex.join(" "));
        assert!(doc.contains(&row), "missing magic row {row}");
    }
    assert!(doc.contains(&format!("| leaf node | `{LEAF_NODE_CONTEXT}` |")));
    assert!(doc.contains(&format!("| internal node | `{INTERNAL_NODE_CONTEXT}` |")));
    assert!(doc.contains(&format!("`version` | `{FORMAT_VERSION}`")));
    assert!(doc.contains(&format!(
        "`MAX_CHUNK_SIZE` = 16 MiB ({})",
        group(MAX_CHUNK_SIZE as u64)
    )));
    assert!(doc.contains(&format!(
        "`MAX_LEAF_FANOUT` = {} chunk refs",
        group(MAX_LEAF_FANOUT as u64)
    )));
    assert!(doc.contains(&format!(
        "`MAX_INTERNAL_FANOUT` = {} children",
        group(MAX_INTERNAL_FANOUT as u64)
    )));
    assert!(doc.contains(&format!("`MAX_DEPTH` = {MAX_DEPTH} node levels")));
    assert!(doc.contains(&format!(
        "### 2.5 ChunkRef ({CHUNK_REF_DATA_LEN} bytes Data, {CHUNK_REF_PARITY_LEN} bytes Parity)"
    )));
    assert!(doc.contains(&format!("**Small** ({SMALL_LEN} bytes)")));
    assert!(doc.contains(&format!(
        "**Tree** ({} bytes Plain, {} ReedSolomon)",
        TREE_ENCODING_OFFSET + ENCODING_PLAIN_LEN,
        TREE_ENCODING_OFFSET + ENCODING_REED_SOLOMON_LEN
    )));
    assert!(doc.contains(&format!(
        "**Manifest** (`{} + {CHUNK_REF_DATA_LEN} × data + {CHUNK_REF_PARITY_LEN} × parity` bytes",
        MANIFEST_ENCODING_OFFSET + ENCODING_PLAIN_LEN
    )));
    assert!(doc.contains(&format!(
        "`{}` followed by RFC 4648 base32 with the lowercase\nalphabet `{}`",
        TEXT_PREFIX,
        std::str::from_utf8(TEXT_ALPHABET).unwrap()
    )));
    assert!(doc.contains("**All integers are little-endian**"));
}

/// 65536 -> "65 536" (the doc's digit grouping).
fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

#[test]
fn worked_example_in_doc_matches_encoder() {
    let blob = BlobRef::Small {
        hash: net_mesh_engine::codec::chunk_id(b"hello"),
        size: 5,
    };
    let hex: String = blob.encode().iter().map(|b| format!("{b:02x}")).collect();
    let doc = section_2();
    let start = doc.find("### 2.10").unwrap();
    let block = &doc[start..];
    let fence = block.find("```\n").unwrap() + 4;
    let end = fence + block[fence..].find("```").unwrap();
    let documented: String = block[fence..end]
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(documented, hex);
    assert!(doc.contains(&format!("Text form: `{}`", blob.to_text())));
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

#[test]
fn encoders_put_fields_at_the_documented_offsets() {
    let small = BlobRef::Small {
        hash: [0x11; 32],
        size: 0x0102_0304,
    }
    .encode();
    assert_eq!(small.len(), SMALL_LEN);
    assert_eq!(
        small[MAGIC_OFFSET..MAGIC_OFFSET + MAGIC_LEN],
        BLOB_REF_MAGIC
    );
    assert_eq!(small[VERSION_OFFSET], FORMAT_VERSION);
    assert_eq!(small[BLOB_VARIANT_OFFSET], VARIANT_SMALL);
    assert_eq!(
        small[SMALL_HASH_OFFSET..SMALL_HASH_OFFSET + HASH_LEN],
        [0x11; 32]
    );
    assert_eq!(u64_at(&small, SMALL_SIZE_OFFSET), 0x0102_0304);

    let chunks = vec![
        ChunkRef {
            hash: [0x22; 32],
            size: MAX_CHUNK_SIZE,
            role: ChunkRole::Data,
        },
        ChunkRef {
            hash: [0x33; 32],
            size: 7,
            role: ChunkRole::Parity {
                stripe_index: 0xdead_beef,
            },
        },
    ];
    let rs = Encoding::ReedSolomon {
        data_shards: 5,
        total_shards: 9,
    };
    let manifest = BlobRef::Manifest {
        encoding: rs,
        chunks: chunks.clone(),
        size: u64::from(MAX_CHUNK_SIZE),
    }
    .encode();
    assert_eq!(manifest[BLOB_VARIANT_OFFSET], VARIANT_MANIFEST);
    assert_eq!(
        u64_at(&manifest, MANIFEST_SIZE_OFFSET),
        u64::from(MAX_CHUNK_SIZE)
    );
    assert_eq!(u32_at(&manifest, MANIFEST_COUNT_OFFSET), 2);
    let enc = MANIFEST_ENCODING_OFFSET;
    assert_eq!(manifest[enc + ENCODING_TAG_REL], ENCODING_REED_SOLOMON);
    assert_eq!(manifest[enc + ENCODING_DATA_SHARDS_REL], 5);
    assert_eq!(manifest[enc + ENCODING_TOTAL_SHARDS_REL], 9);
    let c0 = enc + ENCODING_REED_SOLOMON_LEN;
    assert_eq!(manifest[c0 + CHUNK_HASH_REL..c0 + HASH_LEN], [0x22; 32]);
    assert_eq!(u32_at(&manifest, c0 + CHUNK_SIZE_REL), MAX_CHUNK_SIZE);
    assert_eq!(manifest[c0 + CHUNK_ROLE_REL], ROLE_DATA);
    let c1 = c0 + CHUNK_REF_DATA_LEN;
    assert_eq!(manifest[c1 + CHUNK_ROLE_REL], ROLE_PARITY);
    assert_eq!(u32_at(&manifest, c1 + CHUNK_STRIPE_INDEX_REL), 0xdead_beef);
    assert_eq!(manifest.len(), c1 + CHUNK_REF_PARITY_LEN);

    let tree = BlobRef::Tree {
        encoding: Encoding::Plain,
        root_hash: [0x44; 32],
        total_size: 0x0a0b_0c0d_0e0f,
        depth: 9,
    }
    .encode();
    assert_eq!(tree[BLOB_VARIANT_OFFSET], VARIANT_TREE);
    assert_eq!(
        tree[TREE_ROOT_HASH_OFFSET..TREE_ROOT_HASH_OFFSET + HASH_LEN],
        [0x44; 32]
    );
    assert_eq!(u64_at(&tree, TREE_TOTAL_SIZE_OFFSET), 0x0a0b_0c0d_0e0f);
    assert_eq!(tree[TREE_DEPTH_OFFSET], 9);
    assert_eq!(tree[TREE_ENCODING_OFFSET], ENCODING_PLAIN);
    assert_eq!(tree.len(), TREE_ENCODING_OFFSET + ENCODING_PLAIN_LEN);

    let leaf = LeafNode {
        encoding: Encoding::Plain,
        chunks: vec![chunks[0]],
    }
    .encode();
    assert_eq!(leaf[MAGIC_OFFSET..MAGIC_LEN], LEAF_NODE_MAGIC);
    assert_eq!(u32_at(&leaf, LEAF_COUNT_OFFSET), 1);
    assert_eq!(leaf[LEAF_ENCODING_OFFSET], ENCODING_PLAIN);
    assert_eq!(
        leaf.len(),
        LEAF_ENCODING_OFFSET + ENCODING_PLAIN_LEN + CHUNK_REF_DATA_LEN
    );

    let internal = InternalNode {
        level: 3,
        children: vec![
            ChildRef {
                hash: [0x55; 32],
                covered: 17,
            },
            ChildRef {
                hash: [0x66; 32],
                covered: 1 << 40,
            },
        ],
    }
    .encode();
    assert_eq!(internal[MAGIC_OFFSET..MAGIC_LEN], INTERNAL_NODE_MAGIC);
    assert_eq!(internal[INTERNAL_LEVEL_OFFSET], 3);
    assert_eq!(u32_at(&internal, INTERNAL_COUNT_OFFSET), 2);
    let second = INTERNAL_CHILDREN_OFFSET + CHILD_REF_LEN;
    assert_eq!(
        internal[second + CHILD_HASH_REL..second + HASH_LEN],
        [0x66; 32]
    );
    assert_eq!(u64_at(&internal, second + CHILD_COVERED_REL), 1 << 40);
    assert_eq!(internal.len(), INTERNAL_CHILDREN_OFFSET + 2 * CHILD_REF_LEN);
}

/// §2.11's cross-over figures are the ones the code derives from the layout constants.
#[test]
fn documented_tree_shape_defaults_and_short_ref_bound_match_code() {
    use net_mesh_engine::TreePolicy;
    use net_mesh_engine::tree::{
        DEFAULT_MANIFEST_MAX_REFS, MAX_SHORT_REF_TEXT_LEN, manifest_refs_within,
    };
    // Compared with line breaks folded into spaces.
    let doc = section_2().split_whitespace().collect::<Vec<_>>().join(" ");
    let p = TreePolicy::default();
    assert!(doc.contains(&format!(
        "Defaults: `leaf_fanout` {}, `internal_fanout` {}, `manifest_max_refs` {}",
        p.leaf_fanout, p.internal_fanout, p.manifest_max_refs
    )));
    assert_eq!(p.manifest_max_refs, DEFAULT_MANIFEST_MAX_REFS);
    assert_eq!(
        DEFAULT_MANIFEST_MAX_REFS,
        manifest_refs_within(MAX_SHORT_REF_TEXT_LEN)
    );
    let text_len = |bytes: usize| TEXT_PREFIX.len() + (bytes * 8).div_ceil(5);
    let worst = |refs: usize| {
        MANIFEST_ENCODING_OFFSET + ENCODING_REED_SOLOMON_LEN + refs * CHUNK_REF_PARITY_LEN
    };
    let max_bytes = (MAX_SHORT_REF_TEXT_LEN - TEXT_PREFIX.len()) * 5 / 8;
    let n = DEFAULT_MANIFEST_MAX_REFS;
    for fact in [
        format!("every printed ref is at most {MAX_SHORT_REF_TEXT_LEN} characters"),
        format!("= {max_bytes} bytes"),
        format!(
            "`Small` is {SMALL_LEN} bytes ({} characters)",
            text_len(SMALL_LEN)
        ),
        format!(
            "`Tree` at most {} ({} characters)",
            TREE_ENCODING_OFFSET + ENCODING_REED_SOLOMON_LEN,
            text_len(TREE_ENCODING_OFFSET + ENCODING_REED_SOLOMON_LEN)
        ),
        format!(
            "`{} + {CHUNK_REF_PARITY_LEN} × refs` bytes",
            MANIFEST_ENCODING_OFFSET + ENCODING_REED_SOLOMON_LEN
        ),
        format!(
            "refs ≤ {n} ({} bytes, {} characters)",
            worst(n),
            text_len(worst(n))
        ),
        format!(
            "not for {} ({} bytes, {} characters)",
            n + 1,
            worst(n + 1),
            text_len(worst(n + 1))
        ),
    ] {
        assert!(doc.contains(&fact), "FORMAT.md §2.11 should say {fact:?}");
    }
    assert!(text_len(worst(n)) <= MAX_SHORT_REF_TEXT_LEN);
    assert!(text_len(worst(n + 1)) > MAX_SHORT_REF_TEXT_LEN);
}
