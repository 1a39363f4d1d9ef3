//! Offline consistency check and repair of a store (`net-mesh fsck`).
//!
//! [`fsck`] opens the store itself (taking its lock), tolerating missing, short or damaged
//! segment files, then checks in phases — each finding is a [`Problem`] with a kind and a
//! location:
//! 1. segment files: present, valid file header, at least their committed length; framing of
//!    every record up to the committed length; segment files the index does not know (orphans);
//! 2. index ↔ segments: each object entry names a record whose header has the same kind, id
//!    and length; framed records no entry points at are listed as `orphan_record` (info: dead
//!    bytes waiting for compaction);
//! 3. every tree node is read, hashed and decoded;
//! 4. reference counts recomputed from the definition (docs/FORMAT.md §3.6: parent entries of
//!    every indexed node + pins) against the stored counts; reachability from the pinned roots
//!    (objects a pinned blob needs but the index lacks);
//! 5. live bytes of each segment recomputed from the entries;
//! 6. with `--read-data` / `--read-data-subset`, every (or a random subset of) chunk is read
//!    and hashed on two threads, in on-disk order starting at a persisted cursor
//!    (`fsck_cursor_v1`, docs/FORMAT.md §3.8) so that `--max-duration` runs cover the whole
//!    store over time.
//!
//! `repair` then fixes what can be fixed without losing data: drops entries whose bytes are gone
//! or corrupt (reporting the pinned blobs that needed them), rewrites counts and live bytes,
//! lowers the committed length of a truncated segment to its last whole record, drops the entry
//! of a segment whose file is gone, removes orphan files.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use net_mesh_segments::codec::FILE_HEADER_LEN;
use net_mesh_segments::{
    FileHeader, RecordKind, RecordLoc, SegmentError, SegmentId, parse_segment_file_name,
    segment_file_name,
};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;

use crate::codec::{Hash, chunk_id};
use crate::error::{BlobError, OpenError, hex};
use crate::gc::{decode_internal, decode_leaf};
use crate::index::{
    IndexError, LOST_REFS, OBJECTS, ObjectEntry, SEGMENTS, SegmentEntry, encode_lost_refs,
    pin_roots,
};
use crate::store::{Store, StoreConfig, now_ms};

const FILE_HEADER: u64 = FILE_HEADER_LEN as u64;

/// The fsck data cursor table (docs/FORMAT.md §3.8).
const FSCK_CURSOR: TableDefinition<&str, &[u8]> = TableDefinition::new("fsck_cursor_v1");
const CURSOR_KEY: &str = "read_data";
/// Size of an encoded [`DataCursor`].
pub const FSCK_CURSOR_LEN: usize = 33;
const CURSOR_VERSION: u8 = 1;
/// Orphan records (info) listed one by one; the rest are only counted in the stats.
pub const MAX_LISTED_ORPHAN_RECORDS: u64 = 1000;

/// Which chunk payloads to read and hash.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReadData {
    /// Only headers and nodes (chunks are not read).
    None,
    /// Every chunk.
    All,
    /// A random subset of about this percentage (0–100) of the chunks.
    Subset(f64),
}

/// What fsck does.
#[derive(Debug, Clone)]
pub struct FsckOptions {
    pub read_data: ReadData,
    /// Stop reading data after this long; the next run continues where this one stopped.
    pub max_duration: Option<Duration>,
    pub repair: bool,
    /// Hashing threads for the data phase.
    pub threads: usize,
}

impl Default for FsckOptions {
    fn default() -> Self {
        FsckOptions {
            read_data: ReadData::None,
            max_duration: None,
            repair: false,
            threads: 2,
        }
    }
}

/// What kind of damage a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// A committed segment's file does not exist.
    SegmentMissing,
    /// A segment file is shorter than its committed length.
    SegmentTruncated,
    /// A segment file's header is invalid (or names another segment).
    SegmentHeaderCorrupt,
    /// A record header inside the committed length does not frame.
    SegmentFraming,
    /// A segment file the index does not know.
    OrphanFile,
    /// An object entry points at bytes that are not there (or at another record).
    ObjectBytesMissing,
    /// An object's bytes do not hash to its id.
    ObjectCorrupt,
    /// A node hashes correctly but does not decode.
    NodeUndecodable,
    /// A pinned blob or an indexed node names an object the index does not have.
    MissingObject,
    /// Stored reference count differs from the recomputed one.
    RefcountMismatch,
    /// Stored live bytes of a segment differ from the sum over its entries.
    LiveBytesMismatch,
    /// A framed record no entry points at (dead bytes awaiting compaction; informational).
    OrphanRecord,
}

/// How serious a problem is. `Info` does not count as a problem for the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Error,
    Warning,
    Info,
}

