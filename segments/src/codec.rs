//! Pure framing: the segment file header and the record header (docs/FORMAT.md section 1).
//!
//! No I/O happens here. Every decoder takes a byte slice, checks its length before touching a
//! byte, and reports problems as [`FrameError`]; nothing here can panic on arbitrary input.
#![deny(clippy::arithmetic_side_effects)]

use crate::{ObjectId, RecordKind, SegmentId};

/// Current format version of segment files and records (the version byte).
pub const FORMAT_VERSION: u8 = 1;

// ---------------------------------------------------------------------------------------------
// Segment file header (32 bytes)
// ---------------------------------------------------------------------------------------------

/// Magic at offset 0 of every segment file.
pub const FILE_MAGIC: [u8; 8] = *b"NMESHSEG";
/// Offset of the file magic.
pub const FILE_MAGIC_OFFSET: usize = 0;
/// Size of the file magic.
pub const FILE_MAGIC_LEN: usize = 8;
/// Offset of the file format version byte.
pub const FILE_VERSION_OFFSET: usize = 8;
/// Size of the file format version byte.
pub const FILE_VERSION_LEN: usize = 1;
/// Offset of the reserved bytes (must be zero).
pub const FILE_RESERVED_OFFSET: usize = 9;
/// Size of the reserved bytes.
pub const FILE_RESERVED_LEN: usize = 7;
/// Offset of the segment id (u64 LE); must match the file name.
pub const FILE_SEGMENT_ID_OFFSET: usize = 16;
/// Size of the segment id.
pub const FILE_SEGMENT_ID_LEN: usize = 8;
/// Offset of the header checksum: first 8 bytes of BLAKE3 over bytes `0..24`.
pub const FILE_CHECKSUM_OFFSET: usize = 24;
/// Size of the header checksum.
pub const FILE_CHECKSUM_LEN: usize = 8;
/// Total size of the segment file header; the first record starts here.
pub const FILE_HEADER_LEN: usize = 32;

// ---------------------------------------------------------------------------------------------
// Record header (52 bytes), followed by `payload_len` payload bytes
// ---------------------------------------------------------------------------------------------

/// Magic at offset 0 of every record header.
pub const RECORD_MAGIC: [u8; 4] = *b"NMRC";
/// Offset of the record magic.
pub const RECORD_MAGIC_OFFSET: usize = 0;
/// Size of the record magic.
pub const RECORD_MAGIC_LEN: usize = 4;
/// Offset of the record format version byte.
pub const RECORD_VERSION_OFFSET: usize = 4;
/// Size of the record format version byte.
pub const RECORD_VERSION_LEN: usize = 1;
/// Offset of the record kind byte.
pub const RECORD_KIND_OFFSET: usize = 5;
/// Size of the record kind byte.
pub const RECORD_KIND_LEN: usize = 1;
/// Offset of the flags (u16 LE, reserved, must be zero).
pub const RECORD_FLAGS_OFFSET: usize = 6;
/// Size of the flags.
pub const RECORD_FLAGS_LEN: usize = 2;
/// Offset of the payload length (u32 LE).
pub const RECORD_PAYLOAD_LEN_OFFSET: usize = 8;
/// Size of the payload length.
pub const RECORD_PAYLOAD_LEN_LEN: usize = 4;
/// Offset of the object id.
pub const RECORD_ID_OFFSET: usize = 12;
/// Size of the object id.
pub const RECORD_ID_LEN: usize = 32;
/// Offset of the header checksum: first 8 bytes of BLAKE3 over bytes `0..44`.
pub const RECORD_CHECKSUM_OFFSET: usize = 44;
/// Size of the header checksum.
pub const RECORD_CHECKSUM_LEN: usize = 8;
/// Total size of a record header; the payload starts right after it.
pub const RECORD_HEADER_LEN: usize = 52;

/// The largest payload the format allows. Decoders reject larger lengths before allocating;
/// [`crate::SegmentConfig::max_payload`] may only be lower.
pub const MAX_PAYLOAD_LEN: u32 = 64 * 1024 * 1024;

