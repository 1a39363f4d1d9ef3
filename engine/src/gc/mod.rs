//! Garbage collection: deletes objects that have been unreferenced (count 0) for longer than a
//! grace period, cascading into their children, then hands the space to compaction. It runs
//! beside uploads, reads and pins: it never waits for an upload, and uploads never wait for it.
//!
//! Safety argument (docs/GC.md has the crash analysis):
//! - **Scan** (read snapshot): candidates = count 0 and unreferenced since ≤ now − grace
//!   (`ObjectEntry::unreferenced_since_unix_ms`: set when an object is stored and whenever its
//!   count falls to 0).
//! - **Delete** (one write transaction, inside an in-flight sweep, see `in_flight.rs`): every
//!   candidate's entry is re-read *inside* the transaction and deleted only if its count is
//!   still 0, it is still past the grace, and no live upload holds it — a reference taken after
//!   the scan (a pin, a new parent node, an upload that found it stored) always wins. Deleting
//!   a node decrements each child entry it lists; a child that reaches 0 has been unreachable
//!   since its parent was, so it joins the same run under the same checks (lazy cascade).
//! - A node whose bytes cannot be read or verified is kept (its children's counts would be
//!   unknown): GC never lowers a count it cannot justify.
//! - Stripe integrity: a chunk listed in a live erasure-coded blob is never deleted, whatever
//!   its stored count says (the check walks the pinned RS blobs). A leaf and all of its data and
//!   parity chunks are released by the same decrement, so a stripe goes all at once.
//! - Extensions release their stale holds first (e.g. staging uploads idle for longer than
//!   staging's own abandonment grace, independent of `grace`); what only they held then becomes
//!   unreferenced from that moment.
//! - Failpoints: `gc.delete_commit.before`, `gc.delete_commit.after`.

pub(crate) mod compact;
mod walk;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use net_mesh_segments::codec::RECORD_HEADER_LEN;
use net_mesh_segments::{RecordKind, SegmentError, SegmentId};
use redb::ReadableTable;

use crate::codec::{Encoding, Hash};
use crate::error::{BlobError, hex};
use crate::index::extension::{Extension, ExtensionError, ExtensionOp, ExtensionTxn, ReleasedHold};
use crate::index::{
    IndexError, IndexReader, LOST_REFS, OBJECTS, SEGMENTS, decode_lost_refs, encode_lost_refs,
    object_in,
};
use crate::store::{Store, now_ms};
pub use walk::ChunkInfo;
pub(crate) use walk::{decode_internal, decode_leaf};
use walk::{for_each_list, node_children};

/// What `Store::gc` does.
#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Only objects unreferenced for at least this long are deleted.
    pub grace: Duration,
    /// Compute and report, change nothing.
    pub dry_run: bool,
    /// Sealed segments whose live payload bytes fall below this fraction of their committed
    /// bytes are compacted (0.0 disables compaction).
    pub compact_threshold: f64,
    /// Where the run counts its stages and bytes, for a progress display.
    pub progress: crate::Progress,
}

/// Default grace period: 24 hours.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(24 * 3600);
/// Default compaction threshold: compact segments less than half live.
pub const DEFAULT_COMPACT_THRESHOLD: f64 = 0.5;

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            grace: DEFAULT_GRACE,
            dry_run: false,
            compact_threshold: DEFAULT_COMPACT_THRESHOLD,
            progress: crate::Progress::default(),
        }
    }
}

#[cfg(not(feature = "testing"))]
use phase::GcPhase;
#[cfg(feature = "testing")]
pub use phase::GcPhase;

mod phase {
    /// Points where a test hook runs (`Store::gc_with_hook`, feature `testing`: deterministic
    /// interleaving tests).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum GcPhase {
        /// After the candidate scan, before the delete transaction.
        Scanned,
        /// After the delete transaction committed, before compaction.
        Swept,
    }
}

/// A chunk GC refused to delete because a live erasure-coded blob lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StripeRefusal {
    pub chunk: String,
    pub blob_id: String,
    pub stripe: u32,
}

