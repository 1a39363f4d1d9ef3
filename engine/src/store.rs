//! The one place that opens a store: the data-dir lock, the index and the segments.
//!
//! Layout of a data dir: `LOCK` (holds the owner's pid), `index.redb`, `segments/seg-*.nms`
//! (and, only while a new store's index is being created, `index.redb.new`).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use net_mesh_segments::{SegmentBackend, SegmentConfig, SegmentId, Segments};

use crate::chunking::ChunkingStrategy;
use crate::codec::{BlobRef, Hash};
use crate::error::{OpenError, StoreError};
use crate::in_flight::InFlight;
use crate::index::extension::{
    Extension, ExtensionError, ExtensionOp, ExtensionReader, Extensions,
};
use crate::index::{
    BadPinRow, Batch, ChannelInfo, CommitOutcome, DEFAULT_CHANNEL, Index, IndexError, IndexReader,
    Pin, PinListing, PinName, Unpinned, blob_id, check_channel_name, check_pin_name,
};
use crate::storage::StoreBackends;
use crate::tree::TreePolicy;

/// How a store writes. Reads do not depend on it: every blob carries its own shape.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub chunking: ChunkingStrategy,
    pub tree: TreePolicy,
    /// A segment file is sealed and a new one started past this size.
    pub segment_roll_size: u64,
    /// Payload bytes appended between two durable commits (fdatasync + one index transaction).
    pub batch_bytes: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            chunking: ChunkingStrategy::default(),
            tree: TreePolicy::default(),
            segment_roll_size: 256 * 1024 * 1024,
            batch_bytes: 32 * 1024 * 1024,
        }
    }
}

/// Counters of objects read, for tests and operators.
#[derive(Debug, Default)]
pub struct ReadStats {
    pub node_reads: AtomicU64,
    pub chunk_reads: AtomicU64,
}

impl ReadStats {
    /// (node reads, chunk reads) so far.
    pub fn get(&self) -> (u64, u64) {
        (
            self.node_reads.load(Ordering::Relaxed),
            self.chunk_reads.load(Ordering::Relaxed),
        )
    }

    pub fn reset(&self) {
        self.node_reads.store(0, Ordering::Relaxed);
        self.chunk_reads.store(0, Ordering::Relaxed);
    }
}

/// An open store. Many readers and writers may share it (`&Store`); it is `Send + Sync`.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    pub(crate) config: StoreConfig,
    pub(crate) index: Index,
    pub(crate) segments: Segments,
    pub(crate) poisoned: AtomicBool,
    pub(crate) stats: ReadStats,
    /// Objects live uploads rely on that the index does not anchor yet; GC keeps them.
    pub(crate) in_flight: InFlight,
    /// One GC (or chunk removal) at a time; writers never wait on it.
    pub(crate) gc_run: Mutex<()>,
    /// Held for the store's lifetime; the OS lock is released when the file is closed.
    _lock: File,
}

/// Takes the data dir's exclusive lock and records our pid in it. The lock file is an OS lock
/// and always lives on the real filesystem, whatever the store's backends.
fn lock_dir(dir: &Path) -> Result<File, OpenError> {
    let path = dir.join("LOCK");
    let io = |op, source| OpenError::Io {
        op,
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(|e| io("create directory of lock file", e))?;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| io("open lock file", e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut pid = String::new();
            // Best effort: the owner writes its pid right after locking.
            let _ = file.read_to_string(&mut pid);
            let pid = pid.trim().to_string();
            let pid = if pid.is_empty() {
                "unknown".to_string()
            } else {
                pid
            };
            return Err(OpenError::Locked {
                dir: dir.to_path_buf(),
                pid,
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io("lock", e)),
    }
    file.set_len(0).map_err(|e| io("truncate lock file", e))?;
    file.seek(SeekFrom::Start(0))
        .map_err(|e| io("seek lock file", e))?;
    writeln!(file, "{}", std::process::id()).map_err(|e| io("write lock file", e))?;
    Ok(file)
}

/// Creates `dir` and its missing ancestors, fsyncing the parent of each directory created so
/// that a power cut cannot take the new data dir away with everything in it.
fn create_dir_durably(files: &dyn SegmentBackend, dir: &Path) -> std::io::Result<()> {
    let mut missing = Vec::new();
    let mut at = dir;
    while files.list_dir(at).is_err() {
        missing.push(at);
        match at.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => at = parent,
            _ => break,
        }
    }
    files.create_dir_all(dir)?;
    for created in missing.into_iter().rev() {
        match created.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => files.sync_dir(parent)?,
            _ => files.sync_dir(Path::new("."))?,
        }
    }
    Ok(())
}

