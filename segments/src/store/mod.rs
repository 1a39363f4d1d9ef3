//! [`Segments`]: the set of segment files in one directory, the active one appended to.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::backend::{FileBackend, SegmentBackend, SegmentFile};
use crate::codec::{FILE_HEADER_LEN, FrameError, MAX_PAYLOAD_LEN, RECORD_HEADER_LEN, RecordHeader};
use crate::files::{
    NoFile, create_segment_file, header_only_file, list_segment_files, open_committed,
    segment_file_name,
};
use crate::{ObjectId, RecordKind, RecordLoc, SegmentConfig, SegmentError, SegmentId, failpoint};

mod read;

use read::{SealedReader, View};

const FILE_HEADER_LEN_U64: u64 = FILE_HEADER_LEN as u64;
const RECORD_HEADER_LEN_U64: u64 = RECORD_HEADER_LEN as u64;

/// Append-side state, behind one mutex.
#[derive(Debug)]
struct AppendState {
    active: SegmentId,
    active_file: Arc<dyn SegmentFile>,
    /// End of the last successfully written record in the active segment.
    active_len: u64,
    /// Every non-active segment this handle knows, with its length.
    sealed_lens: BTreeMap<SegmentId, u64>,
    /// Segments written since the last sync, with the length a sync will make durable.
    dirty: BTreeMap<SegmentId, (Arc<dyn SegmentFile>, u64)>,
    /// Durable lengths the caller has not yet acknowledged as committed (see
    /// [`Segments::acknowledge_committed`]). Every [`Segments::sync`] returns all of them, so a
    /// length is never lost when the commit that first carried it is refused or never happens.
    unacknowledged: BTreeMap<SegmentId, u64>,
    /// Records appended to each segment and not yet settled by the caller (indexed or given
    /// up); see [`Segments::settle`].
    unsettled: BTreeMap<SegmentId, u64>,
    /// A segment file was created since the last directory sync.
    dir_dirty: bool,
    /// Next id for a new segment: above every segment file seen in the directory.
    next_id: SegmentId,
}

/// The segment files of one directory. `Send + Sync`; every method takes `&self`.
///
/// Appends go to the active segment under an internal mutex; reads take it only briefly.
/// No other process may write to the directory while a `Segments` is open (sealed segments are
/// memory-mapped).
pub struct Segments {
    dir: PathBuf,
    config: SegmentConfig,
    backend: Arc<dyn SegmentBackend>,
    poisoned: AtomicBool,
    /// Serialises `sync` calls so a sync never returns before an earlier one's data is durable.
    sync_lock: Mutex<()>,
    state: Mutex<AppendState>,
    sealed: Mutex<HashMap<SegmentId, Arc<SealedReader>>>,
    orphans: Vec<PathBuf>,
    truncated: Vec<TruncatedTail>,
}

/// A committed segment whose file held bytes past its committed length at open (cut off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TruncatedTail {
    /// The segment.
    pub segment: SegmentId,
    /// Its committed length (the new file length).
    pub committed_len: u64,
    /// The file length found at open.
    pub file_len_before: u64,
}

impl std::fmt::Debug for Segments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segments")
            .field("dir", &self.dir)
            .field("config", &self.config)
            .field("backend", &self.backend)
            .field("poisoned", &self.poisoned.load(Ordering::SeqCst))
            .field("orphans", &self.orphans)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> Result<MutexGuard<'_, T>, SegmentError> {
    // A panic while holding the lock leaves the state unknown: refuse like a failed sync.
    mutex.lock().map_err(|_| SegmentError::Poisoned)
}

pub(crate) fn corrupted(segment: SegmentId, offset: u64, reason: FrameError) -> SegmentError {
    SegmentError::Corrupted {
        segment,
        offset,
        reason,
    }
}

fn out_of_bounds(segment: SegmentId, offset: u64, len: u64, segment_len: u64) -> SegmentError {
    SegmentError::OutOfBounds {
        segment,
        offset,
        len,
        segment_len,
    }
}

impl Segments {
    /// Opens the segment directory `dir` with the real file backend.
    ///
    /// `committed` = every segment's committed length as last recorded by the index. Files with
    /// bytes past their committed length are truncated to it (those bytes were never referenced).
    /// Segment files not in `committed` are not deleted: they are returned by
    /// [`Segments::orphan_files`]. If `committed` is empty, a new segment is started (with an id
    /// above any file present). The highest committed segment becomes the active one; all others
    /// are sealed.
    pub fn open(
        dir: &Path,
        config: SegmentConfig,
        committed: &BTreeMap<SegmentId, u64>,
    ) -> Result<Segments, SegmentError> {
        Self::open_with_backend(dir, config, committed, Arc::new(FileBackend))
    }