/// What a GC run did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct GcReport {
    pub dry_run: bool,
    pub grace_secs: u64,
    /// Count-0 objects past the grace found by the scan.
    pub candidates: u64,
    pub objects_freed: u64,
    pub chunks_freed: u64,
    pub nodes_freed: u64,
    /// Payload bytes of the freed objects.
    pub bytes_freed: u64,
    /// Candidates whose count was no longer 0 inside the delete transaction.
    pub skipped_referenced: u64,
    /// Objects that reached 0 in the cascade but are younger than the grace.
    pub skipped_young: u64,
    /// Candidates kept because a live upload relies on them.
    pub skipped_in_use: u64,
    pub stripe_refusals: Vec<StripeRefusal>,
    /// Nodes kept because their bytes could not be read or verified (run fsck).
    pub unreadable_nodes: Vec<String>,
    /// Children a deleted node listed that were not in the index (run fsck).
    pub missing_children: u64,
    pub segments_compacted: u64,
    /// Sealed segments unlinked (compacted or wholly dead).
    pub segments_removed: u64,
    pub records_copied: u64,
    pub bytes_copied: u64,
    /// Sum of segment file sizes before and after the run.
    pub disk_bytes_before: u64,
    pub disk_bytes_after: u64,
    /// Segment files whose unlink failed after their index entry was dropped (fsck reports
    /// and `fsck --repair` removes them).
    pub orphan_files: Vec<String>,
    /// Segments compaction left alone, with the reason.
    pub compaction_notes: Vec<String>,
    /// Holds extensions released as stale before the scan (e.g. abandoned staging uploads).
    pub released_holds: Vec<ReleasedHold>,
}

/// Why GC or an object deletion failed (or was refused).
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error("store handle is poisoned by an earlier durability failure; reopen the store")]
    Poisoned,
    #[error("index: {0}")]
    Index(#[from] IndexError),
    #[error("segments: {0}")]
    Segments(#[from] SegmentError),
    #[error("reading blob: {0}")]
    Blob(#[from] BlobError),
    #[error(transparent)]
    Store(#[from] crate::error::StoreError),
    #[error(
        "chunk {chunk} is in stripe {stripe} of live erasure-coded blob {blob_id}: deleting it \
         alone would weaken the stripe (unpin the blob, or use the operator override --force)"
    )]
    StripeIntegrity {
        chunk: String,
        blob_id: String,
        stripe: u32,
    },
    #[error(
        "object {hash} has {refcount} reference(s) (parent entries + pins); unpin its blobs and \
         run gc, or use the operator override --force"
    )]
    Referenced { hash: String, refcount: u64 },
    #[error("object {0} is not in the index")]
    NotFound(String),
    #[error("object {hash} is a {kind:?}, not a chunk")]
    NotAChunk { hash: String, kind: RecordKind },
}

impl crate::error::Classify for GcError {
    fn class(&self) -> crate::error::ErrorClass {
        use crate::error::ErrorClass;
        match self {
            GcError::Poisoned => ErrorClass::Io,
            GcError::Index(e) => e.class(),
            GcError::Segments(e) => crate::error::segment_error_class(e),
            GcError::Blob(e) => e.class(),
            GcError::Store(e) => e.class(),
            GcError::StripeIntegrity { .. } | GcError::Referenced { .. } => ErrorClass::Refused,
            GcError::NotFound(_) => ErrorClass::NotFound,
            GcError::NotAChunk { .. } => ErrorClass::Usage,
        }
    }
}

impl From<redb::Error> for GcError {
    fn from(e: redb::Error) -> Self {
        GcError::Index(IndexError::from(e))
    }
}

macro_rules! redb_from {
    ($($t:ty),*) => {$(
        impl From<$t> for GcError {
            fn from(e: $t) -> Self {
                GcError::Index(IndexError::from(e))
            }
        }
    )*};
}
redb_from!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// GC's request to one extension to release its stale holds.
#[derive(Debug)]
struct ReleaseStale(Arc<dyn Extension>);

impl ExtensionOp for ReleaseStale {
    fn namespace(&self) -> &'static str {
        self.0.namespace()
    }

    fn apply(&self, txn: &mut ExtensionTxn<'_>) -> Result<(), ExtensionError> {
        self.0.release_stale(txn)
    }
}

/// A chunk's place in a live stripe: (blob id, stripe).
type StripePlaces = HashMap<Hash, (Hash, u32)>;