/// Where a problem is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Location {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segment: Option<SegmentId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub kind: ProblemKind,
    pub severity: Severity,
    pub location: Location,
    pub detail: String,
    /// Set when `--repair` fixed it.
    pub repaired: bool,
}

/// A pinned blob that needs an object whose bytes are gone, corrupt or unindexed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AffectedBlob {
    pub blob_id: String,
    pub name: String,
    pub blob_ref: String,
}

/// How far the data phase got.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DataProgress {
    pub mode: String,
    /// Chunks selected for reading this run.
    pub selected: u64,
    pub checked: u64,
    pub checked_bytes: u64,
    /// True when every selected chunk was read (no `--max-duration` stop).
    pub complete: bool,
    /// Where this run started and where the next will start (segment, offset).
    pub started_at: (SegmentId, u64),
    pub next_at: (SegmentId, u64),
    /// Full passes over the store's data completed so far (persisted).
    pub passes_completed: u64,
}

/// Counts of what was checked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FsckStats {
    pub segments: u64,
    pub records: u64,
    pub objects: u64,
    pub chunks: u64,
    pub nodes: u64,
    pub pins: u64,
    pub orphan_records: u64,
    pub orphan_record_bytes: u64,
}

/// Everything fsck found and did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FsckReport {
    pub problems: Vec<Problem>,
    pub affected_blobs: Vec<AffectedBlob>,
    /// What `--repair` did, one line each.
    pub repairs: Vec<String>,
    pub stats: FsckStats,
    pub data: DataProgress,
}

impl FsckReport {
    /// Problems that count for the exit code (not `Info`).
    pub fn problem_count(&self) -> usize {
        self.problems
            .iter()
            .filter(|p| p.severity != Severity::Info)
            .count()
    }

    /// Problems still present after this run (not repaired, not `Info`).
    pub fn unrepaired_count(&self) -> usize {
        self.problems
            .iter()
            .filter(|p| p.severity != Severity::Info && !p.repaired)
            .count()
    }

    fn push(&mut self, kind: ProblemKind, severity: Severity, location: Location, detail: String) {
        self.problems.push(Problem {
            kind,
            severity,
            location,
            detail,
            repaired: false,
        });
    }

    fn mark_repaired(&mut self, kind: ProblemKind, pred: impl Fn(&Location) -> bool) {
        for p in &mut self.problems {
            if p.kind == kind && pred(&p.location) {
                p.repaired = true;
            }
        }
    }
}