    /// [`Segments::open`] with an explicit storage backend (fault injection in tests).
    pub fn open_with_backend(
        dir: &Path,
        config: SegmentConfig,
        committed: &BTreeMap<SegmentId, u64>,
        backend: Arc<dyn SegmentBackend>,
    ) -> Result<Segments, SegmentError> {
        if config.max_payload > MAX_PAYLOAD_LEN {
            return Err(SegmentError::InvalidConfig(format!(
                "max_payload {} exceeds the format maximum {MAX_PAYLOAD_LEN}",
                config.max_payload
            )));
        }
        if config.roll_size <= FILE_HEADER_LEN_U64 {
            return Err(SegmentError::InvalidConfig(format!(
                "roll_size {} must exceed the {FILE_HEADER_LEN}-byte file header",
                config.roll_size
            )));
        }
        backend
            .create_dir_all(dir)
            .map_err(|e| SegmentError::io(dir, "create segment directory", e))?;
        let on_disk = list_segment_files(backend.as_ref(), dir)?;

        let mut opened: BTreeMap<SegmentId, (Arc<dyn SegmentFile>, u64)> = BTreeMap::new();
        let mut truncated = Vec::new();
        for (&segment, &committed_len) in committed {
            let (file, file_len_before) = open_committed(
                backend.as_ref(),
                dir,
                &on_disk,
                segment,
                committed_len,
                config.read_only,
            )?;
            if file_len_before > committed_len && !config.read_only {
                truncated.push(TruncatedTail {
                    segment,
                    committed_len,
                    file_len_before,
                });
            }
            opened.insert(segment, (file, committed_len));
        }
        let mut orphans: Vec<PathBuf> = on_disk
            .iter()
            .filter(|(id, _)| !committed.contains_key(id))
            .map(|(_, path)| path.clone())
            .collect();

        let exhausted = || SegmentError::InvalidConfig("segment id space exhausted".to_owned());
        let above_files = match on_disk.keys().next_back() {
            Some(max) => max.checked_add(1).ok_or_else(exhausted)?,
            None => 0,
        };
        let mut next_id = above_files.max(config.new_ids_from);

        let mut dirty = BTreeMap::new();
        let mut dir_dirty = false;
        let (active, active_file, active_len) = match opened.pop_last() {
            Some((id, (file, len))) => (id, file, len),
            None => match header_only_file(backend.as_ref(), &on_disk, config.read_only) {
                // The store was opened before and never written to: take the segment that
                // open started instead of leaving one more empty file per open.
                Some((id, file)) if id >= config.new_ids_from => {
                    orphans.retain(|path| on_disk.get(&id) != Some(path));
                    if !config.read_only {
                        dirty.insert(id, (Arc::clone(&file), FILE_HEADER_LEN_U64));
                        dir_dirty = true;
                    }
                    (id, file, FILE_HEADER_LEN_U64)
                }
                // Read-only: no file is created; the placeholder holds nothing.
                _ if config.read_only => {
                    let file: Arc<dyn SegmentFile> = Arc::new(NoFile);
                    (next_id, file, FILE_HEADER_LEN_U64)
                }
                _ => {
                    let id = next_id;
                    next_id = next_id.checked_add(1).ok_or_else(exhausted)?;
                    let file = create_segment_file(backend.as_ref(), dir, id)?;
                    dirty.insert(id, (Arc::clone(&file), FILE_HEADER_LEN_U64));
                    dir_dirty = true;
                    (id, file, FILE_HEADER_LEN_U64)
                }
            },
        };
        if !orphans.is_empty() {
            tracing::warn!(count = orphans.len(), dir = %dir.display(), "segment files not in the index (orphans)");
        }
        let sealed_lens = opened
            .into_iter()
            .map(|(id, (_file, len))| (id, len))
            .collect();

        Ok(Segments {
            dir: dir.to_path_buf(),
            config,
            backend,
            poisoned: AtomicBool::new(false),
            sync_lock: Mutex::new(()),
            state: Mutex::new(AppendState {
                active,
                active_file,
                active_len,
                sealed_lens,
                dirty,
                unacknowledged: BTreeMap::new(),
                unsettled: BTreeMap::new(),
                dir_dirty,
                next_id,
            }),
            sealed: Mutex::new(HashMap::new()),
            orphans,
            truncated,
        })
    }

