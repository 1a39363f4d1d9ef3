//! Reading [`Segments`]: a view of the active file or of a sealed one (mapped read-only when
//! the backend can), record reads checked against their header, and scans that frame a
//! segment's records.

use std::sync::Arc;

use bytes::Bytes;

use super::{FILE_HEADER_LEN_U64, RECORD_HEADER_LEN_U64, Segments, corrupted, lock, out_of_bounds};
use crate::backend::SegmentFile;
use crate::codec::{FILE_HEADER_LEN, FileHeader, FrameError, RECORD_HEADER_LEN};
use crate::framing::{check_record_header, frame_records};
use crate::{ObjectId, RecordKind, RecordLoc, ScanItem, SegmentError, SegmentId};

/// A sealed segment opened for reading, mapped when the backend supports it.
#[derive(Debug)]
pub(super) struct SealedReader {
    pub(super) file: Box<dyn SegmentFile>,
    map: Option<memmap2::Mmap>,
}

/// Where to read a segment's bytes from, and how many are valid.
pub(super) enum View {
    Active(Arc<dyn SegmentFile>, u64),
    Sealed(Arc<SealedReader>, u64),
}

impl View {
    fn len(&self) -> u64 {
        match self {
            View::Active(_, len) | View::Sealed(_, len) => *len,
        }
    }
}

impl Segments {
    pub(super) fn view(&self, segment: SegmentId) -> Result<View, SegmentError> {
        let state = lock(&self.state)?;
        if segment == state.active {
            return Ok(View::Active(
                Arc::clone(&state.active_file),
                state.active_len,
            ));
        }
        let sealed_len = *state
            .sealed_lens
            .get(&segment)
            .ok_or(SegmentError::UnknownSegment(segment))?;
        // Under the state lock, so that `remove_segment` cannot unlink the file between the
        // lookup and the open (the read would fail with an I/O error instead of
        // `UnknownSegment`), nor leave a reader of a removed segment in the cache.
        let reader = self.sealed_reader(segment)?;
        drop(state);
        Ok(View::Sealed(reader, sealed_len))
    }

    fn sealed_reader(&self, segment: SegmentId) -> Result<Arc<SealedReader>, SegmentError> {
        let mut cache = lock(&self.sealed)?;
        if let Some(reader) = cache.get(&segment) {
            return Ok(Arc::clone(reader));
        }
        let path = self.path_of(segment);
        let file = self
            .backend
            .open(&path, false)
            .map_err(|e| SegmentError::io(&path, "open sealed segment", e))?;
        let map = file
            .map_readonly()
            .map_err(|e| SegmentError::io(&path, "map sealed segment", e))?;
        let reader = Arc::new(SealedReader { file, map });
        cache.insert(segment, Arc::clone(&reader));
        Ok(reader)
    }

    /// Reads `len` bytes at `offset` of a segment; the caller has bounds-checked against the
    /// view's length. From a mapped sealed segment, a read of at least [`SHARE_MAPPED_MIN`]
    /// bytes is a view of the mapping ([`MappedBytes`], no copy); any other is copied.
    fn read_bytes(
        &self,
        segment: SegmentId,
        view: &View,
        offset: u64,
        len: usize,
    ) -> Result<Bytes, SegmentError> {
        let len_u64 = u64::try_from(len).unwrap_or(u64::MAX);
        let end = offset
            .checked_add(len_u64)
            .filter(|end| *end <= view.len())
            .ok_or_else(|| out_of_bounds(segment, offset, len_u64, view.len()))?;
        let file: &dyn SegmentFile = match view {
            View::Active(file, _) => file.as_ref(),
            View::Sealed(reader, _) => {
                if let Some(map) = &reader.map {
                    let range = usize::try_from(offset)
                        .ok()
                        .zip(usize::try_from(end).ok())
                        .filter(|(start, end)| map.get(*start..*end).is_some())
                        .ok_or_else(|| out_of_bounds(segment, offset, len_u64, map.len() as u64))?;
                    if len < SHARE_MAPPED_MIN {
                        let bytes = map.get(range.0..range.1).unwrap_or_default();
                        return Ok(Bytes::copy_from_slice(bytes));
                    }
                    return Ok(Bytes::from_owner(MappedBytes {
                        reader: Arc::clone(reader),
                        start: range.0,
                        end: range.1,
                    }));
                }
                reader.file.as_ref()
            }
        };
        let mut buf = vec![0u8; len];
        file.read_at(&mut buf, offset)
            .map_err(|e| SegmentError::io(self.path_of(segment), "read segment", e))?;
        Ok(Bytes::from(buf))
    }