/// Why a header could not be decoded. Positions are added by the caller (see
/// [`crate::SegmentError::Corrupted`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// Fewer bytes than a header needs.
    #[error("short header: need {needed} bytes, have {available}")]
    Short {
        /// Bytes a header needs.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// The magic does not match.
    #[error("bad magic {found:02x?}, expected {expected:02x?}")]
    BadMagic {
        /// The bytes found.
        found: Vec<u8>,
        /// The expected magic.
        expected: Vec<u8>,
    },
    /// An unknown format version.
    #[error("unsupported format version {found} (this build reads version {FORMAT_VERSION})")]
    UnsupportedVersion {
        /// The version byte found.
        found: u8,
    },
    /// The header checksum does not match the header bytes.
    #[error("header checksum mismatch: stored {stored:016x}, computed {computed:016x}")]
    ChecksumMismatch {
        /// Checksum stored in the header (as LE u64).
        stored: u64,
        /// Checksum computed over the header bytes (as LE u64).
        computed: u64,
    },
    /// Unknown record kind byte.
    #[error("unknown record kind {0}")]
    UnknownKind(u8),
    /// Reserved bits or bytes are not zero.
    #[error("reserved field is not zero: {0:#x}")]
    ReservedNotZero(u64),
    /// Payload length above [`MAX_PAYLOAD_LEN`].
    #[error("payload length {len} exceeds the format maximum {max}")]
    PayloadTooLarge {
        /// Length found.
        len: u32,
        /// The maximum.
        max: u32,
    },
    /// A record or header reaches past the end of the scanned range or file.
    #[error("truncated: {needed} bytes needed at this offset, only {available} remain")]
    Truncated {
        /// Bytes needed from this offset.
        needed: u64,
        /// Bytes remaining.
        available: u64,
    },
    /// The segment id in the file header is not the one the file name says.
    #[error("file header names segment {found}, file name says {expected}")]
    SegmentIdMismatch {
        /// Id in the header.
        found: SegmentId,
        /// Id from the file name.
        expected: SegmentId,
    },
}

/// Error for a record kind byte that names no [`RecordKind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown record kind byte {0}")]
pub struct UnknownRecordKind(pub u8);

impl TryFrom<u8> for RecordKind {
    type Error = UnknownRecordKind;

    fn try_from(value: u8) -> Result<Self, Self::Error> {
        match value {
            1 => Ok(RecordKind::Chunk),
            2 => Ok(RecordKind::LeafNode),
            3 => Ok(RecordKind::InternalNode),
            other => Err(UnknownRecordKind(other)),
        }
    }
}

/// A decoded segment file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHeader {
    /// The segment this file holds.
    pub segment: SegmentId,
}

/// A decoded record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// What the payload is.
    pub kind: RecordKind,
    /// Payload length in bytes (at most [`MAX_PAYLOAD_LEN`]).
    pub payload_len: u32,
    /// The object id the payload claims to be.
    pub id: ObjectId,
}

/// First 8 bytes of BLAKE3 over `bytes`, as stored in headers.
fn checksum(bytes: &[u8]) -> [u8; 8] {
    let hash = blake3::hash(bytes);
    let mut out = [0u8; 8];
    let (head, _) = hash.as_bytes().split_at(8);
    out.copy_from_slice(head);
    out
}

/// Copies `N` bytes starting at `offset`; `None` if `bytes` is too short.
fn field<const N: usize>(bytes: &[u8], offset: usize) -> Option<[u8; N]> {
    let end = offset.checked_add(N)?;
    let slice = bytes.get(offset..end)?;
    let mut out = [0u8; N];
    out.copy_from_slice(slice);
    Some(out)
}

/// Writes `value` at `offset` in a fixed-size buffer whose size the constants guarantee.
fn put(buf: &mut [u8], offset: usize, value: &[u8]) {
    if let Some(end) = offset.checked_add(value.len())
        && let Some(dst) = buf.get_mut(offset..end)
    {
        dst.copy_from_slice(value);
    }
}

fn short(needed: usize, available: usize) -> FrameError {
    FrameError::Short { needed, available }
}

