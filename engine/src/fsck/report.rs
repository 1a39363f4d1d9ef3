//! fsck options, findings and errors.

use super::*;

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
    /// Where the check counts its stages and bytes, for a progress display.
    pub progress: crate::Progress,
}

impl Default for FsckOptions {
    fn default() -> Self {
        FsckOptions {
            read_data: ReadData::None,
            max_duration: None,
            repair: false,
            threads: 2,
            progress: crate::Progress::default(),
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
    /// An extension's tables do not decode, so its holds cannot be counted.
    ExtensionCorrupt,
    /// A table in the index that neither the engine nor a registered extension owns.
    UnownedTable,
    /// A pin row does not decode (its blob, and the counts it holds, are unknown).
    PinCorrupt,
    /// Pin rows name a channel that `channels_v1` lacks (`--repair` creates it).
    ChannelMissing,
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
    /// References registered extensions hold (staging uploads, ...).
    pub extension_holds: u64,
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

    pub(super) fn push(
        &mut self,
        kind: ProblemKind,
        severity: Severity,
        location: Location,
        detail: String,
    ) {
        self.problems.push(Problem {
            kind,
            severity,
            location,
            detail,
            repaired: false,
        });
    }

    pub(super) fn mark_repaired(&mut self, kind: ProblemKind, pred: impl Fn(&Location) -> bool) {
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

impl crate::error::Classify for FsckError {
    fn class(&self) -> crate::error::ErrorClass {
        use crate::error::ErrorClass;
        match self {
            FsckError::Open(e) => e.class(),
            FsckError::Index(e) => e.class(),
            FsckError::Segments(e) => crate::error::segment_error_class(e),
            FsckError::Io { .. } => ErrorClass::Io,
        }
    }
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
