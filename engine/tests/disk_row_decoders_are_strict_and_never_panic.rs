//! The decoders of what the engine reads back from its own files (index rows, segment
//! headers) run through the `disk_row` fuzz harness (`fuzz/` target `disk_rows`): every valid
//! encoding is accepted and round-trips, and encodings near them, or arbitrary bytes, never
//! panic and are never accepted in a second form.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use net_mesh_engine::codec::fuzzing::{DiskRow, disk_row};
use net_mesh_engine::fsck::DataCursor;
use net_mesh_engine::index::{ChannelEntry, ObjectEntry, Pin, SegmentEntry};
use net_mesh_engine::{BlobRef, ObjectKind};
use net_mesh_segments::codec::MAX_PAYLOAD_LEN;
use net_mesh_segments::{FileHeader, RecordHeader, RecordLoc};
use proptest::prelude::*;

fn kind() -> impl Strategy<Value = ObjectKind> {
    prop::sample::select(vec![
        ObjectKind::Chunk,
        ObjectKind::LeafNode,
        ObjectKind::InternalNode,
    ])
}

/// One valid encoding of each kind, with the kind's byte in front (the harness's input).
fn valid_row() -> impl Strategy<Value = Vec<u8>> {
    let u = any::<u64>;
    prop_oneof![
        (kind(), u(), u(), any::<u32>(), u(), u()).prop_map(
            |(kind, segment, offset, payload_len, refcount, since)| {
                let loc = RecordLoc {
                    segment,
                    offset,
                    payload_len,
                };
                row(
                    DiskRow::Object,
                    ObjectEntry {
                        kind,
                        loc,
                        refcount,
                        unreferenced_since_unix_ms: since,
                    }
                    .encode(),
                )
            }
        ),
        (u(), u()).prop_map(|(committed_len, live_bytes)| row(
            DiskRow::Segment,
            SegmentEntry {
                committed_len,
                live_bytes
            }
            .encode()
        )),
        u().prop_map(|created_unix_ms| row(
            DiskRow::Channel,
            ChannelEntry { created_unix_ms }.encode()
        )),
        (any::<[u8; 32]>(), 0..=1024u64, "\\PC{0,40}", u()).prop_map(
            |(hash, size, name, created_unix_ms)| {
                let pin = Pin {
                    channel: "default".into(),
                    blob_ref: BlobRef::Small { hash, size },
                    name,
                    created_unix_ms,
                };
                row(DiskRow::Pin, pin.encode())
            }
        ),
        u().prop_map(|count| {
            let mut value = vec![1u8];
            value.extend_from_slice(&count.to_le_bytes());
            row(DiskRow::LostRefs, value)
        }),
        (u(), u(), u(), u()).prop_map(|(segment, offset, passes_completed, updated_unix_ms)| row(
            DiskRow::FsckCursor,
            DataCursor {
                segment,
                offset,
                passes_completed,
                updated_unix_ms
            }
            .encode()
        )),
        (u(), prop::collection::vec(any::<u8>(), 0..8)).prop_map(|(segment, tail)| {
            let mut bytes = FileHeader { segment }.encode().to_vec();
            bytes.extend_from_slice(&tail);
            row(DiskRow::SegmentFileHeader, bytes)
        }),
        (
            kind(),
            0..=MAX_PAYLOAD_LEN,
            any::<[u8; 32]>(),
            prop::collection::vec(any::<u8>(), 0..8)
        )
            .prop_map(|(kind, payload_len, id, tail)| {
                let mut bytes = RecordHeader {
                    kind,
                    payload_len,
                    id,
                }
                .encode()
                .to_vec();
                bytes.extend_from_slice(&tail);
                row(DiskRow::SegmentRecordHeader, bytes)
            }),
    ]
}

fn row(kind: DiskRow, value: Vec<u8>) -> Vec<u8> {
    let mut bytes = vec![kind as u8];
    bytes.extend_from_slice(&value);
    bytes
}

/// Whether the store's own decoder accepts the value after the kind byte.
fn accepted(input: &[u8]) -> bool {
    let bytes = &input[1..];
    let key = [7u8; 32];
    match DiskRow::ALL[usize::from(input[0]) % DiskRow::ALL.len()] {
        DiskRow::Object => ObjectEntry::decode(&key, bytes).is_ok(),
        DiskRow::Segment => SegmentEntry::decode(3, bytes).is_ok(),
        DiskRow::Channel => ChannelEntry::decode("default", bytes).is_ok(),
        DiskRow::Pin => Pin::decode("default", &key, bytes).is_ok(),
        DiskRow::LostRefs => bytes.len() == 9 && bytes[0] == 1,
        DiskRow::FsckCursor => DataCursor::decode(bytes).is_some(),
        DiskRow::SegmentFileHeader => FileHeader::decode(bytes).is_ok(),
        DiskRow::SegmentRecordHeader => RecordHeader::decode(bytes).is_ok(),
    }
}

/// Flips, inserts or removes bytes after the kind byte.
fn mutate(mut bytes: Vec<u8>, edits: &[(usize, u8, u8)]) -> Vec<u8> {
    for &(at, op, value) in edits {
        let at = 1 + at % bytes.len();
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn every_valid_row_is_accepted_and_round_trips(input in valid_row()) {
        prop_assert!(accepted(&input), "a valid encoding was refused: {input:02x?}");
        disk_row(&input);
    }

    #[test]
    fn rows_near_valid_ones_never_panic_or_decode_in_a_second_form(
        input in valid_row(),
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..4),
    ) {
        disk_row(&mutate(input, &edits));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..128)) {
        disk_row(&bytes);
    }
}

/// A pin row of an older build, its 1024-byte name cut inside a character, decodes without
/// the partial character (FORMAT.md §3.4): the one row the harness lets encode shorter.
#[test]
fn a_pin_name_cut_inside_a_character_by_an_older_build_is_accepted() {
    let pin = Pin {
        channel: "default".into(),
        blob_ref: BlobRef::Small {
            hash: [1; 32],
            size: 5,
        },
        name: "a".repeat(1023),
        created_unix_ms: 9,
    };
    let mut bytes = pin.encode();
    // The name's length field says 1024 and the name ends with the first byte of "é".
    bytes[9..11].copy_from_slice(&1024u16.to_le_bytes());
    bytes.insert(11 + 1023, 0xC3);
    let decoded = Pin::decode("default", &[7; 32], &bytes).unwrap();
    assert_eq!(decoded, pin);
    disk_row(&row(DiskRow::Pin, bytes));
}