/// Why fsck could not run.
#[derive(Debug, thiserror::Error)]
pub enum FsckError {
    #[error("opening the store: {0}")]
    Open(#[from] OpenError),
    #[error("index: {0}")]
    Index(#[from] IndexError),
    #[error("segments: {0}")]
    Segments(#[from] SegmentError),
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

macro_rules! redb_into_fsck {
    ($($t:ty),*) => {$(
        impl From<$t> for FsckError {
            fn from(e: $t) -> Self {
                FsckError::Index(IndexError::from(e))
            }
        }
    )*};
}
redb_into_fsck!(
    redb::Error,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// The persisted data cursor: the next (segment, offset) to read and full passes so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DataCursor {
    pub segment: SegmentId,
    pub offset: u64,
    pub passes_completed: u64,
    pub updated_unix_ms: u64,
}

impl DataCursor {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(FSCK_CURSOR_LEN);
        out.push(CURSOR_VERSION);
        out.extend_from_slice(&self.segment.to_le_bytes());
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.passes_completed.to_le_bytes());
        out.extend_from_slice(&self.updated_unix_ms.to_le_bytes());
        out
    }

    /// None for a malformed value (fsck then starts from the beginning).
    pub fn decode(bytes: &[u8]) -> Option<DataCursor> {
        if bytes.len() != FSCK_CURSOR_LEN || bytes.first() != Some(&CURSOR_VERSION) {
            return None;
        }
        let u = |at: usize| -> Option<u64> {
            Some(u64::from_le_bytes(
                bytes.get(at..at.checked_add(8)?)?.try_into().ok()?,
            ))
        };
        Some(DataCursor {
            segment: u(1)?,
            offset: u(9)?,
            passes_completed: u(17)?,
            updated_unix_ms: u(25)?,
        })
    }
}

/// What the tolerant open found wrong with committed segment files.
#[derive(Debug, Clone)]
enum SegmentIssue {
    Missing,
    HeaderCorrupt(String),
    /// Opened with the file's length instead of the committed one.
    Truncated {
        file_len: u64,
    },
}

fn screen_segments(
    seg_dir: &Path,
    committed: BTreeMap<SegmentId, u64>,
    issues: &mut BTreeMap<SegmentId, SegmentIssue>,
) -> BTreeMap<SegmentId, u64> {
    let mut out = BTreeMap::new();
    for (id, committed_len) in committed {
        let path = seg_dir.join(segment_file_name(id));
        let Ok(meta) = std::fs::metadata(&path) else {
            issues.insert(id, SegmentIssue::Missing);
            continue;
        };
        let mut header = [0u8; FILE_HEADER_LEN];
        let read = std::fs::File::open(&path).and_then(|mut f| {
            use std::io::Read;
            f.read_exact(&mut header)
        });
        let verdict = match read {
            Err(e) => Err(format!("cannot read header: {e}")),
            Ok(()) => match FileHeader::decode(&header) {
                Ok(h) if h.segment == id => Ok(()),
                Ok(h) => Err(format!("header names segment {}", h.segment)),
                Err(e) => Err(e.to_string()),
            },
        };
        if let Err(reason) = verdict {
            issues.insert(id, SegmentIssue::HeaderCorrupt(reason));
            continue;
        }
        if committed_len < FILE_HEADER {
            issues.insert(
                id,
                SegmentIssue::HeaderCorrupt(format!("committed length {committed_len}")),
            );
            continue;
        }
        if meta.len() < committed_len {
            issues.insert(
                id,
                SegmentIssue::Truncated {
                    file_len: meta.len(),
                },
            );
            out.insert(id, meta.len());
        } else {
            out.insert(id, committed_len);
        }
    }
    out
}

fn seg_loc(segment: SegmentId) -> Location {
    Location {
        segment: Some(segment),
        ..Location::default()
    }
}

fn obj_loc(hash: &Hash, loc: RecordLoc) -> Location {
    Location {
        segment: Some(loc.segment),
        offset: Some(loc.offset),
        object: Some(hex(hash)),
        path: None,
    }
}

/// A framed record: kind, id, payload length.
type Framed = (RecordKind, Hash, u32);

/// State carried between the phases.
struct Checker<'a> {
    store: &'a Store,
    options: &'a FsckOptions,
    report: FsckReport,
    index_segments: BTreeMap<SegmentId, SegmentEntry>,
    issues: BTreeMap<SegmentId, SegmentIssue>,
    /// End of the last whole record of each scanned segment.
    framed_end: BTreeMap<SegmentId, u64>,
    records: HashMap<(SegmentId, u64), Framed>,
    objects: Vec<(Hash, ObjectEntry)>,
    /// Entries whose bytes are gone or corrupt (dropped by repair).
    bad: HashMap<Hash, ObjectEntry>,
    /// Children (one per entry) of every node that read, verified and decoded.
    children: HashMap<Hash, Vec<Hash>>,
    expected: HashMap<Hash, u64>,
    orphans: Vec<PathBuf>,
}

/// Runs fsck on the store in `dir` (takes the store's lock; the store must not be open
/// elsewhere).
pub fn fsck(
    dir: &Path,
    config: StoreConfig,
    options: &FsckOptions,
) -> Result<FsckReport, FsckError> {
    let mut issues = BTreeMap::new();
    let store = Store::open_screened(dir, config, |seg_dir, committed| {
        screen_segments(seg_dir, committed, &mut issues)
    })?;
    let mut checker = Checker {
        store: &store,
        options,
        report: FsckReport::default(),
        index_segments: store.index.segments()?,
        issues,
        framed_end: BTreeMap::new(),
        records: HashMap::new(),
        objects: Vec::new(),
        bad: HashMap::new(),
        children: HashMap::new(),
        expected: HashMap::new(),
        orphans: Vec::new(),
    };
    checker.segments()?;
    checker.objects()?;
    checker.nodes();
    checker.counts()?;
    checker.data()?;
    checker.refresh_affected()?;
    if options.repair {
        checker.repair()?;
    }
    Ok(checker.report)
}

impl Checker<'_> {
    /// Phase 1: segment files and framing.
    fn segments(&mut self) -> Result<(), FsckError> {
        self.report.stats.segments = self.index_segments.len() as u64;
        for (id, issue) in &self.issues {
            let path = self
                .store
                .segments
                .dir()
                .join(segment_file_name(*id))
                .display()
                .to_string();
            let committed = self
                .index_segments
                .get(id)
                .map(|e| e.committed_len)
                .unwrap_or(0);
            let mut loc = seg_loc(*id);
            loc.path = Some(path);
            let (kind, detail) = match issue {
                SegmentIssue::Missing => (
                    ProblemKind::SegmentMissing,
                    format!("committed segment file ({committed} bytes) does not exist"),
                ),
                SegmentIssue::HeaderCorrupt(reason) => (
                    ProblemKind::SegmentHeaderCorrupt,
                    format!("file header is invalid: {reason}"),
                ),
                SegmentIssue::Truncated { file_len } => (
                    ProblemKind::SegmentTruncated,
                    format!("file is {file_len} bytes, committed length is {committed}"),
                ),
            };
            self.report.push(kind, Severity::Error, loc, detail);
        }
        let segment_ids: Vec<SegmentId> = self
            .index_segments
            .keys()
            .copied()
            .filter(|id| {
                !matches!(
                    self.issues.get(id),
                    Some(SegmentIssue::Missing | SegmentIssue::HeaderCorrupt(_))
                )
            })
            .collect();
        for id in segment_ids {
            let committed = self
                .index_segments
                .get(&id)
                .map(|e| e.committed_len)
                .unwrap_or(0);
            let upto = committed.min(self.store.segments.segment_len(id)?);
            let mut end = FILE_HEADER;
            for item in self.store.segments.scan(id, upto)? {
                match item {
                    Ok((loc, kind, hash)) => {
                        self.records
                            .insert((id, loc.offset), (kind, hash, loc.payload_len));
                        end = loc
                            .offset
                            .saturating_add(net_mesh_segments::codec::RECORD_HEADER_LEN as u64)
                            .saturating_add(u64::from(loc.payload_len));
                    }
                    Err(e) => {
                        let offset = match &e {
                            SegmentError::Corrupted { offset, .. } => *offset,
                            _ => end,
                        };
                        let mut loc = seg_loc(id);
                        loc.offset = Some(offset);
                        self.report.push(
                            ProblemKind::SegmentFraming,
                            Severity::Error,
                            loc,
                            e.to_string(),
                        );
                    }
                }
            }
            self.framed_end.insert(id, end);
        }
        self.report.stats.records = self.records.len() as u64;
        for path in self.store.segments.orphan_files() {
            let id = path
                .file_name()
                .and_then(|n| parse_segment_file_name(&n.to_string_lossy()));
            if id.is_some_and(|id| self.index_segments.contains_key(&id)) {
                continue; // a committed segment we chose not to open (reported above)
            }
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            // A header-only file is a segment a store created at open and never committed
            // (nothing was ever written to it): harmless, listed as info.
            let (severity, detail) = if size <= FILE_HEADER {
                (
                    Severity::Info,
                    format!("empty segment file ({size} bytes) never committed"),
                )
            } else {
                (
                    Severity::Warning,
                    format!("segment file of {size} bytes is not in the index"),
                )
            };
            self.report.push(
                ProblemKind::OrphanFile,
                severity,
                Location {
                    segment: id,
                    path: Some(path.display().to_string()),
                    ..Location::default()
                },
                detail,
            );
            self.orphans.push(path);
        }
        Ok(())
    }