    fn path_of(&self, segment: SegmentId) -> PathBuf {
        self.dir.join(segment_file_name(segment))
    }

    /// Refuses a write: after a sync failure, or on a read-only handle.
    fn check_poisoned(&self) -> Result<(), SegmentError> {
        if self.config.read_only {
            return Err(SegmentError::ReadOnly);
        }
        if self.poisoned.load(Ordering::SeqCst) {
            Err(SegmentError::Poisoned)
        } else {
            Ok(())
        }
    }

    fn poison(&self, path: PathBuf, op: &'static str, source: std::io::Error) -> SegmentError {
        self.poisoned.store(true, Ordering::SeqCst);
        tracing::error!(path = %path.display(), op, error = %source, "sync failed; segment store poisoned");
        SegmentError::SyncFailed { path, op, source }
    }

    /// Appends a framed record to the active segment, rolling to a new segment file first when
    /// the record would push the active one past `roll_size`. One positional write; never through
    /// a mapping. Not durable until [`Segments::sync`].
    pub fn append(
        &self,
        kind: RecordKind,
        id: &ObjectId,
        payload: &[u8],
    ) -> Result<RecordLoc, SegmentError> {
        self.append_parts(kind, id, &[payload])
    }

    /// [`Segments::append`] of a payload that is `parts` one after another (each written where
    /// it lies: one positional write per part).
    pub fn append_parts(
        &self,
        kind: RecordKind,
        id: &ObjectId,
        parts: &[&[u8]],
    ) -> Result<RecordLoc, SegmentError> {
        self.check_poisoned()?;
        let len = parts
            .iter()
            .fold(0usize, |sum, part| sum.saturating_add(part.len()));
        let payload_len = u32::try_from(len)
            .ok()
            .filter(|len| *len <= self.config.max_payload)
            .ok_or(SegmentError::PayloadTooLarge {
                len,
                max: self.config.max_payload,
            })?;
        let header = RecordHeader {
            kind,
            payload_len,
            id: *id,
        };
        let record_len = header.record_len();
        let header_bytes = header.encode();

        let mut state = lock(&self.state)?;
        self.check_poisoned()?;
        let would_end = state.active_len.saturating_add(record_len);
        if state.active_len > FILE_HEADER_LEN_U64 && would_end > self.config.roll_size {
            self.roll(&mut state)?;
        }
        let offset = state.active_len;
        let end = offset
            .checked_add(record_len)
            .ok_or_else(|| out_of_bounds(state.active, offset, record_len, u64::MAX))?;
        // Header and payload are written in place (no copy into one buffer); a crash between
        // the two leaves a torn record past the committed length, which open truncates.
        let mut part_offset = offset.saturating_add(RECORD_HEADER_LEN as u64);
        let mut written = state.active_file.write_at(&header_bytes, offset);
        for part in parts {
            written = written.and_then(|()| state.active_file.write_at(part, part_offset));
            part_offset = part_offset.saturating_add(part.len() as u64);
        }
        written.map_err(|e| SegmentError::io(self.path_of(state.active), "write record", e))?;
        // A failed hint changes nothing about durability: sync() still fdatasyncs.
        let _ = state.active_file.start_writeback(offset, record_len);
        failpoint::hit("segment.after_write");
        state.active_len = end;
        let segment = state.active;
        let file = Arc::clone(&state.active_file);
        state.dirty.insert(segment, (file, end));
        let unsettled = state.unsettled.entry(segment).or_insert(0);
        *unsettled = unsettled.saturating_add(1);
        Ok(RecordLoc {
            segment,
            offset,
            payload_len,
        })
    }

    /// Seals the active segment and starts a new one. Caller holds the state lock.
    fn roll(&self, state: &mut AppendState) -> Result<(), SegmentError> {
        let id = state.next_id;
        // Bump first: a half-created file must never be reused by id.
        state.next_id = id
            .checked_add(1)
            .ok_or_else(|| SegmentError::InvalidConfig("segment id space exhausted".to_owned()))?;
        let file = create_segment_file(self.backend.as_ref(), &self.dir, id)?;
        let old = state.active;
        let old_len = state.active_len;
        state.sealed_lens.insert(old, old_len);
        state.active = id;
        state.active_file = Arc::clone(&file);
        state.active_len = FILE_HEADER_LEN_U64;
        state.dirty.insert(id, (file, FILE_HEADER_LEN_U64));
        state.dir_dirty = true;
        tracing::debug!(
            sealed = old,
            sealed_len = old_len,
            active = id,
            "rolled segment"
        );
        Ok(())
    }

