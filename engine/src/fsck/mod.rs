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
//! `repair` then fixes what can be fixed without losing data: rewrites a damaged segment file
//! header (before the store opens the segment, so its records are checked as usual), drops
//! entries whose bytes are gone or corrupt (reporting the pinned blobs that needed them),
//! rewrites counts and live bytes,
//! lowers the committed length of a truncated segment to its last whole record (and cuts the
//! active segment's file there before anything is appended to it), drops the entry
//! of a segment whose file is gone, salvages what orphan files hold that the store needs and
//! lacks, then removes them.

mod counts;
mod data;
mod repair;
mod report;
mod salvage;

pub use data::{DataCursor, FSCK_CURSOR_LEN};
pub use report::*;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use net_mesh_segments::codec::FILE_HEADER_LEN;
use net_mesh_segments::{
    FileHeader, RecordKind, RecordLoc, SegmentBackend, SegmentError, SegmentId,
    parse_segment_file_name, segment_file_name,
};
use redb::{ReadableTable, TableDefinition};
use serde::Serialize;

use crate::codec::{Hash, chunk_id};
use crate::error::{BlobError, OpenError, hex};
use crate::gc::{decode_internal, decode_leaf};
use crate::index::{
    CHANNELS, ChannelEntry, IndexError, LOST_REFS, OBJECTS, ObjectEntry, SEGMENTS, SegmentEntry,
    encode_lost_refs, pin_roots,
};
use crate::store::{OpenOptions, Store, WriteMode, now_ms};

const FILE_HEADER: u64 = FILE_HEADER_LEN as u64;

/// Orphan records (info) listed one by one; the rest are only counted in the stats.
pub const MAX_LISTED_ORPHAN_RECORDS: u64 = 1000;

/// What the tolerant open found wrong with committed segment files.
#[derive(Debug, Clone)]
enum SegmentIssue {
    Missing,
    HeaderCorrupt(String),
    /// The file header is damaged (its checksum does not match its bytes) and a check (no
    /// `--repair`) reads the records past it anyway: its length is fixed.
    HeaderDamaged(String),
    /// Opened with the file's length instead of the committed one.
    Truncated {
        file_len: u64,
    },
}

/// Screens the committed segment files before the store opens them: missing, damaged and short
/// ones are noted in `issues` (and left out, or opened at their file length). With `repair`, a
/// file header whose checksum does not match its bytes (damaged, not another writer's header)
/// is rewritten in place, durably — it depends on nothing but the segment id, which the file
/// name and the index both give — and the segment is opened as usual; `headers_rewritten`
/// notes why it was damaged. A header that is intact but names another segment or version is
/// left alone.
fn screen_segments(
    backend: &dyn SegmentBackend,
    seg_dir: &Path,
    committed: BTreeMap<SegmentId, u64>,
    repair: bool,
    issues: &mut BTreeMap<SegmentId, SegmentIssue>,
    headers_rewritten: &mut BTreeMap<SegmentId, String>,
) -> BTreeMap<SegmentId, u64> {
    let mut out = BTreeMap::new();
    for (id, committed_len) in committed {
        let path = seg_dir.join(segment_file_name(id));
        // Through the store's backend: the files may not be on the real filesystem.
        let Ok((file, file_len)) = backend
            .open(&path, false)
            .and_then(|f| f.len().map(|len| (f, len)))
        else {
            issues.insert(id, SegmentIssue::Missing);
            continue;
        };
        let mut header = [0u8; FILE_HEADER_LEN];
        let read = file.read_at(&mut header, 0);
        drop(file);
        let header_read = read.is_ok();
        let verdict = match read {
            Err(e) => Err(format!("cannot read header: {e}")),
            Ok(()) => match FileHeader::decode(&header) {
                Ok(h) if h.segment == id => Ok(()),
                Ok(h) => Err(format!("header names segment {}", h.segment)),
                Err(e) => Err(e.to_string()),
            },
        };
        if let Err(reason) = verdict {
            let damaged = header_read && !FileHeader::checksum_matches(&header);
            if !damaged {
                issues.insert(id, SegmentIssue::HeaderCorrupt(reason));
                continue;
            }
            if !repair {
                issues.insert(
                    id,
                    SegmentIssue::HeaderDamaged(format!(
                        "{reason} (damaged; its records were checked past it; `--repair` \
                         rewrites it from the segment id)"
                    )),
                );
                continue;
            }
            if let Err(e) = net_mesh_segments::durable::rewrite_segment_header(backend, seg_dir, id)
            {
                issues.insert(
                    id,
                    SegmentIssue::HeaderCorrupt(format!("{reason}; rewriting it failed: {e}")),
                );
                continue;
            }
            headers_rewritten.insert(id, reason);
        }
        if committed_len < FILE_HEADER {
            issues.insert(
                id,
                SegmentIssue::HeaderCorrupt(format!("committed length {committed_len}")),
            );
            continue;
        }
        if file_len < committed_len {
            issues.insert(id, SegmentIssue::Truncated { file_len });
            out.insert(id, file_len);
        } else {
            out.insert(id, committed_len);
        }
    }
    out
}