    /// Phase 2: every entry names a matching record; orphan records.
    fn objects(&mut self) -> Result<(), FsckError> {
        self.objects = self.store.index.objects()?;
        self.report.stats.objects = self.objects.len() as u64;
        let mut pointed: HashSet<(SegmentId, u64)> = HashSet::new();
        let objects = std::mem::take(&mut self.objects);
        for (hash, entry) in &objects {
            match entry.kind {
                RecordKind::Chunk => self.report.stats.chunks += 1,
                _ => self.report.stats.nodes += 1,
            }
            let key = (entry.loc.segment, entry.loc.offset);
            let found = self.records.get(&key).copied();
            let problem = match found {
                Some((kind, id, len))
                    if kind == entry.kind && id == *hash && len == entry.loc.payload_len =>
                {
                    pointed.insert(key);
                    None
                }
                Some((kind, id, len)) => Some(format!(
                    "record there is {kind:?} {} of {len} bytes; index says {:?} of {} bytes",
                    hex(&id),
                    entry.kind,
                    entry.loc.payload_len
                )),
                None => self.unframed_object(hash, entry),
            };
            if let Some(detail) = problem {
                self.report.push(
                    ProblemKind::ObjectBytesMissing,
                    Severity::Error,
                    obj_loc(hash, entry.loc),
                    detail,
                );
                self.bad.insert(*hash, *entry);
            }
        }
        self.objects = objects;
        let mut orphan: Vec<(&(SegmentId, u64), &Framed)> = self
            .records
            .iter()
            .filter(|(k, _)| !pointed.contains(k))
            .collect();
        orphan.sort_by_key(|(k, _)| **k);
        for ((segment, offset), (kind, id, len)) in orphan {
            self.report.stats.orphan_records += 1;
            self.report.stats.orphan_record_bytes += u64::from(*len);
            if self.report.stats.orphan_records > MAX_LISTED_ORPHAN_RECORDS {
                continue; // counted in the stats, not listed one by one
            }
            self.report.push(
                ProblemKind::OrphanRecord,
                Severity::Info,
                Location {
                    segment: Some(*segment),
                    offset: Some(*offset),
                    object: Some(hex(id)),
                    path: None,
                },
                format!(
                    "{kind:?} record of {len} bytes no entry points at (reclaimed by compaction)"
                ),
            );
        }
        Ok(())
    }

