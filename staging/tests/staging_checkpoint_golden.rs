//! docs/FORMAT.md §4 (staging checkpoints), the `checkpoint::layout` constants, the encoder and
//! the golden vectors agree; corrupt vectors are rejected with typed errors.
//!
//! `NET_MESH_BLESS_GOLDEN=1` rewrites the valid vectors from the encoder (the corrupt ones are
//! checked against them: see `corrupt_vectors_are_rejected_with_typed_errors`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::PathBuf;

use net_mesh_engine::codec::{ChildRef, ChunkRef, ChunkRole, Encoding};
use net_mesh_engine::tree::{DEFAULT_MANIFEST_MAX_REFS, TreeState};
use net_mesh_engine::{ChunkingStrategy, TreePolicy};
use net_mesh_staging::checkpoint::{
    CHECKPOINT_VERSION, CHECKPOINT_VERSION_V1, CHECKPOINT_VERSION_V2, CheckpointError,
    StagingCheckpoint, layout::*,
};

const FORMAT_MD: &str = include_str!("../../docs/FORMAT.md");

fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

fn parse_hex(text: &str) -> Vec<u8> {
    let digits: String = text
        .lines()
        .map(|l| l.split('#').next().unwrap())
        .flat_map(|l| l.chars().filter(|c| !c.is_whitespace()))
        .collect();
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).unwrap())
        .collect()
}

fn render(comment: &str, bytes: &[u8]) -> String {
    let mut out = format!("# {comment}\n# {} bytes\n", bytes.len());
    for line in bytes.chunks(16) {
        out.extend(line.iter().map(|b| format!("{b:02x}")));
        out.push('\n');
    }
    out
}

fn golden(name: &str, comment: &str, bytes: &[u8]) -> Vec<u8> {
    if std::env::var_os("NET_MESH_BLESS_GOLDEN").is_some() {
        std::fs::write(path(name), render(comment, bytes)).unwrap();
    }
    parse_hex(&std::fs::read_to_string(path(name)).unwrap())
}

fn begin() -> StagingCheckpoint {
    StagingCheckpoint {
        seq: 0,
        created_unix_ms: 1_764_201_600_000,
        last_checkpoint_unix_ms: 1_764_201_600_000,
        chunking: ChunkingStrategy::default(),
        pin_name: "in.bin".into(),
        pin_name_given: false,
        channel: "default".into(),
        tree: TreeState {
            policy: TreePolicy::default(),
            encoding: Encoding::Plain,
            open_leaf: vec![],
            levels: vec![],
            total_bytes: 0,
            chunk_count: 0,
            completed_leaves: 0,
            completed_internals: 0,
        },
    }
}

fn tree() -> StagingCheckpoint {
    StagingCheckpoint {
        seq: 7,
        created_unix_ms: 1_000,
        last_checkpoint_unix_ms: 2_000,
        chunking: ChunkingStrategy::Cdc {
            avg: 4096,
            min: 1024,
            max: 16384,
        },
        pin_name: "a.bin".into(),
        pin_name_given: false,
        channel: "photos".into(),
        tree: TreeState {
            policy: TreePolicy {
                leaf_fanout: 2,
                internal_fanout: 2,
                manifest_max_refs: 3,
            },
            encoding: Encoding::Plain,
            open_leaf: vec![ChunkRef {
                hash: [0xaa; 32],
                size: 100,
                role: ChunkRole::Data,
            }],
            levels: vec![vec![ChildRef {
                hash: [0xbb; 32],
                covered: 300,
            }]],
            total_bytes: 400,
            chunk_count: 3,
            completed_leaves: 1,
            completed_internals: 0,
        },
    }
}

#[test]
fn valid_vectors_match_the_encoder_and_decode_back() {
    for (name, comment, c) in [
        (
            "checkpoint_begin.hex",
            "StagingCheckpoint v3 seq 0, nothing fed, default policy, name in.bin, channel default",
            begin(),
        ),
        (
            "checkpoint_tree.hex",
            "StagingCheckpoint v3 seq 7, fan-out 2/2, manifest cross-over 3, one open chunk (aa..), one pending leaf (bb..), channel photos",
            tree(),
        ),
    ] {
        let bytes = c.encode();
        assert_eq!(golden(name, comment, &bytes), bytes, "{name}");
        assert_eq!(StagingCheckpoint::decode(&bytes).unwrap(), c, "{name}");
    }
}