fn file_exists(files: &dyn SegmentBackend, path: &Path) -> std::io::Result<bool> {
    match files.open(path, false) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Creates the index so that `index.redb` appears whole or not at all: the database is created
/// and initialised as `index.redb.new` (its first commit is synced), closed, and renamed into
/// place; the caller then fsyncs the data dir. A power cut while redb writes a new file's first
/// pages would otherwise leave an `index.redb` that is not a database, and the store unopenable.
fn create_index(
    files: &dyn SegmentBackend,
    storage: &dyn crate::storage::IndexStorage,
    dir: &Path,
    index_path: &Path,
) -> Result<(), OpenError> {
    let tmp = dir.join("index.redb.new");
    let io = |op, path: &Path| {
        let path = path.to_path_buf();
        move |source| OpenError::Io { op, path, source }
    };
    match files.remove(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("remove unfinished index", &tmp)(e)),
    }
    drop(Index::open_on(storage, &tmp, Extensions::default(), false)?);
    files
        .rename(&tmp, index_path)
        .map_err(io("rename new index into place", index_path))
}

/// What an open may write to an existing store (a new one is always created).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteMode {
    /// Everything: the usual open (it cuts uncommitted segment tails, starts a segment file).
    Writable,
    /// Nothing: the index is opened read-only when it needs no setting up, uncommitted segment
    /// tails stay in place, no segment file is created ([`SegmentConfig::read_only`]), and every
    /// later write is refused.
    ReadOnly,
    /// [`WriteMode::ReadOnly`] for the segment files, but the index is writable (fsck
    /// `--read-data` without `--repair` records its data cursor there).
    SegmentsReadOnly,
}

/// How a store is opened: how it writes, the backends it lives on, and the extensions that keep
/// tables and holds in its index (see [`crate::index::extension`]).
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    pub config: StoreConfig,
    /// Real files by default; tests substitute fault-injecting or power-loss backends. The
    /// `LOCK` file is always taken on the real filesystem, in the data dir.
    pub backends: StoreBackends,
    pub extensions: Vec<Arc<dyn Extension>>,
}

impl OpenOptions {
    pub fn new(config: StoreConfig) -> OpenOptions {
        OpenOptions {
            config,
            ..OpenOptions::default()
        }
    }

    /// Adds an extension.
    pub fn extension(mut self, extension: Arc<dyn Extension>) -> OpenOptions {
        self.extensions.push(extension);
        self
    }
}

impl Store {
    /// Opens the store in `dir`, creating it if needed, with no extensions. Fails with
    /// [`OpenError::Locked`] when another process has it open.
    pub fn open(dir: &Path, config: StoreConfig) -> Result<Store, OpenError> {
        Self::open_with(dir, OpenOptions::new(config))
    }

    /// Opens the store in `dir` as `options` say (the one place a store is opened).
    pub fn open_with(dir: &Path, options: OpenOptions) -> Result<Store, OpenError> {
        Self::open_inner(dir, options, WriteMode::Writable, |_, _, committed| {
            committed
        })
    }

    /// [`Store::open_with`], letting `screen` adjust the committed segment set before the
    /// segment files are opened (fsck drops missing or damaged segments instead of failing,
    /// or, when repairing, rewrites a damaged file header through the store's backend).
    /// `mode` says what the open may write (fsck without `--repair` writes nothing).
    pub(crate) fn open_screened(
        dir: &Path,
        options: OpenOptions,
        mode: WriteMode,
        screen: impl FnOnce(
            &dyn SegmentBackend,
            &Path,
            BTreeMap<SegmentId, u64>,
        ) -> BTreeMap<SegmentId, u64>,
    ) -> Result<Store, OpenError> {
        Self::open_inner(dir, options, mode, screen)
    }