    /// Reads one record: checks the header (magic, version, checksum), then that its kind,
    /// payload length and id are the expected ones, and returns the payload. The payload's
    /// content is not verified here (the engine re-hashes it).
    pub fn read(
        &self,
        loc: RecordLoc,
        kind: RecordKind,
        expected_id: &ObjectId,
    ) -> Result<Bytes, SegmentError> {
        let view = self.view(loc.segment)?;
        let record_len = RECORD_HEADER_LEN_U64.saturating_add(u64::from(loc.payload_len));
        if loc.offset < FILE_HEADER_LEN_U64
            || loc
                .offset
                .checked_add(record_len)
                .is_none_or(|end| end > view.len())
        {
            return Err(out_of_bounds(
                loc.segment,
                loc.offset,
                record_len,
                view.len(),
            ));
        }
        let header_bytes = self.read_bytes(loc.segment, &view, loc.offset, RECORD_HEADER_LEN)?;
        check_record_header(loc, kind, expected_id, &header_bytes)?;
        let payload_offset = loc.offset.saturating_add(RECORD_HEADER_LEN_U64);
        let payload_len = usize::try_from(loc.payload_len).map_err(|_| {
            out_of_bounds(
                loc.segment,
                payload_offset,
                u64::from(loc.payload_len),
                view.len(),
            )
        })?;
        self.read_bytes(loc.segment, &view, payload_offset, payload_len)
    }

    /// Frames the records of `segment` from the file header up to `upto` bytes (for fsck,
    /// compaction and recovery). Each item is a record, or the framing error (with its offset)
    /// that ended the scan; nothing follows an error item. I/O errors and an `upto` beyond the
    /// segment's known length fail the whole call. Payloads are not read.
    pub fn scan(&self, segment: SegmentId, upto: u64) -> Result<Vec<ScanItem>, SegmentError> {
        let view = self.view(segment)?;
        if upto > view.len() {
            return Err(out_of_bounds(segment, 0, upto, view.len()));
        }
        let mut items = Vec::new();
        if upto < FILE_HEADER_LEN_U64 {
            items.push(Err(corrupted(
                segment,
                0,
                FrameError::Truncated {
                    needed: FILE_HEADER_LEN_U64,
                    available: upto,
                },
            )));
            return Ok(items);
        }
        let file_header = self.read_bytes(segment, &view, 0, FILE_HEADER_LEN)?;
        match FileHeader::decode(&file_header) {
            Ok(h) if h.segment == segment => {}
            Ok(h) => {
                items.push(Err(corrupted(
                    segment,
                    0,
                    FrameError::SegmentIdMismatch {
                        found: h.segment,
                        expected: segment,
                    },
                )));
                return Ok(items);
            }
            Err(reason) => {
                items.push(Err(corrupted(segment, 0, reason)));
                return Ok(items);
            }
        }
        frame_records(segment, upto, &mut items, |offset| {
            self.read_bytes(segment, &view, offset, RECORD_HEADER_LEN)
        })?;
        Ok(items)
    }
}

/// Reads from a mapped sealed segment at least this large are shared views of the mapping;
/// smaller ones are copied (a view costs an allocation and a page-table release of its own).
const SHARE_MAPPED_MIN: usize = 64 * 1024;

/// A read from a mapped sealed segment, handed out as [`Bytes`] without a copy: bytes
/// `start..end` of the reader's mapping (bounds checked when it was made). The mapping stays
/// valid while the view lives, also after the segment is removed (unlinking a mapped file
/// keeps its pages). When the last view drops, its pages leave this process's page tables
/// (they stay in the page cache), so a long sequential `get` does not pile up resident pages.
struct MappedBytes {
    reader: Arc<SealedReader>,
    start: usize,
    end: usize,
}

impl AsRef<[u8]> for MappedBytes {
    fn as_ref(&self) -> &[u8] {
        let map = self.reader.map.as_deref().unwrap_or_default();
        map.get(self.start..self.end).unwrap_or_default()
    }
}

impl Drop for MappedBytes {
    fn drop(&mut self) {
        let Some(map) = &self.reader.map else {
            return;
        };
        // SAFETY: the mapping is a read-only, shared mapping of a sealed segment file.
        // MADV_DONTNEED on such a mapping only discards this process's page-table entries; the
        // next access re-faults the same bytes from the page cache / file, so no Rust reference
        // (another view of the same pages included) can observe changed contents. memmap2
        // bounds-checks the range and aligns it to pages. A hint: failure changes nothing.
        #[allow(unsafe_code)]
        let _ = unsafe {
            map.unchecked_advise_range(
                memmap2::UncheckedAdvice::DontNeed,
                self.start,
                self.end.saturating_sub(self.start),
            )
        };
    }
}