impl Store {
    /// Chunks listed by pinned erasure-coded blobs, with their blob and stripe. These are
    /// never deleted by GC or the normal delete path.
    ///
    /// A stripe lies within one chunk list, so each distinct list is walked once, whatever
    /// the pins share or a tree repeats (the first blob that lists a chunk names it).
    fn live_stripe_members(&self, reader: &IndexReader) -> Result<StripePlaces, GcError> {
        let mut out = HashMap::new();
        let mut visited = HashSet::new();
        for (id, pin) in reader.pins()? {
            if pin.blob_ref.encoding() == Encoding::Plain {
                continue;
            }
            // An unreadable RS blob (or one whose lists do not split into stripes, so no read
            // or repair can use them) is reported by fsck; its chunks are protected by counts.
            let walked = for_each_list(
                self,
                reader,
                &pin.blob_ref,
                Some(&mut visited),
                &mut |chunks, encoding| {
                    let stripes = crate::erasure::stripe::assign(chunks, encoding)?;
                    for (c, stripe) in chunks.iter().zip(stripes) {
                        if let Some(stripe) = stripe {
                            out.entry(c.hash).or_insert((id, stripe));
                        }
                    }
                    Ok(ControlFlow::Continue(()))
                },
            );
            if walked.is_err() {
                tracing::warn!(blob = %hex(&id), "cannot walk erasure-coded blob for stripe check");
            }
        }
        Ok(out)
    }

    /// Deletes objects unreferenced for longer than `options.grace` (cascading), then
    /// compacts sparse sealed segments. See the module docs for why this is safe beside
    /// uploads and pins; it never waits for them. Two GC runs on one store take turns.
    pub fn gc(&self, options: &GcOptions) -> Result<GcReport, GcError> {
        self.gc_phases(options, &mut |_| {})
    }

    /// [`Store::gc`] calling `hook` at each [`GcPhase`] (feature `testing`: deterministic
    /// interleaving tests).
    #[cfg(feature = "testing")]
    pub fn gc_with_hook(
        &self,
        options: &GcOptions,
        hook: &mut dyn FnMut(GcPhase),
    ) -> Result<GcReport, GcError> {
        self.gc_phases(options, hook)
    }

    fn gc_phases(
        &self,
        options: &GcOptions,
        hook: &mut dyn FnMut(GcPhase),
    ) -> Result<GcReport, GcError> {
        if self.check_writable().is_err() {
            return Err(GcError::Poisoned);
        }
        let _one_gc = self.gc_run.lock().unwrap_or_else(|e| e.into_inner());
        let mut report = GcReport {
            dry_run: options.dry_run,
            grace_secs: options.grace.as_secs(),
            disk_bytes_before: self.disk_bytes(),
            ..GcReport::default()
        };
        if !options.dry_run {
            report.released_holds = self.release_stale_holds()?;
        }
        let grace_ms = u64::try_from(options.grace.as_millis()).unwrap_or(u64::MAX);
        let cutoff = now_ms().saturating_sub(grace_ms);

        // Scan: a read snapshot.
        options.progress.stage("scanning objects", None);
        let mut candidates: Vec<Hash> = Vec::new();
        self.index.for_each_object(|hash, e| {
            if e.refcount == 0 && e.unreferenced_since_unix_ms <= cutoff {
                candidates.push(*hash);
            }
        })?;
        report.candidates = candidates.len() as u64;
        hook(GcPhase::Scanned);

        options
            .progress
            .stage("deleting unreferenced objects", None);
        let freed_records = {
            let _sweep = self.in_flight.begin_sweep();
            let protected = self.live_stripe_members(&self.index.reader()?)?;
            self.sweep(candidates, cutoff, &protected, options.dry_run, &mut report)?
        };
        hook(GcPhase::Swept);

        if options.compact_threshold > 0.0 {
            crate::gc::compact::compact(
                self,
                options.compact_threshold,
                options.dry_run,
                &options.progress,
                &freed_records,
                &mut report,
            )?;
        }
        report.disk_bytes_after = self.disk_bytes();
        Ok(report)
    }

    /// Poisons the handle when `result` failed in the index database itself: after an I/O
    /// error inside a write transaction what reached the disk is unknown, as after a failed
    /// batch commit (`Store::commit_batch`). A corrupt entry, a refusal or a missing object
    /// aborts the transaction without writing anything and leaves the handle usable.
    fn poison_on_index_io<T>(&self, result: Result<T, GcError>) -> Result<T, GcError> {
        if matches!(result, Err(GcError::Index(IndexError::Db(_)))) {
            self.poisoned.store(true, Ordering::Release);
        }
        result
    }

