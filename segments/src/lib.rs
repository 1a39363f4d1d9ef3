//! `net-mesh-segments` stores append-only **segment files** of framed records (a small checked
//! header holding kind, payload length and a 32-byte object id, then the payload) and reads them
//! back by location: pread for the active segment, read-only mmap for sealed ones. It hands the
//! engine durable lengths after `sync()` and truncates uncommitted tails on open. It must never
//! know about blobs, trees, chunking or the redb index (ids are opaque 32-byte values and payloads
//! opaque bytes), never write through a mapping, never delete a file the caller did not name, and
//! never panic on bytes read from disk; after any fsync error it refuses further writes until it
//! is reopened.
//!
//! Layout of every byte: `docs/FORMAT.md`, section 1.
#![deny(unsafe_code)]

mod backend;
pub mod codec;
pub mod durable;
mod error;
pub mod failpoint;
mod faulty;
mod files;
mod framing;
mod loose;
#[cfg(feature = "sim")]
pub mod sim;
mod store;

pub use backend::{FileBackend, SegmentBackend, SegmentFile};
pub use codec::{FileHeader, FrameError, RecordHeader, UnknownRecordKind};
pub use error::SegmentError;
pub use faulty::FaultyBackend;
pub use files::{parse_segment_file_name, segment_file_name};
pub use loose::LooseSegment;
pub use store::{Segments, TruncatedTail};

/// Identifies a segment file (`seg-{id:016x}.nms`).
pub type SegmentId = u64;

/// An object id as stored in record headers (opaque to this crate).
pub type ObjectId = [u8; 32];

/// What a record's payload is. Stored as one byte in the record header.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// A data chunk.
    Chunk = 1,
    /// A leaf node of a blob tree.
    LeafNode = 2,
    /// An internal node of a blob tree.
    InternalNode = 3,
}

/// Where a record lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecordLoc {
    /// The segment holding the record.
    pub segment: SegmentId,
    /// Offset of the record header in the segment file.
    pub offset: u64,
    /// Length of the payload (not counting the header).
    pub payload_len: u32,
}

/// One item of [`Segments::scan`]: a framed record, or the framing error that ended the scan.
pub type ScanItem = Result<(RecordLoc, RecordKind, ObjectId), SegmentError>;

/// Tuning for [`Segments`].
#[derive(Debug, Clone)]
pub struct SegmentConfig {
    /// Roll to a new segment before an append would make the active one larger than this
    /// (a record larger than this gets a segment of its own). Default 256 MiB.
    pub roll_size: u64,
    /// Largest payload `append` accepts; at most [`codec::MAX_PAYLOAD_LEN`]. Default 16 MiB.
    pub max_payload: u32,
    /// Lowest id a segment this handle creates may take. The store passes one past the highest
    /// id its index names, so a segment the open left out (fsck skips a missing or damaged
    /// one) never has its id given to a new file. Default 0.
    pub new_ids_from: SegmentId,
    /// Open without writing anything (a check): uncommitted tails are left in place (reads stop
    /// at the committed length), no segment file is created when none is committed (the
    /// active segment is then an empty placeholder with no file), and every append, sync,
    /// cut, seal and removal is refused with [`SegmentError::ReadOnly`]. Default false.
    pub read_only: bool,
}

impl Default for SegmentConfig {
    fn default() -> Self {
        SegmentConfig {
            roll_size: 256 * 1024 * 1024,
            max_payload: 16 * 1024 * 1024,
            new_ids_from: 0,
            read_only: false,
        }
    }
}

/// Decodes a record header from the start of `bytes` (pure; for fuzzing and tools).
pub fn decode_record_header(bytes: &[u8]) -> Result<RecordHeader, SegmentError> {
    RecordHeader::decode(bytes).map_err(SegmentError::Frame)
}

/// Encodes a record header (pure). `header.payload_len` must not exceed
/// [`codec::MAX_PAYLOAD_LEN`] or the result will not decode.
pub fn encode_record_header(header: &RecordHeader) -> [u8; codec::RECORD_HEADER_LEN] {
    header.encode()
}