/// [`Checker::read_record`], for the data phase's threads.
fn read_record(
    segments: &net_mesh_segments::Segments,
    loose: &BTreeMap<SegmentId, net_mesh_segments::LooseSegment>,
    loc: RecordLoc,
    kind: RecordKind,
    hash: &Hash,
) -> Result<bytes::Bytes, SegmentError> {
    match loose.get(&loc.segment) {
        Some(file) => file.read(loc, kind, hash),
        None => segments.read(loc, kind, hash),
    }
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
    /// Segments whose damaged file header a check reads past (see `SegmentIssue::HeaderDamaged`).
    loose: BTreeMap<SegmentId, net_mesh_segments::LooseSegment>,
    /// Segments whose damaged file header the repair's screening rewrote, with the damage.
    headers_rewritten: BTreeMap<SegmentId, String>,
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
    /// Some references could not be counted (an extension's holds, unowned tables, pin rows):
    /// repair may raise counts but never lower them.
    counts_floor_only: bool,
    /// Channels pin rows name that `channels_v1` lacks (repair creates them).
    missing_channels: Vec<String>,
}

/// Runs fsck on the store in `dir` (takes the store's lock; the store must not be open
/// elsewhere).
pub fn fsck(dir: &Path, open: OpenOptions, options: &FsckOptions) -> Result<FsckReport, FsckError> {
    let mut issues = BTreeMap::new();
    let mut headers_rewritten = BTreeMap::new();
    // A check writes nothing but, reading data, its cursor; a repair opens for writing.
    let mode = match (options.repair, &options.read_data) {
        (true, _) => WriteMode::Writable,
        (false, ReadData::None) => WriteMode::ReadOnly,
        (false, _) => WriteMode::SegmentsReadOnly,
    };
    let store = Store::open_screened(dir, open, mode, |backend, seg_dir, committed| {
        screen_segments(
            backend,
            seg_dir,
            committed,
            options.repair,
            &mut issues,
            &mut headers_rewritten,
        )
    })?;
    check(&store, issues, headers_rewritten, options)
}

/// Runs fsck on a store that is already open (e.g. on custom storage backends). The store was
/// opened strictly, so a missing, short or damaged committed segment file already failed its
/// open; everything else is checked (and repaired, if asked) as [`fsck`] does.
///
/// It takes the store's GC turn, so no GC, compaction or chunk removal runs meanwhile (a
/// compaction would move records between the snapshot fsck lists entries from and its reads,
/// and they would look missing). No other writer may use the store while it runs either: fsck
/// compares several snapshots, and its repair rewrites counts from them.
pub fn fsck_open_store(store: &Store, options: &FsckOptions) -> Result<FsckReport, FsckError> {
    check(store, BTreeMap::new(), BTreeMap::new(), options)
}