    /// The delete transaction. The caller runs it inside an in-flight sweep. Returns the bytes
    /// of whole records (header and payload) it deleted the entries of, per segment — under a
    /// dry run, those it would delete.
    fn sweep(
        &self,
        candidates: Vec<Hash>,
        cutoff: u64,
        protected: &StripePlaces,
        dry_run: bool,
        report: &mut GcReport,
    ) -> Result<BTreeMap<SegmentId, u64>, GcError> {
        let result = self.sweep_txn(candidates, cutoff, protected, dry_run, report);
        self.poison_on_index_io(result)
    }

    fn sweep_txn(
        &self,
        candidates: Vec<Hash>,
        cutoff: u64,
        protected: &StripePlaces,
        dry_run: bool,
        report: &mut GcReport,
    ) -> Result<BTreeMap<SegmentId, u64>, GcError> {
        let mut freed_records: BTreeMap<SegmentId, u64> = BTreeMap::new();
        let initial: HashSet<Hash> = candidates.iter().copied().collect();
        // Each object with the time it has been unreferenced since (a cascaded child: since
        // its deleted parent was).
        let mut work: VecDeque<(Hash, u64)> = candidates.into_iter().map(|h| (h, 0)).collect();
        let txn = self.index.db().begin_write()?;
        {
            let mut objects = txn.open_table(OBJECTS)?;
            let mut segments = txn.open_table(SEGMENTS)?;
            let mut lost_refs = txn.open_table(LOST_REFS)?;
            let mut live_delta: HashMap<u64, u64> = HashMap::new();
            while let Some((hash, unreferenced_since)) = work.pop_front() {
                // Re-check inside the deleting transaction: a reference taken since the scan
                // wins.
                let Some(entry) = object_in(&objects, &hash)? else {
                    continue;
                };
                if entry.refcount != 0 {
                    if initial.contains(&hash) {
                        report.skipped_referenced = report.skipped_referenced.saturating_add(1);
                    }
                    continue;
                }
                let unreferenced_since = unreferenced_since.max(entry.unreferenced_since_unix_ms);
                if unreferenced_since > cutoff {
                    report.skipped_young = report.skipped_young.saturating_add(1);
                    continue;
                }
                if self.in_flight.is_held(&hash) {
                    report.skipped_in_use = report.skipped_in_use.saturating_add(1);
                    continue;
                }
                if let Some((blob, stripe)) = protected.get(&hash) {
                    report.stripe_refusals.push(StripeRefusal {
                        chunk: hex(&hash),
                        blob_id: hex(blob),
                        stripe: *stripe,
                    });
                    continue;
                }
                let children = match node_children(self, &hash, &entry) {
                    Ok(children) => children,
                    Err(e) => {
                        tracing::warn!(object = %hex(&hash), error = %e, "gc keeps unreadable node");
                        report.unreadable_nodes.push(hex(&hash));
                        continue;
                    }
                };
                for child in children {
                    let Some(mut c) = object_in(&objects, &child)? else {
                        // Dropped by fsck --repair: its recorded lost count loses this parent.
                        let lost = match lost_refs.get(&child)?.map(|v| v.value().to_vec()) {
                            Some(raw) => Some(decode_lost_refs(&child, &raw)?),
                            None => None,
                        };
                        match lost {
                            Some(n) if n > 1 => {
                                lost_refs.insert(&child, encode_lost_refs(n - 1).as_slice())?;
                            }
                            Some(_) => {
                                lost_refs.remove(&child)?;
                            }
                            None => {
                                report.missing_children = report.missing_children.saturating_add(1);
                            }
                        }
                        continue;
                    };
                    if c.refcount == 0 {
                        // Stored count already too low (fsck --repair recomputes it).
                        report.missing_children = report.missing_children.saturating_add(1);
                        continue;
                    }
                    c.refcount = c.refcount.saturating_sub(1);
                    if c.refcount == 0 {
                        // Unreachable since its parent was.
                        c.unreferenced_since_unix_ms = unreferenced_since;
                        work.push_back((child, unreferenced_since));
                    }
                    objects.insert(&child, c.encode().as_slice())?;
                }
                objects.remove(&hash)?;
                let d = live_delta.entry(entry.loc.segment).or_insert(0);
                *d = d.saturating_add(u64::from(entry.loc.payload_len));
                let r = freed_records.entry(entry.loc.segment).or_insert(0);
                *r = r
                    .saturating_add(RECORD_HEADER_LEN as u64)
                    .saturating_add(u64::from(entry.loc.payload_len));
                report.objects_freed = report.objects_freed.saturating_add(1);
                report.bytes_freed = report
                    .bytes_freed
                    .saturating_add(u64::from(entry.loc.payload_len));
                match entry.kind {
                    RecordKind::Chunk => {
                        report.chunks_freed = report.chunks_freed.saturating_add(1)
                    }
                    _ => report.nodes_freed = report.nodes_freed.saturating_add(1),
                }
            }
            for (segment, freed) in live_delta {
                if let Some(mut e) = crate::index::segment_in(&segments, segment)? {
                    e.live_bytes = e.live_bytes.saturating_sub(freed);
                    segments.insert(segment, e.encode().as_slice())?;
                }
            }
        }
        if dry_run {
            txn.abort()?;
            return Ok(freed_records);
        }
        net_mesh_segments::failpoint::hit("gc.delete_commit.before");
        txn.commit()?;
        net_mesh_segments::failpoint::hit("gc.delete_commit.after");
        Ok(freed_records)
    }

