//! The one error type of this crate. Corruption is kept apart from I/O; a failed sync is its own
//! variant and poisons the handle.

use std::io;
use std::path::PathBuf;

use crate::codec::FrameError;
use crate::{RecordKind, SegmentId};

/// Everything that can go wrong in `net-mesh-segments`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SegmentError {
    /// An I/O call failed (not a sync: see [`SegmentError::SyncFailed`]).
    #[error("I/O error: {op} {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done (e.g. "write record", "open segment").
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// fdatasync/fsync failed. The handle is poisoned from now on: the kernel may have dropped
    /// the dirty pages, so nothing written since the last good sync can be trusted.
    #[error("sync failed: {op} {}: {source}; the segment store is poisoned until reopened", path.display())]
    SyncFailed {
        /// The file or directory whose sync failed.
        path: PathBuf,
        /// What was being synced.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// An earlier sync failed; every append/sync is refused until the store is reopened.
    #[error("segment store is poisoned by an earlier sync failure; reopen it")]
    Poisoned,
    /// The handle was opened read-only ([`crate::SegmentConfig::read_only`]): it never writes.
    #[error("segment store is open read-only")]
    ReadOnly,
    /// Bytes on disk do not frame correctly.
    #[error("segment {segment} corrupted at offset {offset}: {reason}")]
    Corrupted {
        /// The segment.
        segment: SegmentId,
        /// Offset in the segment file of the header that failed.
        offset: u64,
        /// What is wrong.
        reason: FrameError,
    },
    /// A framing error from the pure decoder, without position (see [`crate::decode_record_header`]).
    #[error("invalid header: {0}")]
    Frame(#[from] FrameError),
    /// The record's id is not the one the caller expected.
    #[error("segment {segment} offset {offset}: record id {} but expected {}", hex(.found), hex(.expected))]
    IdMismatch {
        /// The segment.
        segment: SegmentId,
        /// The record offset.
        offset: u64,
        /// Id the caller expected.
        expected: [u8; 32],
        /// Id in the record header.
        found: [u8; 32],
    },
    /// The record's kind is not the one the caller expected.
    #[error("segment {segment} offset {offset}: record kind {found:?} but expected {expected:?}")]
    KindMismatch {
        /// The segment.
        segment: SegmentId,
        /// The record offset.
        offset: u64,
        /// Kind the caller expected.
        expected: RecordKind,
        /// Kind in the record header.
        found: RecordKind,
    },
    /// The record's payload length is not the one in the caller's [`crate::RecordLoc`].
    #[error(
        "segment {segment} offset {offset}: payload length {found} but location says {expected}"
    )]
    LengthMismatch {
        /// The segment.
        segment: SegmentId,
        /// The record offset.
        offset: u64,
        /// Length from the location.
        expected: u32,
        /// Length in the record header.
        found: u32,
    },
    /// A payload larger than the configured maximum was offered to `append`.
    #[error("payload of {len} bytes exceeds the maximum of {max}")]
    PayloadTooLarge {
        /// Offered length.
        len: usize,
        /// Configured maximum.
        max: u32,
    },
    /// No segment with this id is known to the store.
    #[error("unknown segment {0}")]
    UnknownSegment(SegmentId),
    /// The segment still holds records whose caller has not settled them (they may be about
    /// to be indexed), so it cannot be removed.
    #[error("segment {0} still holds unsettled records")]
    Unsettled(SegmentId),
    /// A location or scan range reaches outside the segment's known length.
    #[error("segment {segment}: range {offset}+{len} lies outside its {segment_len} bytes")]
    OutOfBounds {
        /// The segment.
        segment: SegmentId,
        /// Start of the range.
        offset: u64,
        /// Length of the range.
        len: u64,
        /// Known length of the segment.
        segment_len: u64,
    },
    /// A committed segment's file is missing.
    #[error("committed segment {segment} is missing: {}", path.display())]
    MissingSegment {
        /// The segment.
        segment: SegmentId,
        /// Where it should be.
        path: PathBuf,
    },
    /// A segment file is shorter than its committed length: durable bytes were lost.
    #[error("segment {segment} is {file_len} bytes but {committed} bytes were committed")]
    ShorterThanCommitted {
        /// The segment.
        segment: SegmentId,
        /// The committed length.
        committed: u64,
        /// The file's length.
        file_len: u64,
    },
    /// A committed length smaller than the segment file header.
    #[error("segment {segment}: committed length {committed} is below the file header size")]
    InvalidCommittedLength {
        /// The segment.
        segment: SegmentId,
        /// The committed length.
        committed: u64,
    },
    /// The active segment cannot be removed.
    #[error("segment {0} is the active segment and cannot be removed")]
    ActiveSegment(SegmentId),
    /// The configuration is not usable.
    #[error("invalid segment config: {0}")]
    InvalidConfig(String),
}

impl SegmentError {
    /// Builds an [`SegmentError::Io`].
    pub(crate) fn io(path: impl Into<PathBuf>, op: &'static str, source: io::Error) -> Self {
        SegmentError::Io {
            path: path.into(),
            op,
            source,
        }
    }

    /// True for errors that mean the bytes on disk are damaged (as opposed to I/O or misuse).
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            SegmentError::Corrupted { .. }
                | SegmentError::Frame(_)
                | SegmentError::IdMismatch { .. }
                | SegmentError::KindMismatch { .. }
                | SegmentError::LengthMismatch { .. }
                | SegmentError::ShorterThanCommitted { .. }
                | SegmentError::MissingSegment { .. }
        )
    }
}

fn hex(bytes: &[u8; 32]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
