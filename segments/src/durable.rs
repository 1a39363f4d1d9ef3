//! The one place that makes file changes outside appends durable: small files are written to a
//! temp file in the same directory, fsynced, renamed over the target, and the directory
//! fsynced (used by the engine for small files); a segment file's header, which depends on
//! nothing but the segment id, is written in place and fdatasynced (fsck's repair of a damaged
//! header).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::backend::SegmentBackend;
use crate::codec::FileHeader;
use crate::files::segment_file_name;
use crate::{SegmentError, SegmentId};

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Atomically replaces `path` with `bytes`: after a crash, `path` holds either the old or the new
/// contents, never a mix. Fsync errors are reported as [`SegmentError::SyncFailed`].
pub fn write_file_atomic(path: &Path, bytes: &[u8]) -> Result<(), SegmentError> {
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .ok_or_else(|| {
            SegmentError::io(
                path,
                "write_file_atomic: path has no file name",
                io::Error::from(io::ErrorKind::InvalidInput),
            )
        })?
        .to_string_lossy()
        .into_owned();
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.tmp.{}.{n}", std::process::id()));
    let result = write_temp_and_rename(&tmp, path, bytes);
    if result.is_err() {
        // Best effort: the temp file is garbage either way.
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    sync_dir(&dir)
}

fn write_temp_and_rename(tmp: &Path, path: &Path, bytes: &[u8]) -> Result<(), SegmentError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(tmp)
        .map_err(|e| SegmentError::io(tmp, "create temp file", e))?;
    file.write_all(bytes)
        .map_err(|e| SegmentError::io(tmp, "write temp file", e))?;
    file.sync_all().map_err(|e| SegmentError::SyncFailed {
        path: tmp.to_path_buf(),
        op: "fsync temp file",
        source: e,
    })?;
    drop(file);
    std::fs::rename(tmp, path).map_err(|e| SegmentError::io(path, "rename temp file over", e))
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Writes the file header of `segment` over the first bytes of its existing file in `dir`
/// (`seg-{id:016x}.nms`, so the header's id is the file name's) and fdatasyncs the file.
/// Nothing past the header is touched. The write is 32 bytes inside the first sector; if a crash
/// tears it, the header is still damaged and is rewritten again.
pub fn rewrite_segment_header(
    backend: &dyn SegmentBackend,
    dir: &Path,
    segment: SegmentId,
) -> Result<(), SegmentError> {
    let path = dir.join(segment_file_name(segment));
    let file = backend
        .open(&path, true)
        .map_err(|e| SegmentError::io(&path, "open segment", e))?;
    file.write_at(&FileHeader { segment }.encode(), 0)
        .map_err(|e| SegmentError::io(&path, "write segment file header", e))?;
    file.sync_data().map_err(|e| SegmentError::SyncFailed {
        path: path.clone(),
        op: "fdatasync segment file header",
        source: e,
    })
}

/// fsyncs a directory so that entries created, renamed or removed in it are durable.
pub fn sync_dir(dir: &Path) -> Result<(), SegmentError> {
    sync_dir_io(dir).map_err(|e| SegmentError::SyncFailed {
        path: dir.to_path_buf(),
        op: "fsync directory",
        source: e,
    })
}

pub(crate) fn sync_dir_io(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_file_atomic_replaces_contents_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("small.bin");
        write_file_atomic(&path, b"first").unwrap();
        write_file_atomic(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "temp file left behind: {names:?}");
    }

    #[test]
    fn rewrite_segment_header_restores_the_header_and_keeps_the_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(segment_file_name(5));
        let mut bytes = FileHeader { segment: 5 }.encode().to_vec();
        bytes.extend_from_slice(b"records");
        let mut damaged = bytes.clone();
        damaged[3] ^= 0xff;
        std::fs::write(&path, &damaged).unwrap();
        rewrite_segment_header(&crate::FileBackend, dir.path(), 5).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
    }

    #[test]
    fn write_file_atomic_reports_missing_dir_as_io() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope").join("x");
        let err = write_file_atomic(&path, b"x").unwrap_err();
        assert!(matches!(err, SegmentError::Io { .. }), "{err}");
    }
}