    fn open_inner(
        dir: &Path,
        options: OpenOptions,
        mode: WriteMode,
        screen: impl FnOnce(
            &dyn SegmentBackend,
            &Path,
            BTreeMap<SegmentId, u64>,
        ) -> BTreeMap<SegmentId, u64>,
    ) -> Result<Store, OpenError> {
        let OpenOptions {
            config,
            backends,
            extensions,
        } = options;
        let extensions = Extensions::new(extensions).map_err(IndexError::from)?;
        config
            .chunking
            .validate()
            .map_err(|e| OpenError::Config(e.to_string()))?;
        config
            .tree
            .validate()
            .map_err(|e| OpenError::Config(e.to_string()))?;
        let files = backends.files;
        let io = |op, path: &Path| {
            let path = path.to_path_buf();
            move |source| OpenError::Io { op, path, source }
        };
        create_dir_durably(files.as_ref(), dir).map_err(io("create", dir))?;
        let lock = lock_dir(dir)?;
        let index_path = dir.join("index.redb");
        if !file_exists(files.as_ref(), &index_path).map_err(io("open", &index_path))? {
            create_index(files.as_ref(), backends.index.as_ref(), dir, &index_path)?;
        }
        let index = Index::open_on(
            backends.index.as_ref(),
            &index_path,
            extensions,
            mode == WriteMode::ReadOnly,
        )?;
        let committed: BTreeMap<SegmentId, u64> = index
            .segments()?
            .into_iter()
            .map(|(id, e)| (id, e.committed_len))
            .collect();
        let seg_dir = dir.join("segments");
        files
            .create_dir_all(&seg_dir)
            .map_err(io("create", &seg_dir))?;
        // `index.redb` and `segments/` are entries of the data dir: without this fsync a power
        // cut can lose them (and every commit in them) even after their own contents were
        // synced. Done at every open, so entries a crashed earlier open created become durable.
        files
            .sync_dir(dir)
            .map_err(io("fsync data directory", dir))?;
        // A segment screened out below keeps its id: no new file may take it.
        let new_ids_from = committed
            .keys()
            .next_back()
            .map_or(0, |max| max.saturating_add(1));
        let seg_config = SegmentConfig {
            roll_size: config.segment_roll_size,
            new_ids_from,
            read_only: mode != WriteMode::Writable,
            ..SegmentConfig::default()
        };
        let committed = screen(files.as_ref(), &seg_dir, committed);
        let segments = Segments::open_with_backend(&seg_dir, seg_config, &committed, files)?;
        Ok(Store {
            dir: dir.to_path_buf(),
            config,
            index,
            segments,
            poisoned: AtomicBool::new(false),
            stats: ReadStats::default(),
            in_flight: InFlight::default(),
            gc_run: Mutex::new(()),
            _lock: lock,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    pub fn stats(&self) -> &ReadStats {
        &self.stats
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    pub fn segments(&self) -> &Segments {
        &self.segments
    }

    pub fn reader(&self) -> Result<IndexReader, IndexError> {
        self.index.reader()
    }

    pub(crate) fn check_writable(&self) -> Result<(), StoreError> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(StoreError::Poisoned);
        }
        Ok(())
    }

    /// Makes appended bytes durable, then commits `batch` in one index transaction, carrying
    /// every durable segment length not yet committed (so no length is lost whatever happens
    /// to another writer's commit). The records the batch appended are settled whether the
    /// commit succeeds or not. A refusal decided inside the transaction (see
    /// [`IndexError::is_refusal`]) leaves the handle usable; any other failure poisons it:
    /// the kernel may have dropped dirty pages (fsyncgate).
    pub(crate) fn commit_batch(&self, batch: Batch) -> Result<CommitOutcome, StoreError> {
        self.commit_batch_after_sync_failpoint(batch, "engine.after_segment_sync")
    }

    /// [`Store::commit_batch`] with the name of the failpoint hit between sync and commit.
    pub(crate) fn commit_batch_after_sync_failpoint(
        &self,
        mut batch: Batch,
        failpoint: &str,
    ) -> Result<CommitOutcome, StoreError> {
        let appended = batch.appended_records();
        let result = self.check_writable().and_then(|()| {
            batch.segment_lengths = self.segments.sync()?;
            net_mesh_segments::failpoint::hit(failpoint);
            Ok(self.index.commit(&batch)?)
        });
        self.segments.settle(&appended);
        match &result {
            Ok(_) => self.segments.acknowledge_committed(&batch.segment_lengths),
            Err(StoreError::Index(e)) if e.is_refusal() => {}
            Err(StoreError::Poisoned) => {}
            Err(_) => self.poisoned.store(true, Ordering::Release),
        }
        match result {
            Err(StoreError::Index(IndexError::NoSuchChannel(name))) => {
                Err(StoreError::NoSuchChannel(name))
            }
            other => other,
        }
    }

    /// Pins `blob_ref` under `name` in channel `default` ([`Store::pin_in`]).
    pub fn pin(&self, blob_ref: &BlobRef, name: &str) -> Result<Hash, StoreError> {
        self.pin_in(DEFAULT_CHANNEL, blob_ref, name)
    }

    /// Pins `blob_ref` under `name` in `channel` (a no-op if it is pinned there already; a
    /// pin in another channel is another reference). Its objects must exist. A bad channel
    /// name ([`StoreError::ChannelName`]), a name longer than
    /// [`MAX_PIN_NAME`](crate::index::MAX_PIN_NAME) bytes, and a channel the store does not
    /// have ([`StoreError::NoSuchChannel`]) are refused and change nothing.
    pub fn pin_in(
        &self,
        channel: &str,
        blob_ref: &BlobRef,
        name: &str,
    ) -> Result<Hash, StoreError> {
        check_channel_name(channel)?;
        check_pin_name(name)?;
        let mut batch = Batch::default();
        batch.pins_add.push(Pin {
            channel: channel.to_string(),
            blob_ref: blob_ref.clone(),
            name: name.to_string(),
            created_unix_ms: now_ms(),
        });
        self.commit_batch(batch)?;
        Ok(blob_id(blob_ref))
    }

    /// [`Store::pin_in`] under `name`: a name the user gave also renames the blob's pin if
    /// `channel` pins it already, keeping its creation time ([`PinName`]); a default name
    /// never replaces the pin's name. Returns the blob's id.
    pub fn pin_named_in(
        &self,
        channel: &str,
        blob_ref: &BlobRef,
        name: &PinName,
    ) -> Result<Hash, StoreError> {
        check_channel_name(channel)?;
        check_pin_name(&name.name)?;
        let pin = Pin {
            channel: channel.to_string(),
            blob_ref: blob_ref.clone(),
            name: name.name.clone(),
            created_unix_ms: now_ms(),
        };
        let mut batch = Batch::default();
        if name.given {
            batch.pins_rename.push(pin.clone());
        }
        batch.pins_add.push(pin);
        self.commit_batch(batch)?;
        Ok(blob_id(blob_ref))
    }

    /// The name of blob `blob_ref`'s pin in `channel`, if the channel pins it.
    pub fn pin_name_in(
        &self,
        channel: &str,
        blob_ref: &BlobRef,
    ) -> Result<Option<String>, StoreError> {
        Ok(self
            .index
            .reader()?
            .pin_in(channel, &blob_id(blob_ref))?
            .map(|pin| pin.name))
    }

    /// Unpins the blob with id `id` from channel `default` ([`Store::unpin_in`]).
    pub fn unpin(&self, id: &Hash) -> Result<Unpinned, StoreError> {
        self.unpin_in(DEFAULT_CHANNEL, id)
    }

    /// Unpins the blob with id `id` from `channel` (space is reclaimed by GC once no channel
    /// pins it and nothing else references it). A pin row that does not decode is removed
    /// too, without lowering any count ([`Unpinned::RemovedUndecodable`]).
    pub fn unpin_in(&self, channel: &str, id: &Hash) -> Result<Unpinned, StoreError> {
        check_channel_name(channel)?;
        let mut batch = Batch::default();
        batch.pins_remove.push((channel.to_string(), *id));
        let outcome = self.commit_batch(batch)?;
        Ok(if !outcome.pins_removed_undecodable.is_empty() {
            Unpinned::RemovedUndecodable
        } else if outcome.pins_removed > 0 {
            Unpinned::Removed
        } else {
            Unpinned::NotPinned
        })
    }

    /// Creates channel `name`; returns false when it exists already (nothing changes).
    pub fn create_channel(&self, name: &str) -> Result<bool, StoreError> {
        check_channel_name(name)?;
        let outcome = self.commit_batch(Batch {
            channels_create: vec![name.to_string()],
            ..Batch::default()
        })?;
        Ok(outcome.channels_created > 0)
    }

    /// Every channel in name order, with its creation time and pin rows.
    pub fn channels(&self) -> Result<Vec<ChannelInfo>, StoreError> {
        Ok(self.index.reader()?.channels()?)
    }

    /// Whether channel `name` exists (a snapshot answer; a pin into it is checked again in
    /// its commit).
    pub fn has_channel(&self, name: &str) -> Result<bool, StoreError> {
        check_channel_name(name)?;
        Ok(self.index.reader()?.channel(name)?.is_some())
    }

    /// Commits extension changes on their own, in one index transaction (e.g. staging's begin
    /// or abort of an upload). Refusals leave the store usable.
    pub fn commit_ops(&self, ops: Vec<Box<dyn ExtensionOp>>) -> Result<CommitOutcome, StoreError> {
        self.commit_batch(Batch {
            extension_ops: ops,
            ..Batch::default()
        })
    }

    /// Pins `pins` (blob ref, name) in `channel`, unpins the blob ids `unpins` from it, and
    /// commits `ops` with them, all in one index transaction (e.g. a replicated channel's log
    /// entry together with its applied index). Checks as [`Store::pin_in`] and
    /// [`Store::unpin_in`]; a pin of missing objects or an op's refusal refuses the whole
    /// transaction and leaves the store usable.
    pub fn commit_pin_changes(
        &self,
        channel: &str,
        pins: &[(BlobRef, String)],
        unpins: &[Hash],
        ops: Vec<Box<dyn ExtensionOp>>,
    ) -> Result<CommitOutcome, StoreError> {
        check_channel_name(channel)?;
        let created_unix_ms = now_ms();
        let mut pins_add = Vec::with_capacity(pins.len());
        for (blob_ref, name) in pins {
            check_pin_name(name)?;
            pins_add.push(Pin {
                channel: channel.to_string(),
                blob_ref: blob_ref.clone(),
                name: name.clone(),
                created_unix_ms,
            });
        }
        self.commit_batch(Batch {
            pins_add,
            pins_remove: unpins.iter().map(|id| (channel.to_string(), *id)).collect(),
            extension_ops: ops,
            ..Batch::default()
        })
    }

    /// Reads the tables of extension `namespace` from one snapshot.
    pub fn read_extension<T>(
        &self,
        namespace: &'static str,
        read: impl FnOnce(&ExtensionReader<'_>) -> Result<T, ExtensionError>,
    ) -> Result<T, StoreError> {
        let txn = self.index.db().begin_read().map_err(IndexError::from)?;
        read(&ExtensionReader::new(&txn, namespace)).map_err(|e| StoreError::Index(e.into()))
    }

    /// Every pin of every channel with its blob id, in (channel, id) order (each [`Pin`]
    /// names its channel), and apart from them the pin rows that do not decode (one damaged
    /// row never hides the others).
    pub fn pins(&self) -> Result<PinListing, StoreError> {
        Ok(self.index.reader()?.pin_listing()?)
    }

    /// The pins of `channel`, in id order, as [`Store::pins`] lists them.
    pub fn pins_in(&self, channel: &str) -> Result<PinListing, StoreError> {
        check_channel_name(channel)?;
        Ok(self.index.reader()?.pin_listing_in(channel)?)
    }

    /// How many pin rows the store holds, in every channel ([`IndexReader::pin_rows`]).
    pub fn pin_rows(&self) -> Result<u64, StoreError> {
        Ok(self.index.reader()?.pin_rows()?)
    }

    /// The pins of `channel` in id order, handed to `f` one at a time as they are read (a row
    /// that does not decode as `Err`, in its place) until `f` breaks: a channel of any size
    /// lists in constant memory ([`IndexReader::for_each_pin_in`]).
    pub fn for_each_pin_in(
        &self,
        channel: &str,
        f: &mut dyn FnMut(Result<(Hash, Pin), BadPinRow>) -> std::ops::ControlFlow<()>,
    ) -> Result<std::ops::ControlFlow<()>, StoreError> {
        check_channel_name(channel)?;
        Ok(self.index.reader()?.for_each_pin_in(channel, f)?)
    }

    /// Finds a blob pinned in channel `default` by its id's hex prefix ([`Store::find_pin_in`]).
    pub fn find_pin(&self, id_prefix: &str) -> Result<(Hash, Pin), StoreError> {
        self.find_pin_in(DEFAULT_CHANNEL, id_prefix)
    }

    /// Finds a blob pinned in `channel` by its id's hex prefix (at least 4 characters). A
    /// prefix of a row that does not decode gives [`StoreError::PinUndecodable`], which names
    /// the row's full id.
    pub fn find_pin_in(&self, channel: &str, id_prefix: &str) -> Result<(Hash, Pin), StoreError> {
        let want = id_prefix.to_ascii_lowercase();
        if want.len() < 4 || want.len() > 64 || !want.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(StoreError::BadPrefix(id_prefix.to_string()));
        }
        check_channel_name(channel)?;
        // Only the rows whose ids start with the prefix are read: the prefix padded with zero
        // bits is the first such id, padded with one bits the last.
        let (mut first, mut last) = ([0u8; 32], [0xffu8; 32]);
        for (i, digit) in want.bytes().enumerate() {
            let value = char::from(digit).to_digit(16).unwrap_or(0) as u8;
            let shift = if i % 2 == 0 { 4 } else { 0 };
            if let (Some(lo), Some(hi)) = (first.get_mut(i / 2), last.get_mut(i / 2)) {
                *lo = (*lo & !(0x0f << shift)) | (value << shift);
                *hi = (*hi & !(0x0f << shift)) | (value << shift);
            }
        }
        let mut found = Vec::with_capacity(2);
        let reader = self.index.reader()?;
        // Two rows are enough to know the prefix is ambiguous.
        let _enough = reader.for_each_pin_between(channel, &first, &last, &mut |row| {
            found.push(row);
            if found.len() < 2 {
                std::ops::ControlFlow::Continue(())
            } else {
                std::ops::ControlFlow::Break(())
            }
        })?;
        let mut found = found.into_iter();
        match (found.next(), found.next()) {
            (Some(Ok(hit)), None) => Ok(hit),
            (Some(Err(bad)), None) => Err(StoreError::PinUndecodable {
                id: bad.id,
                source: bad.error,
            }),
            (None, _) => Err(StoreError::NotPinned(id_prefix.to_string())),
            (Some(_), Some(_)) => Err(StoreError::Ambiguous(id_prefix.to_string())),
        }
    }

    /// The id of the pin row `id_text` names in channel `default` ([`Store::find_pin_id_in`]).
    pub fn find_pin_id(&self, id_text: &str) -> Result<Hash, StoreError> {
        self.find_pin_id_in(DEFAULT_CHANNEL, id_text)
    }

    /// The id of the pin row `id_text` names in `channel`: a hex prefix (at least 4
    /// characters) of a pinned blob's id, as [`Store::find_pin_in`] takes, or the full id (64
    /// characters) of any pin row of the channel — also one that does not decode, which is
    /// how such a row is named to unpin it.
    pub fn find_pin_id_in(&self, channel: &str, id_text: &str) -> Result<Hash, StoreError> {
        match self.find_pin_in(channel, id_text) {
            Ok((id, _)) => Ok(id),
            Err(StoreError::PinUndecodable { id, .. }) if id_text.len() == 64 => Ok(id),
            Err(e) => Err(e),
        }
    }
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