impl FileHeader {
    /// Encodes the 32-byte segment file header.
    pub fn encode(&self) -> [u8; FILE_HEADER_LEN] {
        let mut buf = [0u8; FILE_HEADER_LEN];
        put(&mut buf, FILE_MAGIC_OFFSET, &FILE_MAGIC);
        put(&mut buf, FILE_VERSION_OFFSET, &[FORMAT_VERSION]);
        put(
            &mut buf,
            FILE_SEGMENT_ID_OFFSET,
            &self.segment.to_le_bytes(),
        );
        let sum = checksum(buf.get(..FILE_CHECKSUM_OFFSET).unwrap_or_default());
        put(&mut buf, FILE_CHECKSUM_OFFSET, &sum);
        buf
    }

    /// Decodes a segment file header from the first [`FILE_HEADER_LEN`] bytes of `bytes`
    /// (trailing bytes are the file's records and are ignored).
    pub fn decode(bytes: &[u8]) -> Result<Self, FrameError> {
        let header = bytes
            .get(..FILE_HEADER_LEN)
            .ok_or_else(|| short(FILE_HEADER_LEN, bytes.len()))?;
        let missing = || short(FILE_HEADER_LEN, header.len());
        let magic: [u8; FILE_MAGIC_LEN] = field(header, FILE_MAGIC_OFFSET).ok_or_else(missing)?;
        if magic != FILE_MAGIC {
            return Err(FrameError::BadMagic {
                found: magic.to_vec(),
                expected: FILE_MAGIC.to_vec(),
            });
        }
        let [version]: [u8; FILE_VERSION_LEN] =
            field(header, FILE_VERSION_OFFSET).ok_or_else(missing)?;
        if version != FORMAT_VERSION {
            return Err(FrameError::UnsupportedVersion { found: version });
        }
        let stored: [u8; FILE_CHECKSUM_LEN] =
            field(header, FILE_CHECKSUM_OFFSET).ok_or_else(missing)?;
        let computed = checksum(header.get(..FILE_CHECKSUM_OFFSET).ok_or_else(missing)?);
        if stored != computed {
            return Err(FrameError::ChecksumMismatch {
                stored: u64::from_le_bytes(stored),
                computed: u64::from_le_bytes(computed),
            });
        }
        let reserved: [u8; FILE_RESERVED_LEN] =
            field(header, FILE_RESERVED_OFFSET).ok_or_else(missing)?;
        if reserved != [0u8; FILE_RESERVED_LEN] {
            let mut wide = [0u8; 8];
            put(&mut wide, 0, &reserved);
            return Err(FrameError::ReservedNotZero(u64::from_le_bytes(wide)));
        }
        let segment =
            u64::from_le_bytes(field(header, FILE_SEGMENT_ID_OFFSET).ok_or_else(missing)?);
        Ok(FileHeader { segment })
    }

    /// Whether the first [`FILE_HEADER_LEN`] bytes of `bytes` carry the checksum of their own
    /// bytes `0..24`, i.e. were written whole by some writer, whatever they say (another
    /// segment's id, a newer version). A header that fails this check was damaged after it was
    /// written.
    pub fn checksum_matches(bytes: &[u8]) -> bool {
        let Some(header) = bytes.get(..FILE_HEADER_LEN) else {
            return false;
        };
        let stored: Option<[u8; FILE_CHECKSUM_LEN]> = field(header, FILE_CHECKSUM_OFFSET);
        header
            .get(..FILE_CHECKSUM_OFFSET)
            .is_some_and(|covered| stored == Some(checksum(covered)))
    }
}