    /// fdatasyncs every segment written since the last sync (and fsyncs the directory if a
    /// segment file was created), then returns the durable length of every segment whose
    /// durable length the caller has not yet acknowledged with
    /// [`Segments::acknowledge_committed`]: the engine commits these as committed lengths.
    /// Records appended before this call are durable when it returns Ok, and the lengths
    /// returned cover them, whichever caller's sync actually wrote them (two writers syncing
    /// at once each get lengths covering both). Any sync error poisons the handle: this call
    /// returns [`SegmentError::SyncFailed`] and every later append/sync returns
    /// [`SegmentError::Poisoned`] until reopen.
    pub fn sync(&self) -> Result<Vec<(SegmentId, u64)>, SegmentError> {
        self.check_poisoned()?;
        let _one_sync_at_a_time = lock(&self.sync_lock)?;
        self.check_poisoned()?;
        let (dirty, dir_dirty) = {
            let mut state = lock(&self.state)?;
            let dirty = std::mem::take(&mut state.dirty);
            let dir_dirty = std::mem::replace(&mut state.dir_dirty, false);
            (dirty, dir_dirty)
        };
        let mut synced = Vec::with_capacity(dirty.len());
        for (segment, (file, len)) in dirty {
            if let Err(e) = file.sync_data() {
                return Err(self.poison(self.path_of(segment), "fdatasync segment", e));
            }
            failpoint::hit("segment.after_sync");
            synced.push((segment, len));
        }
        if dir_dirty && let Err(e) = self.backend.sync_dir(&self.dir) {
            return Err(self.poison(self.dir.clone(), "fsync segment directory", e));
        }
        let mut state = lock(&self.state)?;
        for (segment, len) in synced {
            // A segment removed meanwhile (compaction) has nothing left to commit.
            if segment == state.active || state.sealed_lens.contains_key(&segment) {
                let durable = state.unacknowledged.entry(segment).or_insert(len);
                *durable = (*durable).max(len);
            }
        }
        Ok(state
            .unacknowledged
            .iter()
            .map(|(&segment, &len)| (segment, len))
            .collect())
    }

