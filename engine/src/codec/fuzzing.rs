//! Fuzz harnesses for every decoder, kept in the library so the `fuzz/` targets stay thin and
//! the same checks run in `cargo test`.
//!
//! Each harness decodes arbitrary bytes; when decoding succeeds it re-encodes and asserts the
//! bytes are identical (canonicality). Panicking on a violated invariant is the whole point of a
//! fuzz harness, hence the local `clippy::panic` allowances.

use super::{BlobRef, InternalNode, LeafNode};

/// BlobRef: decode, and if accepted, re-encode == input; text form round-trips too.
#[allow(clippy::panic)] // fuzz harness: a panic is how a found bug is reported
pub fn blob_ref(data: &[u8]) {
    if let Ok(blob) = BlobRef::decode(data) {
        assert!(blob.encode() == data, "BlobRef decode/encode not canonical");
        let text = blob.to_text();
        assert!(
            BlobRef::from_text(&text).as_ref() == Ok(&blob),
            "BlobRef text form does not round-trip"
        );
    }
}

/// Leaf node: decode, and if accepted, re-encode == input.
#[allow(clippy::panic)] // fuzz harness: a panic is how a found bug is reported
pub fn leaf_node(data: &[u8]) {
    if let Ok(leaf) = LeafNode::decode(data) {
        assert!(
            leaf.encode() == data,
            "leaf node decode/encode not canonical"
        );
        assert!(
            leaf.covered().is_ok_and(|c| c > 0),
            "accepted leaf covers 0 bytes"
        );
    }
}

/// Internal node: decode, and if accepted, re-encode == input.
#[allow(clippy::panic)] // fuzz harness: a panic is how a found bug is reported
pub fn internal_node(data: &[u8]) {
    if let Ok(node) = InternalNode::decode(data) {
        assert!(
            node.encode() == data,
            "internal node decode/encode not canonical"
        );
        assert!(
            node.covered().is_ok_and(|c| c > 0),
            "accepted internal node covers 0 bytes"
        );
    }
}

/// Which on-disk row [`disk_row`] decodes (the first input byte, modulo the count).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskRow {
    /// `objects_v1` value ([`ObjectEntry`], FORMAT.md §3.2).
    Object = 0,
    /// `segments_v1` value ([`SegmentEntry`], §3.3).
    Segment = 1,
    /// `channels_v1` value ([`ChannelEntry`]).
    Channel = 2,
    /// `pins_v2` value ([`Pin`], §3.4).
    Pin = 3,
    /// `lost_refs_v1` value (§3.10).
    LostRefs = 4,
    /// `fsck_cursor_v1` value ([`DataCursor`], §3.8).
    FsckCursor = 5,
    /// A segment file's 32-byte header ([`FileHeader`], §1).
    SegmentFileHeader = 6,
    /// A segment record's 52-byte header ([`RecordHeader`], §1).
    SegmentRecordHeader = 7,
}

impl DiskRow {
    /// Every kind, in the order of their numbers.
    pub const ALL: [DiskRow; 8] = [
        DiskRow::Object,
        DiskRow::Segment,
        DiskRow::Channel,
        DiskRow::Pin,
        DiskRow::LostRefs,
        DiskRow::FsckCursor,
        DiskRow::SegmentFileHeader,
        DiskRow::SegmentRecordHeader,
    ];
}

/// The decoders of what the engine reads back from its own files: the index's rows and the
/// segment headers. The first byte picks the kind ([`DiskRow`]); the rest is decoded as the
/// store decodes it. An accepted value must encode as exactly the bytes it came from (a
/// header: the first bytes; what follows is the record's payload). One exception, documented
/// in FORMAT.md §3.4: a pin row of an older build whose name was cut inside a character
/// decodes without the partial character, so it encodes shorter; it must decode back to the
/// same pin.
#[allow(clippy::panic)] // fuzz harness: a panic is how a found bug is reported
pub fn disk_row(data: &[u8]) {
    use crate::fsck::DataCursor;
    use crate::index::{
        ChannelEntry, MAX_PIN_NAME, ObjectEntry, PIN_HEADER_LEN, Pin, SegmentEntry,
    };
    use net_mesh_segments::{FileHeader, RecordHeader};

    let Some((&first, bytes)) = data.split_first() else {
        return;
    };
    let Some(&kind) = DiskRow::ALL.get(
        usize::from(first)
            .checked_rem(DiskRow::ALL.len())
            .unwrap_or(0),
    ) else {
        return;
    };
    let key = [7u8; 32];
    let encoded: Option<Vec<u8>> = match kind {
        DiskRow::Object => ObjectEntry::decode(&key, bytes).ok().map(|e| e.encode()),
        DiskRow::Segment => SegmentEntry::decode(3, bytes).ok().map(|e| e.encode()),
        DiskRow::Channel => ChannelEntry::decode("default", bytes)
            .ok()
            .map(|e| e.encode()),
        DiskRow::LostRefs => crate::index::decode_lost_refs(&key, bytes)
            .ok()
            .map(crate::index::encode_lost_refs),
        DiskRow::FsckCursor => DataCursor::decode(bytes).map(|c| c.encode()),
        DiskRow::SegmentFileHeader => {
            if let Ok(header) = FileHeader::decode(bytes) {
                let again = header.encode();
                assert!(
                    bytes.get(..again.len()) == Some(&again[..]),
                    "segment file header decode/encode not canonical"
                );
            }
            None
        }
        DiskRow::SegmentRecordHeader => {
            if let Ok(header) = RecordHeader::decode(bytes) {
                let again = header.encode();
                assert!(
                    bytes.get(..again.len()) == Some(&again[..]),
                    "segment record header decode/encode not canonical"
                );
            }
            None
        }
        DiskRow::Pin => {
            if let Ok(pin) = Pin::decode("default", &key, bytes) {
                let again = pin.encode();
                assert!(
                    Pin::decode("default", &key, &again).ok().as_ref() == Some(&pin),
                    "pin row does not decode back to itself"
                );
                let declared = bytes
                    .get(PIN_HEADER_LEN.saturating_sub(2)..PIN_HEADER_LEN)
                    .and_then(|b| <[u8; 2]>::try_from(b).ok())
                    .map(|b| usize::from(u16::from_le_bytes(b)));
                let cut_by_an_older_build =
                    declared == Some(MAX_PIN_NAME) && pin.name.len() < MAX_PIN_NAME;
                assert!(
                    again == bytes || cut_by_an_older_build,
                    "pin row decode/encode not canonical"
                );
            }
            None
        }
    };
    if let Some(encoded) = encoded {
        assert!(encoded == bytes, "{kind:?} row decode/encode not canonical");
    }
}