impl RecordHeader {
    /// Encodes the 52-byte record header. The caller guarantees `payload_len <= MAX_PAYLOAD_LEN`
    /// (the store checks it before encoding; the decoder rejects larger values).
    pub fn encode(&self) -> [u8; RECORD_HEADER_LEN] {
        let mut buf = [0u8; RECORD_HEADER_LEN];
        put(&mut buf, RECORD_MAGIC_OFFSET, &RECORD_MAGIC);
        put(&mut buf, RECORD_VERSION_OFFSET, &[FORMAT_VERSION]);
        put(&mut buf, RECORD_KIND_OFFSET, &[self.kind as u8]);
        put(&mut buf, RECORD_FLAGS_OFFSET, &0u16.to_le_bytes());
        put(
            &mut buf,
            RECORD_PAYLOAD_LEN_OFFSET,
            &self.payload_len.to_le_bytes(),
        );
        put(&mut buf, RECORD_ID_OFFSET, &self.id);
        let sum = checksum(buf.get(..RECORD_CHECKSUM_OFFSET).unwrap_or_default());
        put(&mut buf, RECORD_CHECKSUM_OFFSET, &sum);
        buf
    }

    /// Decodes a record header from the first [`RECORD_HEADER_LEN`] bytes of `bytes` (the
    /// payload may follow and is ignored). Checks magic, version, checksum, flags, kind and
    /// the payload length against [`MAX_PAYLOAD_LEN`], in that order.
    pub fn decode(bytes: &[u8]) -> Result<Self, FrameError> {
        let header = bytes
            .get(..RECORD_HEADER_LEN)
            .ok_or_else(|| short(RECORD_HEADER_LEN, bytes.len()))?;
        let missing = || short(RECORD_HEADER_LEN, header.len());
        let magic: [u8; RECORD_MAGIC_LEN] =
            field(header, RECORD_MAGIC_OFFSET).ok_or_else(missing)?;
        if magic != RECORD_MAGIC {
            return Err(FrameError::BadMagic {
                found: magic.to_vec(),
                expected: RECORD_MAGIC.to_vec(),
            });
        }
        let [version]: [u8; RECORD_VERSION_LEN] =
            field(header, RECORD_VERSION_OFFSET).ok_or_else(missing)?;
        if version != FORMAT_VERSION {
            return Err(FrameError::UnsupportedVersion { found: version });
        }
        let stored: [u8; RECORD_CHECKSUM_LEN] =
            field(header, RECORD_CHECKSUM_OFFSET).ok_or_else(missing)?;
        let computed = checksum(header.get(..RECORD_CHECKSUM_OFFSET).ok_or_else(missing)?);
        if stored != computed {
            return Err(FrameError::ChecksumMismatch {
                stored: u64::from_le_bytes(stored),
                computed: u64::from_le_bytes(computed),
            });
        }
        let flags = u16::from_le_bytes(field(header, RECORD_FLAGS_OFFSET).ok_or_else(missing)?);
        if flags != 0 {
            return Err(FrameError::ReservedNotZero(u64::from(flags)));
        }
        let [kind_byte]: [u8; RECORD_KIND_LEN] =
            field(header, RECORD_KIND_OFFSET).ok_or_else(missing)?;
        let kind = RecordKind::try_from(kind_byte).map_err(|e| FrameError::UnknownKind(e.0))?;
        let payload_len =
            u32::from_le_bytes(field(header, RECORD_PAYLOAD_LEN_OFFSET).ok_or_else(missing)?);
        if payload_len > MAX_PAYLOAD_LEN {
            return Err(FrameError::PayloadTooLarge {
                len: payload_len,
                max: MAX_PAYLOAD_LEN,
            });
        }
        let id: ObjectId = field(header, RECORD_ID_OFFSET).ok_or_else(missing)?;
        Ok(RecordHeader {
            kind,
            payload_len,
            id,
        })
    }

