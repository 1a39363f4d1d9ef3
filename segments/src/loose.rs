//! [`LooseSegment`]: a segment file read outside the set a [`crate::Segments`] handle has open
//! — an orphan file, or a committed one whose file header is damaged — for fsck to check its
//! records or salvage them. Read-only: it never writes, truncates or removes the file.

use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::backend::{SegmentBackend, SegmentFile};
use crate::codec::{FILE_HEADER_LEN, RECORD_HEADER_LEN};
use crate::framing::{check_record_header, frame_records};
use crate::{ObjectId, RecordKind, RecordLoc, ScanItem, SegmentError, SegmentId};

/// A segment file opened read-only, whatever its file header says: its records are framed
/// from the end of the fixed-length file header, as if the header named `segment`.
#[derive(Debug)]
pub struct LooseSegment {
    segment: SegmentId,
    path: PathBuf,
    file: Box<dyn SegmentFile>,
    /// Bytes that may be read (at most the file's length).
    len: u64,
}

impl LooseSegment {
    /// Opens `path` read-only as segment `segment`; at most `upto` bytes are read (`None`: the
    /// whole file).
    pub fn open(
        backend: &dyn SegmentBackend,
        path: &Path,
        segment: SegmentId,
        upto: Option<u64>,
    ) -> Result<LooseSegment, SegmentError> {
        let file = backend
            .open(path, false)
            .map_err(|e| SegmentError::io(path, "open segment read-only", e))?;
        let file_len = file
            .len()
            .map_err(|e| SegmentError::io(path, "stat segment", e))?;
        Ok(LooseSegment {
            segment,
            path: path.to_path_buf(),
            file,
            len: upto.map_or(file_len, |upto| upto.min(file_len)),
        })
    }

    /// The segment id its records are located under.
    pub fn segment(&self) -> SegmentId {
        self.segment
    }

    /// Bytes that may be read.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it holds no more than a file header.
    pub fn is_empty(&self) -> bool {
        self.len <= FILE_HEADER_LEN as u64
    }

    fn read_bytes(&self, offset: u64, len: usize) -> Result<Bytes, SegmentError> {
        let len_u64 = u64::try_from(len).unwrap_or(u64::MAX);
        if offset.checked_add(len_u64).is_none_or(|end| end > self.len) {
            return Err(SegmentError::OutOfBounds {
                segment: self.segment,
                offset,
                len: len_u64,
                segment_len: self.len,
            });
        }
        let mut buf = vec![0u8; len];
        self.file
            .read_at(&mut buf, offset)
            .map_err(|e| SegmentError::io(&self.path, "read segment", e))?;
        Ok(Bytes::from(buf))
    }

    /// Frames its records from the end of the file header, as [`crate::Segments::scan`] does
    /// (each item a record, or the framing error that ended the scan). Payloads are not read.
    pub fn scan(&self) -> Result<Vec<ScanItem>, SegmentError> {
        let mut items = Vec::new();
        frame_records(self.segment, self.len, &mut items, |offset| {
            self.read_bytes(offset, RECORD_HEADER_LEN)
        })?;
        Ok(items)
    }

    /// Reads one record as [`crate::Segments::read`] does: its header is checked against
    /// `loc`, `kind` and `expected_id`; the payload is returned unverified.
    pub fn read(
        &self,
        loc: RecordLoc,
        kind: RecordKind,
        expected_id: &ObjectId,
    ) -> Result<Bytes, SegmentError> {
        let record_len = (RECORD_HEADER_LEN as u64).saturating_add(u64::from(loc.payload_len));
        if loc.segment != self.segment
            || loc.offset < FILE_HEADER_LEN as u64
            || loc
                .offset
                .checked_add(record_len)
                .is_none_or(|end| end > self.len)
        {
            return Err(SegmentError::OutOfBounds {
                segment: loc.segment,
                offset: loc.offset,
                len: record_len,
                segment_len: self.len,
            });
        }
        let header = self.read_bytes(loc.offset, RECORD_HEADER_LEN)?;
        check_record_header(loc, kind, expected_id, &header)?;
        let payload_len =
            usize::try_from(loc.payload_len).map_err(|_| SegmentError::OutOfBounds {
                segment: loc.segment,
                offset: loc.offset,
                len: record_len,
                segment_len: self.len,
            })?;
        self.read_bytes(
            loc.offset.saturating_add(RECORD_HEADER_LEN as u64),
            payload_len,
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::codec::FileHeader;
    use crate::files::segment_file_name;
    use crate::{FileBackend, SegmentConfig, Segments};
    use std::collections::BTreeMap;

    #[test]
    fn records_are_framed_and_read_whatever_the_file_header_says() {
        let dir = tempfile::tempdir().unwrap();
        let segments =
            Segments::open(dir.path(), SegmentConfig::default(), &BTreeMap::new()).unwrap();
        let id = segments.active_segment();
        let a = segments
            .append(RecordKind::Chunk, &[1; 32], b"alpha")
            .unwrap();
        let b = segments
            .append(RecordKind::LeafNode, &[2; 32], b"beta!")
            .unwrap();
        segments.sync().unwrap();
        drop(segments);
        let path = dir.path().join(segment_file_name(id));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[..FILE_HEADER_LEN].copy_from_slice(&FileHeader { segment: id + 7 }.encode());
        std::fs::write(&path, &bytes).unwrap();

        let loose = LooseSegment::open(&FileBackend, &path, id, None).unwrap();
        let found: Vec<_> = loose
            .scan()
            .unwrap()
            .into_iter()
            .map(|i| i.unwrap())
            .collect();
        assert_eq!(
            found,
            vec![
                (a, RecordKind::Chunk, [1; 32]),
                (b, RecordKind::LeafNode, [2; 32])
            ]
        );
        assert_eq!(
            &loose.read(b, RecordKind::LeafNode, &[2; 32]).unwrap()[..],
            b"beta!"
        );
        assert!(loose.read(b, RecordKind::Chunk, &[2; 32]).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "nothing written");
    }
}
