//! [`FaultyBackend`]: wraps [`FileBackend`] and injects write/sync failures and torn writes, for
//! crash-consistency tests. Counters are shared by every file the backend opens.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::backend::{FileBackend, SegmentBackend, SegmentFile};

/// Fault plan and counters. All `n` are 1-based; 0 means "never".
#[derive(Debug, Default)]
struct FaultState {
    writes: AtomicU64,
    syncs: AtomicU64,
    fail_write_at: AtomicU64,
    fail_sync_at: AtomicU64,
    tear_write_at: AtomicU64,
    tear_keep: AtomicU64,
    crashed: AtomicBool,
}

/// A backend that fails on purpose.
///
/// * [`FaultyBackend::fail_nth_write`]: the Nth `write_at` (counted across all files) returns an
///   error and writes nothing.
/// * [`FaultyBackend::fail_nth_sync`]: the Nth sync (file `sync_data` or `sync_dir`) returns an
///   error.
/// * [`FaultyBackend::tear_nth_write`]: the Nth write stores only its first `keep` bytes, then
///   the backend "crashes": that write and every later write or sync fails, as if the process
///   died. Reopen the directory (with any backend) to recover.
///
/// Cloning shares the plan and counters.
#[derive(Debug, Clone, Default)]
pub struct FaultyBackend {
    inner: FileBackend,
    state: Arc<FaultState>,
}

#[derive(Debug)]
struct FaultyFile {
    inner: Box<dyn SegmentFile>,
    state: Arc<FaultState>,
}

fn injected(what: &str) -> io::Error {
    io::Error::other(format!("injected fault: {what}"))
}

impl FaultyBackend {
    /// A backend with no faults planned.
    pub fn new() -> Self {
        Self::default()
    }

    /// Fail the `n`th write from now on counting (1-based, counted over the backend's lifetime).
    pub fn fail_nth_write(&self, n: u64) {
        self.state.fail_write_at.store(n, Ordering::SeqCst);
    }

    /// Fail the `n`th sync (file or directory; 1-based over the backend's lifetime).
    pub fn fail_nth_sync(&self, n: u64) {
        self.state.fail_sync_at.store(n, Ordering::SeqCst);
    }

    /// Tear the `n`th write: keep its first `keep` bytes, then crash.
    pub fn tear_nth_write(&self, n: u64, keep: u64) {
        self.state.tear_keep.store(keep, Ordering::SeqCst);
        self.state.tear_write_at.store(n, Ordering::SeqCst);
    }

    /// Writes performed so far (including failed ones).
    pub fn writes(&self) -> u64 {
        self.state.writes.load(Ordering::SeqCst)
    }

    /// Syncs performed so far (including failed ones).
    pub fn syncs(&self) -> u64 {
        self.state.syncs.load(Ordering::SeqCst)
    }

    /// True once a torn write has "crashed" the backend.
    pub fn crashed(&self) -> bool {
        self.state.crashed.load(Ordering::SeqCst)
    }

    fn check_crashed(&self) -> io::Result<()> {
        check_crashed(&self.state)
    }
}

fn check_crashed(state: &FaultState) -> io::Result<()> {
    if state.crashed.load(Ordering::SeqCst) {
        Err(injected("backend crashed earlier"))
    } else {
        Ok(())
    }
}

fn count_sync(state: &FaultState) -> io::Result<()> {
    check_crashed(state)?;
    let n = state.syncs.fetch_add(1, Ordering::SeqCst).saturating_add(1);
    if state.fail_sync_at.load(Ordering::SeqCst) == n {
        return Err(injected("sync failed"));
    }
    Ok(())
}

impl SegmentBackend for FaultyBackend {
    fn create(&self, path: &Path) -> io::Result<Box<dyn SegmentFile>> {
        self.check_crashed()?;
        let inner = self.inner.create(path)?;
        Ok(Box::new(FaultyFile {
            inner,
            state: Arc::clone(&self.state),
        }))
    }

    fn open(&self, path: &Path, writable: bool) -> io::Result<Box<dyn SegmentFile>> {
        self.check_crashed()?;
        let inner = self.inner.open(path, writable)?;
        Ok(Box::new(FaultyFile {
            inner,
            state: Arc::clone(&self.state),
        }))
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        self.inner.list_dir(dir)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.check_crashed()?;
        self.inner.remove(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.check_crashed()?;
        self.inner.rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        count_sync(&self.state)?;
        self.inner.sync_dir(dir)
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.inner.create_dir_all(dir)
    }
}

impl SegmentFile for FaultyFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        check_crashed(&self.state)?;
        let n = self
            .state
            .writes
            .fetch_add(1, Ordering::SeqCst)
            .saturating_add(1);
        if self.state.fail_write_at.load(Ordering::SeqCst) == n {
            return Err(injected("write failed"));
        }
        if self.state.tear_write_at.load(Ordering::SeqCst) == n {
            let keep = usize::try_from(self.state.tear_keep.load(Ordering::SeqCst))
                .unwrap_or(usize::MAX)
                .min(buf.len());
            if let Some(prefix) = buf.get(..keep) {
                self.inner.write_at(prefix, offset)?;
            }
            self.state.crashed.store(true, Ordering::SeqCst);
            return Err(injected("torn write (crash)"));
        }
        self.inner.write_at(buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        count_sync(&self.state)?;
        self.inner.sync_data()
    }

    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        check_crashed(&self.state)?;
        self.inner.set_len(len)
    }

    // No mapping: sealed reads go through read_at, exercising the fallback path.
}
