//! The segment directory: file names, opening committed segments (header check, truncation of
//! the uncommitted tail) and creating new segment files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::backend::{SegmentBackend, SegmentFile};
use crate::codec::{FILE_HEADER_LEN, FileHeader, FrameError};
use crate::store::corrupted;
use crate::{SegmentError, SegmentId};

const FILE_HEADER_LEN_U64: u64 = FILE_HEADER_LEN as u64;

/// File name of segment `id`: `seg-{id:016x}.nms`.
pub fn segment_file_name(id: SegmentId) -> String {
    format!("seg-{id:016x}.nms")
}

/// Parses a segment file name (exactly `seg-` + 16 lowercase hex digits + `.nms`).
pub fn parse_segment_file_name(name: &str) -> Option<SegmentId> {
    let hex = name.strip_prefix("seg-")?.strip_suffix(".nms")?;
    if hex.len() != 16
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// Segment files in `dir` by id; other entries are ignored.
pub(crate) fn list_segment_files(
    backend: &dyn SegmentBackend,
    dir: &Path,
) -> Result<BTreeMap<SegmentId, PathBuf>, SegmentError> {
    let entries = backend
        .list_dir(dir)
        .map_err(|e| SegmentError::io(dir, "list segment directory", e))?;
    Ok(entries
        .into_iter()
        .filter_map(|path| {
            let id = parse_segment_file_name(path.file_name()?.to_str()?)?;
            Some((id, path))
        })
        .collect())
}

/// Opens a committed segment read-write, checks its header and length, truncates the
/// uncommitted tail (durably). Returns the file and its length before truncation. With
/// `read_only`, the file is opened read-only and its tail left in place.
pub(crate) fn open_committed(
    backend: &dyn SegmentBackend,
    dir: &Path,
    on_disk: &BTreeMap<SegmentId, PathBuf>,
    segment: SegmentId,
    committed_len: u64,
    read_only: bool,
) -> Result<(Arc<dyn SegmentFile>, u64), SegmentError> {
    let path = dir.join(segment_file_name(segment));
    if !on_disk.contains_key(&segment) {
        return Err(SegmentError::MissingSegment { segment, path });
    }
    if committed_len < FILE_HEADER_LEN_U64 {
        return Err(SegmentError::InvalidCommittedLength {
            segment,
            committed: committed_len,
        });
    }
    let file: Arc<dyn SegmentFile> = Arc::from(
        backend
            .open(&path, !read_only)
            .map_err(|e| SegmentError::io(&path, "open segment", e))?,
    );
    let file_len = file
        .len()
        .map_err(|e| SegmentError::io(&path, "stat segment", e))?;
    if file_len < committed_len {
        return Err(SegmentError::ShorterThanCommitted {
            segment,
            committed: committed_len,
            file_len,
        });
    }
    let mut header = [0u8; FILE_HEADER_LEN];
    file.read_at(&mut header, 0)
        .map_err(|e| SegmentError::io(&path, "read segment file header", e))?;
    let decoded = FileHeader::decode(&header).map_err(|reason| corrupted(segment, 0, reason))?;
    if decoded.segment != segment {
        return Err(corrupted(
            segment,
            0,
            FrameError::SegmentIdMismatch {
                found: decoded.segment,
                expected: segment,
            },
        ));
    }
    if file_len > committed_len && !read_only {
        tracing::info!(
            segment,
            committed_len,
            file_len,
            "truncating uncommitted segment tail"
        );
        file.set_len(committed_len)
            .map_err(|e| SegmentError::io(&path, "truncate uncommitted tail", e))?;
        file.sync_data().map_err(|e| SegmentError::SyncFailed {
            path: path.clone(),
            op: "fdatasync after truncation",
            source: e,
        })?;
    }
    Ok((file, file_len))
}

/// The highest segment file in `on_disk` when it holds its file header and nothing else (a
/// segment an open started and nothing was written to), opened read-write; `None` when it
/// holds more, its header is not its own, or it cannot be opened or read.
pub(crate) fn header_only_file(
    backend: &dyn SegmentBackend,
    on_disk: &BTreeMap<SegmentId, PathBuf>,
    read_only: bool,
) -> Option<(SegmentId, Arc<dyn SegmentFile>)> {
    let (&id, path) = on_disk.iter().next_back()?;
    let file: Arc<dyn SegmentFile> = Arc::from(backend.open(path, !read_only).ok()?);
    if file.len().ok()? != FILE_HEADER_LEN_U64 {
        return None;
    }
    let mut header = [0u8; FILE_HEADER_LEN];
    file.read_at(&mut header, 0).ok()?;
    let decoded = FileHeader::decode(&header).ok()?;
    (decoded.segment == id).then_some((id, file))
}

/// The active segment of a read-only handle that found no segment to take: no file, no bytes
/// past the header, nothing written.
#[derive(Debug)]
pub(crate) struct NoFile;

impl SegmentFile for NoFile {
    fn read_at(&self, _buf: &mut [u8], _offset: u64) -> std::io::Result<()> {
        Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no segment file (read-only open of a store that never committed one)",
        ))
    }
    fn write_at(&self, _buf: &[u8], _offset: u64) -> std::io::Result<()> {
        Err(std::io::Error::from(std::io::ErrorKind::ReadOnlyFilesystem))
    }
    fn sync_data(&self) -> std::io::Result<()> {
        Err(std::io::Error::from(std::io::ErrorKind::ReadOnlyFilesystem))
    }
    fn len(&self) -> std::io::Result<u64> {
        Ok(FILE_HEADER_LEN_U64)
    }
    fn set_len(&self, _len: u64) -> std::io::Result<()> {
        Err(std::io::Error::from(std::io::ErrorKind::ReadOnlyFilesystem))
    }
}

/// Creates segment file `id` with its file header (not yet synced).
pub(crate) fn create_segment_file(
    backend: &dyn SegmentBackend,
    dir: &Path,
    id: SegmentId,
) -> Result<Arc<dyn SegmentFile>, SegmentError> {
    let path = dir.join(segment_file_name(id));
    let file: Arc<dyn SegmentFile> = Arc::from(
        backend
            .create(&path)
            .map_err(|e| SegmentError::io(&path, "create segment", e))?,
    );
    file.write_at(&FileHeader { segment: id }.encode(), 0)
        .map_err(|e| SegmentError::io(&path, "write segment file header", e))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_round_trip_and_reject_near_misses() {
        assert_eq!(segment_file_name(0x1f), "seg-000000000000001f.nms");
        assert_eq!(
            parse_segment_file_name("seg-000000000000001f.nms"),
            Some(0x1f)
        );
        for bad in [
            "seg-000000000000001F.nms",
            "seg-1f.nms",
            "seg-000000000000001f.nms.tmp",
            "xseg-000000000000001f.nms",
            "seg-+00000000000001f.nms",
        ] {
            assert_eq!(parse_segment_file_name(bad), None, "{bad}");
        }
    }
}