    /// Header plus payload length of this record in bytes.
    pub fn record_len(&self) -> u64 {
        // RECORD_HEADER_LEN (52) + u32::MAX cannot overflow u64.
        (RECORD_HEADER_LEN as u64).saturating_add(u64::from(self.payload_len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_contiguous_and_add_up() {
        let file = [
            (FILE_MAGIC_OFFSET, FILE_MAGIC_LEN),
            (FILE_VERSION_OFFSET, FILE_VERSION_LEN),
            (FILE_RESERVED_OFFSET, FILE_RESERVED_LEN),
            (FILE_SEGMENT_ID_OFFSET, FILE_SEGMENT_ID_LEN),
            (FILE_CHECKSUM_OFFSET, FILE_CHECKSUM_LEN),
        ];
        let record = [
            (RECORD_MAGIC_OFFSET, RECORD_MAGIC_LEN),
            (RECORD_VERSION_OFFSET, RECORD_VERSION_LEN),
            (RECORD_KIND_OFFSET, RECORD_KIND_LEN),
            (RECORD_FLAGS_OFFSET, RECORD_FLAGS_LEN),
            (RECORD_PAYLOAD_LEN_OFFSET, RECORD_PAYLOAD_LEN_LEN),
            (RECORD_ID_OFFSET, RECORD_ID_LEN),
            (RECORD_CHECKSUM_OFFSET, RECORD_CHECKSUM_LEN),
        ];
        for (fields, total) in [
            (&file[..], FILE_HEADER_LEN),
            (&record[..], RECORD_HEADER_LEN),
        ] {
            let mut next = 0;
            for &(offset, len) in fields {
                assert_eq!(offset, next, "field at {offset} is not contiguous");
                next = offset + len;
            }
            assert_eq!(next, total);
        }
    }

    #[test]
    fn record_header_round_trips() {
        let header = RecordHeader {
            kind: RecordKind::InternalNode,
            payload_len: 12345,
            id: [7u8; 32],
        };
        let bytes = header.encode();
        assert_eq!(RecordHeader::decode(&bytes), Ok(header));
    }

    #[test]
    fn file_header_round_trips() {
        let header = FileHeader {
            segment: 0xdead_beef,
        };
        assert_eq!(FileHeader::decode(&header.encode()), Ok(header));
    }

    #[test]
    fn a_file_header_checksum_tells_damage_from_another_writers_header() {
        let intact = FileHeader { segment: 7 }.encode();
        assert!(FileHeader::checksum_matches(&intact));
        for byte in 0..FILE_HEADER_LEN {
            let mut damaged = intact;
            damaged[byte] ^= 0x10;
            assert!(!FileHeader::checksum_matches(&damaged), "byte {byte}");
        }
        assert!(!FileHeader::checksum_matches(&[0u8; FILE_HEADER_LEN]));
        assert!(!FileHeader::checksum_matches(
            &intact[..FILE_HEADER_LEN - 1]
        ));
        // A newer version, written whole, is not damage.
        let mut newer = intact;
        newer[FILE_VERSION_OFFSET] = FORMAT_VERSION + 1;
        let sum = checksum(&newer[..FILE_CHECKSUM_OFFSET]);
        newer[FILE_CHECKSUM_OFFSET..].copy_from_slice(&sum);
        assert!(FileHeader::checksum_matches(&newer));
        assert!(FileHeader::decode(&newer).is_err());
    }

    #[test]
    fn every_single_bit_flip_in_a_record_header_is_detected() {
        let bytes = RecordHeader {
            kind: RecordKind::Chunk,
            payload_len: 10,
            id: [1u8; 32],
        }
        .encode();
        for byte in 0..RECORD_HEADER_LEN {
            for bit in 0..8 {
                let mut flipped = bytes;
                flipped[byte] ^= 1 << bit;
                assert!(
                    RecordHeader::decode(&flipped).is_err(),
                    "flip of bit {bit} in byte {byte} went undetected"
                );
            }
        }
    }

    #[test]
    fn record_kind_rejects_unknown_bytes() {
        assert_eq!(RecordKind::try_from(0), Err(UnknownRecordKind(0)));
        assert_eq!(RecordKind::try_from(4), Err(UnknownRecordKind(4)));
        assert_eq!(RecordKind::try_from(2), Ok(RecordKind::LeafNode));
    }

    #[test]
    fn oversized_payload_len_is_rejected() {
        let mut header = RecordHeader {
            kind: RecordKind::Chunk,
            payload_len: MAX_PAYLOAD_LEN + 1,
            id: [0u8; 32],
        };
        assert!(matches!(
            RecordHeader::decode(&header.encode()),
            Err(FrameError::PayloadTooLarge { .. })
        ));
        header.payload_len = MAX_PAYLOAD_LEN;
        assert!(RecordHeader::decode(&header.encode()).is_ok());
    }
}