/// Version 2 checkpoints (written before channels) still decode: the same state, pinned in
/// channel `default`; re-encoded they are version 3 with the channel after the pin name.
#[test]
fn version_2_vectors_still_decode_into_the_default_channel() {
    let read = |name: &str| parse_hex(&std::fs::read_to_string(path(name)).unwrap());
    for (name, want) in [
        ("checkpoint_v2_begin.hex", begin()),
        ("checkpoint_v2_tree.hex", tree()),
    ] {
        let v2 = read(name);
        assert_eq!(v2[VERSION_OFFSET], CHECKPOINT_VERSION_V2, "{name}");
        let got = StagingCheckpoint::decode(&v2).unwrap();
        let mut want = want;
        want.channel = "default".into();
        assert_eq!(got, want, "{name}");
        let v3 = got.encode();
        assert_eq!(v3[VERSION_OFFSET], CHECKPOINT_VERSION);
        let name_end = FIXED_LEN + usize::from(v2[PIN_NAME_LEN_OFFSET]);
        assert_eq!(&v3[..VERSION_OFFSET], &v2[..VERSION_OFFSET]);
        assert_eq!(
            &v3[VERSION_OFFSET + 1..name_end],
            &v2[VERSION_OFFSET + 1..name_end]
        );
        assert_eq!(v3[name_end], 7);
        assert_eq!(&v3[name_end + 1..name_end + 8], b"default");
        assert_eq!(&v3[name_end + 8..], &v2[name_end..]);
    }
}

/// Version 1 checkpoints (written before the Manifest cross-over was a policy field) still
/// decode: the same state, with the default cross-over, in channel `default`.
#[test]
fn version_1_vectors_still_decode_with_the_default_cross_over() {
    let read = |name: &str| parse_hex(&std::fs::read_to_string(path(name)).unwrap());
    for (name, want) in [
        ("checkpoint_v1_begin.hex", begin()),
        ("checkpoint_v1_tree.hex", tree()),
    ] {
        let v1 = read(name);
        assert_eq!(v1[VERSION_OFFSET], CHECKPOINT_VERSION_V1, "{name}");
        let got = StagingCheckpoint::decode(&v1).unwrap();
        let mut want = want;
        want.tree.policy.manifest_max_refs = DEFAULT_MANIFEST_MAX_REFS;
        want.channel = "default".into();
        assert_eq!(got, want, "{name}");
        // Version 1 is version 3 without the 4-byte cross-over field (pin name length moved
        // up) and without the channel after the pin name.
        let v3 = got.encode();
        assert_eq!(v3[VERSION_OFFSET], CHECKPOINT_VERSION);
        assert_eq!(&v3[..VERSION_OFFSET], &v1[..VERSION_OFFSET]);
        assert_eq!(
            &v3[VERSION_OFFSET + 1..MANIFEST_MAX_REFS_OFFSET],
            &v1[VERSION_OFFSET + 1..V1_PIN_NAME_LEN_OFFSET]
        );
        let name_len = usize::from(v1[V1_PIN_NAME_LEN_OFFSET]);
        assert_eq!(
            &v3[PIN_NAME_LEN_OFFSET..FIXED_LEN + name_len],
            &v1[V1_PIN_NAME_LEN_OFFSET..V1_FIXED_LEN + name_len]
        );
        assert_eq!(
            &v3[FIXED_LEN + name_len + 8..],
            &v1[V1_FIXED_LEN + name_len..]
        );
        assert_eq!(V1_FIXED_LEN + 4, FIXED_LEN);
    }
}

#[test]
fn corrupt_vectors_are_rejected_with_typed_errors() {
    let read = |name: &str| parse_hex(&std::fs::read_to_string(path(name)).unwrap());
    assert!(matches!(
        StagingCheckpoint::decode(&read("checkpoint_bad_version.hex")),
        Err(CheckpointError::UnsupportedVersion(4))
    ));
    assert!(matches!(
        StagingCheckpoint::decode(&read("checkpoint_bad_last_chunk.hex")),
        Err(CheckpointError::Invalid {
            what: "last chunk",
            ..
        })
    ));
    assert!(matches!(
        StagingCheckpoint::decode(&read("checkpoint_trailing_byte.hex")),
        Err(CheckpointError::TrailingBytes { .. })
    ));
    // And they are what their names say: one change away from the valid vector.
    let good = tree().encode();
    let mut v = good.clone();
    v[VERSION_OFFSET] = 4;
    assert_eq!(read("checkpoint_bad_version.hex"), v);
    let mut v = good.clone();
    v[LAST_CHUNK_HASH_OFFSET] ^= 0xff;
    assert_eq!(read("checkpoint_bad_last_chunk.hex"), v);
    let mut v = good;
    v.push(0);
    assert_eq!(read("checkpoint_trailing_byte.hex"), v);
}