    /// An entry whose record the scan did not frame: readable anyway (framing broke earlier
    /// in the segment) or gone. Returns the problem, if any.
    fn unframed_object(&mut self, hash: &Hash, entry: &ObjectEntry) -> Option<String> {
        let segment = entry.loc.segment;
        if let Some(issue) = self.issues.get(&segment) {
            match issue {
                SegmentIssue::Missing => return Some(format!("segment {segment} is missing")),
                SegmentIssue::HeaderCorrupt(_) => {
                    return Some(format!("segment {segment} has a corrupt file header"));
                }
                SegmentIssue::Truncated { .. } => {}
            }
        }
        if !self.index_segments.contains_key(&segment) {
            return Some(format!("segment {segment} is not in the index"));
        }
        match self.store.segments.read(entry.loc, entry.kind, hash) {
            Ok(_) => None,
            Err(e) => Some(format!("record not readable: {e}")),
        }
    }

    /// Phase 3: every node read, verified and decoded.
    fn nodes(&mut self) {
        let objects = std::mem::take(&mut self.objects);
        for (hash, entry) in &objects {
            if entry.kind == RecordKind::Chunk || self.bad.contains_key(hash) {
                continue;
            }
            let result =
                self.store
                    .segments
                    .read(entry.loc, entry.kind, hash)
                    .map_err(BlobError::from)
                    .and_then(|bytes| match entry.kind {
                        RecordKind::LeafNode => decode_leaf(hash, &bytes)
                            .map(|l| l.chunks.iter().map(|c| c.hash).collect()),
                        _ => decode_internal(hash, &bytes)
                            .map(|n| n.children.iter().map(|c| c.hash).collect()),
                    });
            match result {
                Ok(children) => {
                    self.children.insert(*hash, children);
                }
                Err(e) => {
                    let kind = match &e {
                        BlobError::ChainMismatch { .. } => ProblemKind::ObjectCorrupt,
                        BlobError::BadNode { .. } => ProblemKind::NodeUndecodable,
                        _ => ProblemKind::ObjectBytesMissing,
                    };
                    self.report.push(
                        kind,
                        Severity::Error,
                        obj_loc(hash, entry.loc),
                        e.to_string(),
                    );
                    self.bad.insert(*hash, *entry);
                }
            }
        }
        self.objects = objects;
    }

    /// Phase 4: recomputed counts, reachability, live bytes.
    fn counts(&mut self) -> Result<(), FsckError> {
        // STAGING-MERGE: live staging uploads hold +1 on the objects their checkpoint
        // references (staging_v1); add them to `expected` and walk their checkpoints here.
        let pins = self.store.index.reader()?.pins()?;
        self.report.stats.pins = pins.len() as u64;
        let mut expected: HashMap<Hash, u64> = HashMap::new();
        for children in self.children.values() {
            for c in children {
                *expected.entry(*c).or_insert(0) += 1;
            }
        }
        for (_, pin) in &pins {
            for root in pin_roots(&pin.blob_ref) {
                *expected.entry(root).or_insert(0) += 1;
            }
        }
        let indexed: HashMap<Hash, ObjectEntry> = self.objects.iter().copied().collect();
        // Objects named by a parent or pin that the index lacks.
        let mut missing: BTreeSet<Hash> = BTreeSet::new();
        for hash in expected.keys() {
            if !indexed.contains_key(hash) {
                missing.insert(*hash);
            }
        }
        // Reachability from each pin; a pin is affected when it reaches a bad or missing object.
        let mut damaged_memo: HashMap<Hash, bool> = HashMap::new();
        let mut reached_missing: BTreeSet<Hash> = BTreeSet::new();
        for (id, pin) in &pins {
            let mut damaged = false;
            for root in pin_roots(&pin.blob_ref) {
                if self.subtree_damaged(&root, &indexed, &mut damaged_memo, &mut reached_missing) {
                    damaged = true;
                }
            }
            if damaged {
                self.report.affected_blobs.push(AffectedBlob {
                    blob_id: hex(id),
                    name: pin.name.clone(),
                    blob_ref: pin.blob_ref.to_text(),
                });
            }
        }
        for hash in &missing {
            let reachable = reached_missing.contains(hash);
            self.report.push(
                ProblemKind::MissingObject,
                if reachable {
                    Severity::Error
                } else {
                    Severity::Warning
                },
                Location {
                    object: Some(hex(hash)),
                    ..Location::default()
                },
                format!(
                    "named {} time(s) by indexed nodes or pins but not in the index{}",
                    expected.get(hash).copied().unwrap_or(0),
                    if reachable {
                        " (a pinned blob needs it)"
                    } else {
                        ""
                    }
                ),
            );
        }
        let incomplete = self.bad.values().any(|e| e.kind != RecordKind::Chunk);
        for (hash, entry) in &self.objects {
            if self.bad.contains_key(hash) {
                continue;
            }
            let want = expected.get(hash).copied().unwrap_or(0);
            if want != entry.refcount {
                self.report.push(
                    ProblemKind::RefcountMismatch,
                    Severity::Error,
                    obj_loc(hash, entry.loc),
                    format!(
                        "stored count {} but {want} parent entries and pins name it{}",
                        entry.refcount,
                        if incomplete {
                            " (some nodes were unreadable)"
                        } else {
                            ""
                        }
                    ),
                );
            }
        }
        let mut live: BTreeMap<SegmentId, u64> = BTreeMap::new();
        for (_, entry) in &self.objects {
            *live.entry(entry.loc.segment).or_insert(0) += u64::from(entry.loc.payload_len);
        }
        for (id, seg) in &self.index_segments {
            let computed = live.get(id).copied().unwrap_or(0);
            if computed != seg.live_bytes {
                self.report.push(
                    ProblemKind::LiveBytesMismatch,
                    Severity::Warning,
                    seg_loc(*id),
                    format!(
                        "stored live bytes {} but entries sum to {computed}",
                        seg.live_bytes
                    ),
                );
            }
        }
        self.expected = expected;
        Ok(())
    }

