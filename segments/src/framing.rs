//! Record framing shared by [`crate::Segments`] and [`crate::LooseSegment`]: checking one
//! record header against what an index entry expects, and framing a file's records in order.

use bytes::Bytes;

use crate::codec::{FILE_HEADER_LEN, FrameError, RECORD_HEADER_LEN, RecordHeader};
use crate::store::corrupted;
use crate::{ObjectId, RecordKind, RecordLoc, ScanItem, SegmentError, SegmentId};

const FILE_HEADER_LEN_U64: u64 = FILE_HEADER_LEN as u64;
const RECORD_HEADER_LEN_U64: u64 = RECORD_HEADER_LEN as u64;

/// Checks the record header at `loc` (magic, version, checksum) and that it holds the expected
/// kind, payload length and id (shared by [`Segments::read`] and [`crate::LooseSegment`]).
pub(crate) fn check_record_header(
    loc: RecordLoc,
    kind: RecordKind,
    expected_id: &ObjectId,
    header_bytes: &[u8],
) -> Result<(), SegmentError> {
    let header = RecordHeader::decode(header_bytes)
        .map_err(|reason| corrupted(loc.segment, loc.offset, reason))?;
    if header.payload_len != loc.payload_len {
        return Err(SegmentError::LengthMismatch {
            segment: loc.segment,
            offset: loc.offset,
            expected: loc.payload_len,
            found: header.payload_len,
        });
    }
    if header.kind != kind {
        return Err(SegmentError::KindMismatch {
            segment: loc.segment,
            offset: loc.offset,
            expected: kind,
            found: header.kind,
        });
    }
    if &header.id != expected_id {
        return Err(SegmentError::IdMismatch {
            segment: loc.segment,
            offset: loc.offset,
            expected: *expected_id,
            found: header.id,
        });
    }
    Ok(())
}

/// Frames the records of `segment` from the end of its file header up to `upto` (the loop of
/// [`Segments::scan`], shared with [`crate::LooseSegment`]): pushes each record, or the framing
/// error that ends the scan, to `items`. `read_header` reads the record header at an offset.
pub(crate) fn frame_records(
    segment: SegmentId,
    upto: u64,
    items: &mut Vec<ScanItem>,
    mut read_header: impl FnMut(u64) -> Result<Bytes, SegmentError>,
) -> Result<(), SegmentError> {
    let mut offset = FILE_HEADER_LEN_U64;
    while offset < upto {
        let available = upto.saturating_sub(offset);
        if available < RECORD_HEADER_LEN_U64 {
            items.push(Err(corrupted(
                segment,
                offset,
                FrameError::Truncated {
                    needed: RECORD_HEADER_LEN_U64,
                    available,
                },
            )));
            break;
        }
        let bytes = read_header(offset)?;
        let header = match RecordHeader::decode(&bytes) {
            Ok(header) => header,
            Err(reason) => {
                items.push(Err(corrupted(segment, offset, reason)));
                break;
            }
        };
        let record_len = header.record_len();
        if record_len > available {
            items.push(Err(corrupted(
                segment,
                offset,
                FrameError::Truncated {
                    needed: record_len,
                    available,
                },
            )));
            break;
        }
        items.push(Ok((
            RecordLoc {
                segment,
                offset,
                payload_len: header.payload_len,
            },
            header.kind,
            header.id,
        )));
        offset = offset.saturating_add(record_len);
    }
    Ok(())
}
