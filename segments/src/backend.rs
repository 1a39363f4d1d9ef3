//! Storage backend: every byte this crate reads or writes goes through [`SegmentBackend`] and
//! [`SegmentFile`], so tests can inject faults (see [`crate::FaultyBackend`]). [`FileBackend`] is
//! the real one.

use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Directory-level operations on segment files (and, for the engine, on the other entries of a
/// data dir: creating it, the index file's name, fsyncing it).
pub trait SegmentBackend: Send + Sync + Debug {
    /// Creates a new file (fails if it exists), open for reading and writing.
    fn create(&self, path: &Path) -> io::Result<Box<dyn SegmentFile>>;
    /// Opens an existing file, read-write if `writable`, else read-only.
    fn open(&self, path: &Path, writable: bool) -> io::Result<Box<dyn SegmentFile>>;
    /// Lists the paths of the entries of `dir`.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>>;
    /// Unlinks a file.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Renames a file within one directory, replacing `to` if it exists (durable after
    /// [`SegmentBackend::sync_dir`] of that directory).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// fsyncs a directory so created/removed entries are durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Creates `dir` and its parents if missing.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
}

/// One open segment file.
// `len` is fallible (a stat call); an `is_empty` would add nothing for segment files.
#[allow(clippy::len_without_is_empty)]
pub trait SegmentFile: Send + Sync + Debug {
    /// Reads exactly `buf.len()` bytes at `offset` (error on EOF).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes all of `buf` at `offset`.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// fdatasync.
    fn sync_data(&self) -> io::Result<()>;
    /// Current file length.
    fn len(&self) -> io::Result<u64>;
    /// Truncates or extends the file.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Asks the OS to start writing `len` bytes at `offset` back to disk without waiting, so
    /// the next `sync_data` has less to wait for and disk writes overlap with chunking and
    /// hashing. A hint only: durability still comes from `sync_data`.
    fn start_writeback(&self, _offset: u64, _len: u64) -> io::Result<()> {
        Ok(())
    }
    /// A read-only mapping of the whole file, if this backend supports one. Only called for
    /// sealed segments, which are never written or truncated again. Backends without mappings
    /// return `Ok(None)` and reads fall back to [`SegmentFile::read_at`].
    fn map_readonly(&self) -> io::Result<Option<memmap2::Mmap>> {
        Ok(None)
    }
}

/// The real backend: plain files, `pread`/`pwrite`, `fdatasync`, and memmap2 for sealed reads.
#[derive(Debug, Default, Clone, Copy)]
pub struct FileBackend;

#[derive(Debug)]
struct RealFile {
    file: File,
}

impl SegmentBackend for FileBackend {
    fn create(&self, path: &Path) -> io::Result<Box<dyn SegmentFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        Ok(Box::new(RealFile { file }))
    }

    fn open(&self, path: &Path, writable: bool) -> io::Result<Box<dyn SegmentFile>> {
        let file = OpenOptions::new().read(true).write(writable).open(path)?;
        Ok(Box::new(RealFile { file }))
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            out.push(entry?.path());
        }
        Ok(out)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        crate::durable::sync_dir_io(dir)
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }
}

impl SegmentFile for RealFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    #[cfg(target_os = "linux")]
    #[allow(unsafe_code)]
    fn start_writeback(&self, offset: u64, len: u64) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
            return Ok(());
        };
        // SAFETY: sync_file_range only reads its integer arguments; the fd is owned by
        // `self.file` and open for the duration of the call. SYNC_FILE_RANGE_WRITE starts
        // writeback of dirty pages in the range and returns without waiting for it.
        let rc = unsafe {
            libc::sync_file_range(
                self.file.as_raw_fd(),
                offset,
                len,
                libc::SYNC_FILE_RANGE_WRITE,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    #[allow(unsafe_code)]
    fn map_readonly(&self) -> io::Result<Option<memmap2::Mmap>> {
        // SAFETY: memmap2 requires that the mapped file is not modified or truncated while the
        // mapping lives, or reads could observe torn data / SIGBUS. This is only called for
        // sealed segments: the store never writes to a segment after it stops being the active
        // one, truncation only happens in `Segments::open` before any mapping exists, and
        // `remove_segment` unlinks the file (the inode and thus the mapping stay valid until the
        // last mapping is dropped). The mapping is read-only. Other processes must not modify
        // the store's directory while it is open (documented on `Segments`).
        let map = unsafe { memmap2::Mmap::map(&self.file)? };
        Ok(Some(map))
    }
}