    fn subtree_damaged(
        &self,
        hash: &Hash,
        indexed: &HashMap<Hash, ObjectEntry>,
        memo: &mut HashMap<Hash, bool>,
        reached_missing: &mut BTreeSet<Hash>,
    ) -> bool {
        if let Some(d) = memo.get(hash) {
            return *d;
        }
        let damaged = if !indexed.contains_key(hash) {
            reached_missing.insert(*hash);
            true
        } else if self.bad.contains_key(hash) {
            true
        } else {
            let kids = self.children.get(hash).cloned().unwrap_or_default();
            let mut any = false;
            for child in &kids {
                if self.subtree_damaged(child, indexed, memo, reached_missing) {
                    any = true;
                }
            }
            any
        };
        memo.insert(*hash, damaged);
        damaged
    }

    fn load_cursor(&self) -> Result<DataCursor, FsckError> {
        let txn = self.store.index.db().begin_read()?;
        let table = match txn.open_table(FSCK_CURSOR) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(DataCursor::default()),
            Err(e) => return Err(e.into()),
        };
        Ok(table
            .get(CURSOR_KEY)?
            .and_then(|v| DataCursor::decode(v.value()))
            .unwrap_or_default())
    }

    fn save_cursor(&self, cursor: &DataCursor) -> Result<(), FsckError> {
        let txn = self.store.index.db().begin_write()?;
        {
            let mut table = txn.open_table(FSCK_CURSOR)?;
            table.insert(CURSOR_KEY, cursor.encode().as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Phase 6: read and hash chunk payloads from the cursor on, on `threads` threads.
    fn data(&mut self) -> Result<(), FsckError> {
        let (mode, pct) = match self.options.read_data {
            ReadData::None => {
                self.report.data.mode = "none".into();
                return Ok(());
            }
            ReadData::All => ("all", 100.0),
            ReadData::Subset(p) => ("subset", p.clamp(0.0, 100.0)),
        };
        self.report.data.mode = mode.into();
        let seed = now_ms().wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let threshold = (pct * 100.0).round() as u64; // out of 10 000
        let mut items: Vec<(Hash, RecordLoc)> = self
            .objects
            .iter()
            .filter(|(h, e)| e.kind == RecordKind::Chunk && !self.bad.contains_key(h))
            .filter(|(h, _)| {
                if threshold >= 10_000 {
                    return true;
                }
                let prefix = u64::from_le_bytes(h.first_chunk::<8>().copied().unwrap_or_default());
                (prefix ^ seed) % 10_000 < threshold
            })
            .map(|(h, e)| (*h, e.loc))
            .collect();
        items.sort_by_key(|(_, l)| (l.segment, l.offset));
        let mut cursor = self.load_cursor()?;
        let start = items
            .iter()
            .position(|(_, l)| (l.segment, l.offset) >= (cursor.segment, cursor.offset))
            .unwrap_or(0);
        items.rotate_left(start);
        self.report.data.selected = items.len() as u64;
        self.report.data.started_at = items
            .first()
            .map(|(_, l)| (l.segment, l.offset))
            .unwrap_or((0, 0));

        let deadline = self.options.max_duration.map(|d| Instant::now() + d);
        let next = AtomicUsize::new(0);
        let failures: Mutex<Vec<(Hash, RecordLoc, String, bool)>> = Mutex::new(Vec::new());
        let checked_bytes = std::sync::atomic::AtomicU64::new(0);
        let done = AtomicUsize::new(0);
        let segments = &self.store.segments;
        let threads = self.options.threads.clamp(1, 16);
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    // Each thread reads at least one chunk, so every run makes progress.
                    let mut first = true;
                    loop {
                        if !first && deadline.is_some_and(|d| Instant::now() >= d) {
                            break;
                        }
                        first = false;
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let Some((hash, loc)) = items.get(i) else {
                            break;
                        };
                        let outcome = match segments.read(*loc, RecordKind::Chunk, hash) {
                            Ok(bytes) => {
                                let actual = chunk_id(&bytes);
                                if actual == *hash {
                                    None
                                } else {
                                    Some((format!("bytes hash to {}", hex(&actual)), true))
                                }
                            }
                            Err(e) => Some((e.to_string(), false)),
                        };
                        checked_bytes.fetch_add(u64::from(loc.payload_len), Ordering::Relaxed);
                        done.fetch_add(1, Ordering::SeqCst);
                        if let Some((detail, corrupt)) = outcome
                            && let Ok(mut f) = failures.lock()
                        {
                            f.push((*hash, *loc, detail, corrupt));
                        }
                    }
                });
            }
        });
        let claimed = next.load(Ordering::SeqCst).min(items.len());
        let checked = done.load(Ordering::SeqCst);
        let failures = failures.into_inner().unwrap_or_else(|e| e.into_inner());
        for (hash, loc, detail, corrupt) in failures {
            let kind = if corrupt {
                ProblemKind::ObjectCorrupt
            } else {
                ProblemKind::ObjectBytesMissing
            };
            self.report
                .push(kind, Severity::Error, obj_loc(&hash, loc), detail);
            if let Some((_, e)) = self.objects.iter().find(|(h, _)| *h == hash) {
                self.bad.insert(hash, *e);
            }
        }
        self.report.data.checked = checked as u64;
        self.report.data.checked_bytes = checked_bytes.load(Ordering::Relaxed);
        self.report.data.complete = claimed >= items.len();
        // A pass over the store's data ends when a run reads past the last chunk in on-disk
        // order (runs started mid-way wrap around to the first).
        if start.saturating_add(claimed) >= items.len() {
            cursor.passes_completed = cursor.passes_completed.saturating_add(1);
        }
        match items.get(claimed) {
            Some((_, l)) if !self.report.data.complete => {
                cursor.segment = l.segment;
                cursor.offset = l.offset;
            }
            _ => {
                cursor.segment = 0;
                cursor.offset = 0;
            }
        }
        cursor.updated_unix_ms = now_ms();
        self.report.data.next_at = (cursor.segment, cursor.offset);
        self.report.data.passes_completed = cursor.passes_completed;
        // Affected blobs for data failures are recomputed by the reachability walk in repair.
        if self.report.data.complete || self.options.max_duration.is_some() {
            self.save_cursor(&cursor)?;
        }
        Ok(())
    }

    /// Fixes what can be fixed without losing data, in one index transaction, then removes
    /// orphan files.
    fn repair(&mut self) -> Result<(), FsckError> {
        // Counts as recomputed: nodes whose entries are dropped were never counted.
        let expected = std::mem::take(&mut self.expected);
        let mut live: BTreeMap<SegmentId, u64> = BTreeMap::new();
        let txn = self.store.index.db().begin_write()?;
        let mut dropped = 0u64;
        let mut recounted = 0u64;
        let mut segment_fixes = Vec::new();
        {
            let mut objects = txn.open_table(OBJECTS)?;
            let mut segments = txn.open_table(SEGMENTS)?;
            let mut lost_refs = txn.open_table(LOST_REFS)?;
            for hash in self.bad.keys() {
                objects.remove(hash)?;
                dropped += 1;
            }
            // Objects still named by parents or pins but not indexed (dropped now or earlier):
            // record the count those references hold, so a re-upload restores it (§3.10).
            let indexed: HashSet<&Hash> = self
                .objects
                .iter()
                .map(|(h, _)| h)
                .filter(|h| !self.bad.contains_key(*h))
                .collect();
            let mut stale = Vec::new();
            for row in lost_refs.iter()? {
                let (k, _) = row?;
                stale.push(*k.value());
            }
            for hash in stale {
                lost_refs.remove(&hash)?;
            }
            for (hash, count) in &expected {
                if *count > 0 && !indexed.contains(hash) {
                    lost_refs.insert(hash, encode_lost_refs(*count).as_slice())?;
                }
            }
            for (hash, entry) in &self.objects {
                if self.bad.contains_key(hash) {
                    continue;
                }
                *live.entry(entry.loc.segment).or_insert(0) += u64::from(entry.loc.payload_len);
                let want = expected.get(hash).copied().unwrap_or(0);
                if want != entry.refcount {
                    let mut e = *entry;
                    e.refcount = want;
                    objects.insert(hash, e.encode().as_slice())?;
                    recounted += 1;
                }
            }
            for (id, seg) in &self.index_segments {
                let computed = live.get(id).copied().unwrap_or(0);
                match self.issues.get(id) {
                    Some(SegmentIssue::Missing | SegmentIssue::HeaderCorrupt(_))
                        if computed == 0 =>
                    {
                        segments.remove(*id)?;
                        segment_fixes.push(format!("dropped the entry of unusable segment {id}"));
                        continue;
                    }
                    Some(SegmentIssue::Truncated { .. }) => {
                        let end = self.framed_end.get(id).copied().unwrap_or(FILE_HEADER);
                        let fixed = SegmentEntry {
                            committed_len: end,
                            live_bytes: computed,
                        };
                        segments.insert(*id, fixed.encode().as_slice())?;
                        segment_fixes.push(format!(
                            "lowered committed length of truncated segment {id} from {} to {end}",
                            seg.committed_len
                        ));
                        continue;
                    }
                    _ => {}
                }
                if computed != seg.live_bytes {
                    let fixed = SegmentEntry {
                        committed_len: seg.committed_len,
                        live_bytes: computed,
                    };
                    segments.insert(*id, fixed.encode().as_slice())?;
                }
            }
        }
        txn.commit()?;
        // RS-MERGE: before dropping a chunk of an erasure-coded blob, rebuild it from its
        // stripe with the RS engineer's repair API (`Store::repair_blob`) and keep the entry.
        if dropped > 0 {
            self.report.repairs.push(format!(
                "dropped {dropped} index entries whose bytes are gone or corrupt (re-upload the affected blobs to restore them)"
            ));
            let bad: HashSet<String> = self.bad.keys().map(hex).collect();
            for kind in [
                ProblemKind::ObjectBytesMissing,
                ProblemKind::ObjectCorrupt,
                ProblemKind::NodeUndecodable,
            ] {
                self.report
                    .mark_repaired(kind, |l| l.object.as_ref().is_some_and(|o| bad.contains(o)));
            }
        }
        if recounted > 0 {
            self.report
                .repairs
                .push(format!("rewrote {recounted} reference counts"));
        }
        self.report
            .mark_repaired(ProblemKind::RefcountMismatch, |_| true);
        self.report
            .mark_repaired(ProblemKind::LiveBytesMismatch, |_| true);
        let fixed_segments: HashSet<SegmentId> = self
            .issues
            .iter()
            .filter(|(id, issue)| match issue {
                SegmentIssue::Truncated { .. } => true,
                _ => live.get(id).copied().unwrap_or(0) == 0,
            })
            .map(|(id, _)| *id)
            .collect();
        for kind in [
            ProblemKind::SegmentMissing,
            ProblemKind::SegmentHeaderCorrupt,
            ProblemKind::SegmentTruncated,
        ] {
            self.report.mark_repaired(kind, |l| {
                l.segment.is_some_and(|s| fixed_segments.contains(&s))
            });
        }
        // The tail framing error of a truncated segment goes with its lowered length.
        self.report.mark_repaired(ProblemKind::SegmentFraming, |l| {
            l.segment.is_some_and(|s| {
                matches!(self.issues.get(&s), Some(SegmentIssue::Truncated { .. }))
            })
        });
        self.report.repairs.extend(segment_fixes);
        for path in std::mem::take(&mut self.orphans) {
            std::fs::remove_file(&path).map_err(|source| FsckError::Io {
                op: "remove orphan file",
                path: path.clone(),
                source,
            })?;
            net_mesh_segments::durable::sync_dir(self.store.segments.dir())?;
            let shown = path.display().to_string();
            self.report
                .repairs
                .push(format!("removed orphan segment file {shown}"));
            self.report.mark_repaired(ProblemKind::OrphanFile, |l| {
                l.path.as_deref() == Some(&shown)
            });
        }
        Ok(())
    }

    /// Recomputes the affected blobs with everything now known to be bad.
    fn refresh_affected(&mut self) -> Result<(), FsckError> {
        let pins = self.store.index.reader()?.pins()?;
        let indexed: HashMap<Hash, ObjectEntry> = self.objects.iter().copied().collect();
        let mut memo = HashMap::new();
        let mut missing = BTreeSet::new();
        let mut out = Vec::new();
        for (id, pin) in &pins {
            let mut damaged = false;
            for root in pin_roots(&pin.blob_ref) {
                if self.subtree_damaged(&root, &indexed, &mut memo, &mut missing) {
                    damaged = true;
                }
            }
            if damaged {
                out.push(AffectedBlob {
                    blob_id: hex(id),
                    name: pin.name.clone(),
                    blob_ref: pin.blob_ref.to_text(),
                });
            }
        }
        self.report.affected_blobs = out;
        Ok(())
    }
}