fn check(
    store: &Store,
    issues: BTreeMap<SegmentId, SegmentIssue>,
    headers_rewritten: BTreeMap<SegmentId, String>,
    options: &FsckOptions,
) -> Result<FsckReport, FsckError> {
    let _no_gc = store.gc_run.lock().unwrap_or_else(|e| e.into_inner());
    let mut checker = Checker {
        store,
        options,
        report: FsckReport::default(),
        index_segments: store.index.segments()?,
        issues,
        loose: BTreeMap::new(),
        headers_rewritten,
        framed_end: BTreeMap::new(),
        records: HashMap::new(),
        objects: Vec::new(),
        bad: HashMap::new(),
        children: HashMap::new(),
        expected: HashMap::new(),
        orphans: Vec::new(),
        counts_floor_only: false,
        missing_channels: Vec::new(),
    };
    let progress = &options.progress;
    checker.segments()?;
    progress.stage("checking the index", None);
    checker.objects()?;
    progress.stage("reading tree nodes", None);
    checker.nodes();
    progress.stage("counting references", None);
    checker.counts()?;
    checker.data()?;
    checker.refresh_affected()?;
    if options.repair {
        progress.stage("repairing", None);
        checker.repair()?;
    }
    Ok(checker.report)
}

impl Checker<'_> {
    /// Phase 1: segment files and framing.
    fn segments(&mut self) -> Result<(), FsckError> {
        self.report.stats.segments = self.index_segments.len() as u64;
        // Segments whose damaged header a check reads past: opened read-only, up to their
        // committed length.
        for (id, issue) in &self.issues {
            if !matches!(issue, SegmentIssue::HeaderDamaged(_)) {
                continue;
            }
            let committed = self.index_segments.get(id).map(|e| e.committed_len);
            let path = self.store.segments.dir().join(segment_file_name(*id));
            let file = net_mesh_segments::LooseSegment::open(
                self.store.segments.backend().as_ref(),
                &path,
                *id,
                committed,
            )?;
            self.loose.insert(*id, file);
        }
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
                SegmentIssue::HeaderCorrupt(reason) | SegmentIssue::HeaderDamaged(reason) => (
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
        for (id, reason) in &self.headers_rewritten {
            let mut loc = seg_loc(*id);
            loc.path = Some(
                self.store
                    .segments
                    .dir()
                    .join(segment_file_name(*id))
                    .display()
                    .to_string(),
            );
            self.report.push(
                ProblemKind::SegmentHeaderCorrupt,
                Severity::Error,
                loc,
                format!("file header was damaged: {reason}"),
            );
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
        let committed_of = |id: &SegmentId| {
            self.index_segments
                .get(id)
                .map(|e| e.committed_len)
                .unwrap_or(0)
        };
        let total = segment_ids
            .iter()
            .fold(0u64, |sum, id| sum.saturating_add(committed_of(id)));
        self.options.progress.stage("framing segments", Some(total));
        for id in segment_ids {
            let committed = committed_of(&id);
            let items = match self.loose.get(&id) {
                Some(file) => file.scan()?,
                None => {
                    let upto = committed.min(self.store.segments.segment_len(id)?);
                    self.store.segments.scan(id, upto)?
                }
            };
            let mut end = FILE_HEADER;
            for item in items {
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
            self.options.progress.advance(committed);
        }
        self.report.stats.records = self.records.len() as u64;
        for path in self.store.segments.orphan_files() {
            let id = path
                .file_name()
                .and_then(|n| parse_segment_file_name(&n.to_string_lossy()));
            if id.is_some_and(|id| self.index_segments.contains_key(&id)) {
                continue; // a committed segment we chose not to open (reported above)
            }
            let size = self
                .store
                .segments
                .backend()
                .open(&path, false)
                .and_then(|f| f.len())
                .unwrap_or(0);
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

    /// Reads one record: from a segment whose damaged header a check reads past, or through
    /// the store.
    fn read_record(
        &self,
        loc: RecordLoc,
        kind: RecordKind,
        hash: &Hash,
    ) -> Result<bytes::Bytes, SegmentError> {
        read_record(&self.store.segments, &self.loose, loc, kind, hash)
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
                SegmentIssue::HeaderDamaged(_) | SegmentIssue::Truncated { .. } => {}
            }
        }
        if !self.index_segments.contains_key(&segment) {
            return Some(format!("segment {segment} is not in the index"));
        }
        match self.read_record(entry.loc, entry.kind, hash) {
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
                self.read_record(entry.loc, entry.kind, hash)
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
}