    /// Deletes one chunk's index entry. Without `force` this is the normal API path: it refuses
    /// with [`GcError::StripeIntegrity`] for a chunk of a live erasure-coded stripe and with
    /// [`GcError::Referenced`] for any referenced chunk. With `force` (the operator override,
    /// used to simulate loss) it deletes the entry whatever references it; counts of other
    /// objects are untouched. Returns the refcount the chunk had. Without `force`, a chunk a
    /// live upload relies on counts as referenced.
    pub fn remove_chunk(&self, hash: &Hash, force: bool) -> Result<u64, GcError> {
        if self.check_writable().is_err() {
            return Err(GcError::Poisoned);
        }
        let _one_gc = self.gc_run.lock().unwrap_or_else(|e| e.into_inner());
        let _sweep = self.in_flight.begin_sweep();
        if !force {
            let protected = self.live_stripe_members(&self.index.reader()?)?;
            if let Some((blob, stripe)) = protected.get(hash) {
                return Err(GcError::StripeIntegrity {
                    chunk: hex(hash),
                    blob_id: hex(blob),
                    stripe: *stripe,
                });
            }
        }
        let result = self.remove_chunk_txn(hash, force);
        self.poison_on_index_io(result)
    }

    fn remove_chunk_txn(&self, hash: &Hash, force: bool) -> Result<u64, GcError> {
        let txn = self.index.db().begin_write()?;
        let refcount;
        {
            let mut objects = txn.open_table(OBJECTS)?;
            let mut segments = txn.open_table(SEGMENTS)?;
            let entry = object_in(&objects, hash)?.ok_or_else(|| GcError::NotFound(hex(hash)))?;
            if entry.kind != RecordKind::Chunk {
                return Err(GcError::NotAChunk {
                    hash: hex(hash),
                    kind: entry.kind,
                });
            }
            if !force && (entry.refcount > 0 || self.in_flight.is_held(hash)) {
                return Err(GcError::Referenced {
                    hash: hex(hash),
                    refcount: entry.refcount,
                });
            }
            refcount = entry.refcount;
            objects.remove(hash)?;
            if refcount > 0 {
                // Its parents and pins still count it: a re-upload gets the count back.
                let mut lost_refs = txn.open_table(LOST_REFS)?;
                lost_refs.insert(hash, encode_lost_refs(refcount).as_slice())?;
            }
            if let Some(mut e) = crate::index::segment_in(&segments, entry.loc.segment)? {
                e.live_bytes = e
                    .live_bytes
                    .saturating_sub(u64::from(entry.loc.payload_len));
                segments.insert(entry.loc.segment, e.encode().as_slice())?;
            }
        }
        txn.commit()?;
        Ok(refcount)
    }

    /// Asks every registered extension to release its stale holds, in one transaction.
    pub fn release_stale_holds(&self) -> Result<Vec<ReleasedHold>, crate::error::StoreError> {
        let ops: Vec<Box<dyn ExtensionOp>> = self
            .index
            .extensions()
            .iter()
            .map(|e| Box::new(ReleaseStale(Arc::clone(e))) as Box<dyn ExtensionOp>)
            .collect();
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self.commit_ops(ops)?.released)
    }

    /// Sum of the sizes of the segment files in the store's segment directory.
    pub fn disk_bytes(&self) -> u64 {
        let Ok(dir) = std::fs::read_dir(self.segments.dir()) else {
            return 0;
        };
        dir.filter_map(Result::ok)
            .filter(|e| {
                net_mesh_segments::parse_segment_file_name(&e.file_name().to_string_lossy())
                    .is_some()
            })
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .fold(0u64, u64::saturating_add)
    }
}