    /// Tells the handle that `lengths` (from [`Segments::sync`]) are now stored as committed
    /// lengths, so later syncs need not return them again. Lengths the caller never
    /// acknowledges are returned by every later sync until some commit carries them.
    pub fn acknowledge_committed(&self, lengths: &[(SegmentId, u64)]) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for &(segment, len) in lengths {
            if state
                .unacknowledged
                .get(&segment)
                .is_some_and(|d| *d <= len)
            {
                state.unacknowledged.remove(&segment);
            }
        }
    }

    /// Settles records appended earlier: `records` holds, per segment, how many of them the
    /// caller has now either indexed or given up on. Until then the segment has unsettled
    /// records ([`Segments::has_unsettled`]) and must not be compacted or removed.
    pub fn settle(&self, records: &BTreeMap<SegmentId, u64>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for (&segment, &n) in records {
            if let Some(left) = state.unsettled.get_mut(&segment) {
                *left = left.saturating_sub(n);
                if *left == 0 {
                    state.unsettled.remove(&segment);
                }
            }
        }
    }

    /// Whether records appended to `segment` are still waiting to be settled.
    pub fn has_unsettled(&self, segment: SegmentId) -> bool {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.unsettled.contains_key(&segment)
    }

    /// Every segment this handle knows (committed at open or created since), ascending.
    pub fn segment_ids(&self) -> Vec<SegmentId> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut ids: Vec<SegmentId> = state.sealed_lens.keys().copied().collect();
        ids.push(state.active);
        ids.sort_unstable();
        ids
    }

    /// Segment files found at open that were not in `committed` (left for fsck to judge).
    pub fn orphan_files(&self) -> Vec<PathBuf> {
        self.orphans.clone()
    }

    /// Committed segments whose uncommitted tail was cut off at open (for logs and fsck).
    pub fn truncated_at_open(&self) -> Vec<TruncatedTail> {
        self.truncated.clone()
    }

    /// The configuration this handle was opened with.
    pub fn config(&self) -> &SegmentConfig {
        &self.config
    }

    /// The on-disk length of a segment file (may exceed [`Segments::segment_len`] after a
    /// failed write).
    pub fn file_len(&self, segment: SegmentId) -> Result<u64, SegmentError> {
        let path = self.path_of(segment);
        match self.view(segment)? {
            View::Active(file, _) => file.len(),
            View::Sealed(reader, _) => reader.file.len(),
        }
        .map_err(|e| SegmentError::io(path, "stat segment", e))
    }

    /// The length this handle considers valid: for the active segment the end of the last
    /// appended record, for sealed ones their length at open or when they were sealed.
    pub fn segment_len(&self, segment: SegmentId) -> Result<u64, SegmentError> {
        let state = lock(&self.state)?;
        if segment == state.active {
            return Ok(state.active_len);
        }
        state
            .sealed_lens
            .get(&segment)
            .copied()
            .ok_or(SegmentError::UnknownSegment(segment))
    }

    /// Unlinks a sealed segment (after the index no longer points into it) and fsyncs the
    /// directory. Never the active one. Readers that already hold its mapping keep working;
    /// later reads of it fail with [`SegmentError::UnknownSegment`].
    pub fn remove_segment(&self, segment: SegmentId) -> Result<(), SegmentError> {
        self.check_poisoned()?;
        let path = self.path_of(segment);
        {
            let mut state = lock(&self.state)?;
            if segment == state.active {
                return Err(SegmentError::ActiveSegment(segment));
            }
            if !state.sealed_lens.contains_key(&segment) {
                return Err(SegmentError::UnknownSegment(segment));
            }
            if state.unsettled.contains_key(&segment) {
                return Err(SegmentError::Unsettled(segment));
            }
            self.backend
                .remove(&path)
                .map_err(|e| SegmentError::io(&path, "remove segment", e))?;
            state.sealed_lens.remove(&segment);
            state.dirty.remove(&segment);
            state.unacknowledged.remove(&segment);
            lock(&self.sealed)?.remove(&segment);
        }
        if let Err(e) = self.backend.sync_dir(&self.dir) {
            return Err(self.poison(self.dir.clone(), "fsync segment directory", e));
        }
        Ok(())
    }

    /// Cuts the file of `segment` back to `len` bytes and fdatasyncs it, when `segment` is the
    /// active one: fsck's repair of a torn segment, so that what is appended next follows its
    /// last whole record instead of the torn bytes. Returns `false` (and changes nothing) for a
    /// sealed segment: it may be mapped, so it is never cut while open, and nothing is appended
    /// to it; the bytes past its committed length are cut at its next open. `len` must lie
    /// between the file header and the end of the last appended record, and no record appended
    /// to the segment may be unsettled. A failed fdatasync poisons the handle.
    pub fn cut_active_tail(&self, segment: SegmentId, len: u64) -> Result<bool, SegmentError> {
        self.check_poisoned()?;
        let _one_sync_at_a_time = lock(&self.sync_lock)?;
        let mut state = lock(&self.state)?;
        self.check_poisoned()?;
        if segment != state.active {
            return Ok(false);
        }
        if len < FILE_HEADER_LEN_U64 || len > state.active_len {
            return Err(out_of_bounds(segment, 0, len, state.active_len));
        }
        if state.unsettled.contains_key(&segment) {
            return Err(SegmentError::Unsettled(segment));
        }
        let path = self.path_of(segment);
        state
            .active_file
            .set_len(len)
            .map_err(|e| SegmentError::io(&path, "cut torn segment tail", e))?;
        if let Err(e) = state.active_file.sync_data() {
            return Err(self.poison(path, "fdatasync after cutting a torn tail", e));
        }
        state.active_len = len;
        if let Some((_, dirty_len)) = state.dirty.get_mut(&segment) {
            *dirty_len = (*dirty_len).min(len);
        }
        if let Some(durable) = state.unacknowledged.get_mut(&segment) {
            *durable = (*durable).min(len);
        }
        Ok(true)
    }

    /// The segment appends currently go to.
    pub fn active_segment(&self) -> SegmentId {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).active
    }

    /// Seals the active segment now and starts a new one (compaction never rewrites the
    /// active segment, so it seals it first). Returns the new active id. The new file is
    /// durable after the next [`Segments::sync`], which reports it with its header length.
    pub fn seal_active(&self) -> Result<SegmentId, SegmentError> {
        self.check_poisoned()?;
        let mut state = lock(&self.state)?;
        self.check_poisoned()?;
        self.roll(&mut state)?;
        Ok(state.active)
    }

    /// The storage backend this handle reads and writes through.
    pub fn backend(&self) -> &Arc<dyn SegmentBackend> {
        &self.backend
    }

    /// The directory holding the segment files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// True after a sync failure: appends and syncs are refused until reopen.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Segments>();
    }
}
