//! The index database on a segment [`SegmentBackend`] (feature `sim`): redb's
//! [`redb::StorageBackend`] adapted to a [`SegmentFile`], so that `index.redb` can live on the
//! same simulated disk as the segment files (`net_mesh_segments::sim::SimDisk`) and a power cut
//! hits both in one global order. [`IndexFaults`] fails the Nth write or sync of the index file
//! on purpose.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use net_mesh_segments::{SegmentBackend, SegmentFile};

use crate::storage::IndexStorage;

/// Fault plan and counters of the index file's writes and syncs. All `n` are 1-based and
/// counted over the plan's lifetime (every database opened with it); 0 means "never".
#[derive(Debug, Default)]
pub struct IndexFaults {
    writes: AtomicU64,
    syncs: AtomicU64,
    fail_write_at: AtomicU64,
    fail_sync_at: AtomicU64,
}

impl IndexFaults {
    /// The `n`th write of the index file fails and writes nothing.
    pub fn fail_nth_write(&self, n: u64) {
        self.fail_write_at.store(n, Ordering::SeqCst);
    }

    /// The `n`th sync of the index file fails (what was written before it may or may not be on
    /// the disk: the simulated disk still holds it unsynced).
    pub fn fail_nth_sync(&self, n: u64) {
        self.fail_sync_at.store(n, Ordering::SeqCst);
    }

    /// Writes so far (including a failed one).
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }

    /// Syncs so far (including a failed one).
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::SeqCst)
    }

    fn count(counter: &AtomicU64, fail_at: &AtomicU64, what: &str) -> io::Result<()> {
        let n = counter.fetch_add(1, Ordering::SeqCst).saturating_add(1);
        if fail_at.load(Ordering::SeqCst) == n {
            return Err(io::Error::other(format!(
                "injected fault: index {what} {n}"
            )));
        }
        Ok(())
    }
}

/// [`IndexStorage`] that keeps `index.redb` on a segment backend.
#[derive(Debug, Clone)]
pub struct IndexOnBackend {
    files: Arc<dyn SegmentBackend>,
    faults: Arc<IndexFaults>,
}

impl IndexOnBackend {
    /// The index on `files`, with no faults planned.
    pub fn new(files: Arc<dyn SegmentBackend>) -> IndexOnBackend {
        IndexOnBackend {
            files,
            faults: Arc::default(),
        }
    }

    /// The fault plan (shared by every database this storage opens).
    pub fn faults(&self) -> &Arc<IndexFaults> {
        &self.faults
    }
}

impl IndexStorage for IndexOnBackend {
    fn open_database(&self, path: &Path) -> Result<redb::Database, redb::DatabaseError> {
        let file = match self.files.open(path, true) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => self.files.create(path)?,
            other => other?,
        };
        crate::storage::index_builder().create_with_backend(RedbOnFile {
            file,
            faults: Arc::clone(&self.faults),
        })
    }

    fn open_database_read_only(
        &self,
        path: &Path,
    ) -> Result<Option<redb::ReadOnlyDatabase>, redb::DatabaseError> {
        let file = self.files.open(path, false)?;
        crate::storage::index_builder()
            .open_read_only_with_backend(RedbOnFile {
                file,
                faults: Arc::clone(&self.faults),
            })
            .map(Some)
    }
}

/// One open index file as redb sees it.
#[derive(Debug)]
struct RedbOnFile {
    file: Box<dyn SegmentFile>,
    faults: Arc<IndexFaults>,
}

impl redb::StorageBackend for RedbOnFile {
    fn len(&self) -> Result<u64, io::Error> {
        self.file.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        self.file.read_at(out, offset)
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.file.set_len(len)
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        IndexFaults::count(&self.faults.syncs, &self.faults.fail_sync_at, "sync")?;
        self.file.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        IndexFaults::count(&self.faults.writes, &self.faults.fail_write_at, "write")?;
        self.file.write_at(data, offset)
    }
}
