//! Where a store keeps its bytes. [`StoreBackends`] names the two backends a store opens: the
//! file backend (segment files and the data dir's own entries: creating it, fsyncing it) and the
//! index storage (the redb database `index.redb`). The default is the real filesystem for both;
//! tests substitute backends that inject faults or simulate power loss (feature `sim`:
//! `sim_index`). The `LOCK` file is an OS lock and always lives on the real filesystem.

use std::fmt::Debug;
use std::path::Path;
use std::sync::Arc;

use net_mesh_segments::{FileBackend, SegmentBackend};

/// Opens the index database.
pub trait IndexStorage: Send + Sync + Debug {
    /// Opens the redb database at `path`, creating it if it does not exist.
    fn open_database(&self, path: &Path) -> Result<redb::Database, redb::DatabaseError>;

    /// Opens the existing redb database at `path` read-only: nothing is written to it, not
    /// even at open or close (a check's open). `Ok(None)` when this storage cannot, and the
    /// caller opens it with [`IndexStorage::open_database`].
    fn open_database_read_only(
        &self,
        _path: &Path,
    ) -> Result<Option<redb::ReadOnlyDatabase>, redb::DatabaseError> {
        Ok(None)
    }
}

/// The most memory redb may keep as its page cache for one index. redb's own default is
/// 1 GiB, which a walk over a large table (a listing, fsck, GC) fills and keeps for the life
/// of the process; the index's interior pages, which every lookup touches, fit in far less,
/// and the kernel's page cache still holds the file.
pub const INDEX_CACHE_BYTES: usize = 64 * 1024 * 1024;

/// redb's builder with the index's settings ([`INDEX_CACHE_BYTES`]).
pub fn index_builder() -> redb::Builder {
    let mut builder = redb::Builder::new();
    builder.set_cache_size(INDEX_CACHE_BYTES);
    builder
}

/// The real index storage: redb's own file backend.
#[derive(Debug, Default, Clone, Copy)]
pub struct RedbFile;

impl IndexStorage for RedbFile {
    fn open_database(&self, path: &Path) -> Result<redb::Database, redb::DatabaseError> {
        index_builder().create(path)
    }

    fn open_database_read_only(
        &self,
        path: &Path,
    ) -> Result<Option<redb::ReadOnlyDatabase>, redb::DatabaseError> {
        index_builder().open_read_only(path).map(Some)
    }
}

/// The backends a store is opened on (see [`crate::Store::open_with`]). Both must see the same
/// files: a new index is created by `index` as `index.redb.new` and renamed into place through
/// `files`.
#[derive(Debug, Clone)]
pub struct StoreBackends {
    /// Segment files, and the data dir's own directory operations.
    pub files: Arc<dyn SegmentBackend>,
    /// The index database.
    pub index: Arc<dyn IndexStorage>,
}

impl Default for StoreBackends {
    fn default() -> Self {
        StoreBackends {
            files: Arc::new(FileBackend),
            index: Arc::new(RedbFile),
        }
    }
}