#[test]
fn documented_fixed_layout_matches_the_constants_and_the_encoder() {
    let start = FORMAT_MD.find("### 4.2").unwrap();
    let section = &FORMAT_MD[start..FORMAT_MD[start..].find("### 4.3").unwrap() + start];
    let mut rows = std::collections::BTreeMap::new();
    for line in section.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() == 6 && cells[1].parse::<usize>().is_ok() {
            rows.insert(
                cells[3].trim_matches('`').to_string(),
                (cells[1].parse::<usize>().unwrap(), cells[2].to_string()),
            );
        }
    }
    let want = [
        ("magic", MAGIC_OFFSET, "4"),
        ("version", VERSION_OFFSET, "1"),
        ("flags", FLAGS_OFFSET, "1"),
        ("seq", SEQ_OFFSET, "8"),
        ("created_unix_ms", CREATED_OFFSET, "8"),
        ("last_checkpoint_unix_ms", LAST_CHECKPOINT_OFFSET, "8"),
        ("last_chunk_byte_offset", LAST_CHUNK_BYTE_OFFSET_OFFSET, "8"),
        ("chunk_count", CHUNK_COUNT_OFFSET, "8"),
        ("completed_leaves", COMPLETED_LEAVES_OFFSET, "8"),
        ("completed_internals", COMPLETED_INTERNALS_OFFSET, "8"),
        ("last_chunk_hash", LAST_CHUNK_HASH_OFFSET, "32"),
        ("last_chunk_size", LAST_CHUNK_SIZE_OFFSET, "4"),
        ("chunking_tag", CHUNKING_TAG_OFFSET, "1"),
        ("chunking_params", CHUNKING_PARAMS_OFFSET, "12"),
        ("leaf_fanout", LEAF_FANOUT_OFFSET, "4"),
        ("internal_fanout", INTERNAL_FANOUT_OFFSET, "4"),
        ("manifest_max_refs", MANIFEST_MAX_REFS_OFFSET, "4"),
        ("pin_name_len", PIN_NAME_LEN_OFFSET, "2"),
        ("pin_name", FIXED_LEN, "N"),
    ];
    let mut end = 0;
    for (field, offset, size) in want {
        assert_eq!(
            rows.get(field),
            Some(&(offset, size.to_string())),
            "{field}"
        );
        assert_eq!(offset, end, "{field} does not follow the previous field");
        end = offset + size.parse::<usize>().unwrap_or(0);
    }
    assert_eq!(end, FIXED_LEN);
    // The encoder puts distinctive values where the table says.
    let c = tree();
    let b = c.encode();
    let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
    assert_eq!(&b[..4], b"NMSC");
    assert_eq!(u64_at(SEQ_OFFSET), 7);
    assert_eq!(u64_at(CREATED_OFFSET), 1_000);
    assert_eq!(u64_at(LAST_CHECKPOINT_OFFSET), 2_000);
    assert_eq!(u64_at(LAST_CHUNK_BYTE_OFFSET_OFFSET), 400);
    assert_eq!(u64_at(CHUNK_COUNT_OFFSET), 3);
    assert_eq!(u64_at(COMPLETED_LEAVES_OFFSET), 1);
    assert_eq!(&b[LAST_CHUNK_HASH_OFFSET..][..32], &[0xaa; 32]);
    assert_eq!(b[LAST_CHUNK_SIZE_OFFSET], 100);
    assert_eq!(b[CHUNKING_TAG_OFFSET], CHUNKING_CDC);
    assert_eq!(b[CHUNKING_PARAMS_OFFSET + 5], 0x10); // avg 4096 = 0x1000, LE
    assert_eq!(b[LEAF_FANOUT_OFFSET], 2);
    assert_eq!(b[MANIFEST_MAX_REFS_OFFSET], 3);
    assert_eq!(b[PIN_NAME_LEN_OFFSET], 5);
    assert_eq!(&b[FIXED_LEN..FIXED_LEN + 5], b"a.bin");
    // The variable part starts with the channel (version 3), after the pin name.
    assert!(section.contains("| 125+N | 1 | `channel_len` |"));
    assert_eq!(b[FIXED_LEN + 5], 6);
    assert_eq!(&b[FIXED_LEN + 6..FIXED_LEN + 12], b"photos");
}
