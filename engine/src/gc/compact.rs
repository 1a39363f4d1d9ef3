//! Compaction: reclaims the space of deleted objects by copying a sparse sealed segment's live
//! records forward and unlinking it. It runs beside uploads, reads and other commits; nothing
//! waits for it and it waits for nothing but its own commits.
//!
//! A segment is sparse when it holds a dead record and its live record bytes (header and
//! payload of each record an index entry places there) are below the threshold fraction of its
//! committed record bytes, or nothing in it is live; a segment whose every record is live is
//! never compacted, however small its records. Per segment:
//! 0. only sealed, sparse segments with no unsettled records are candidates
//!    (`Segments::has_unsettled`: an upload may still be about to index a record it appended
//!    there);
//! 1. the live set is the index entries that place objects in the segment (not a scan of the
//!    file, so damage in dead regions does not block compaction);
//! 2. copy each live record (read back with its header checked) to the active segment
//!    (`append`); failpoint `compact.after_copy`;
//! 3. `Segments::sync` (fdatasync); failpoint `compact.after_sync`;
//! 4. ONE index transaction relocates each copied object *if it still points at the old
//!    record* (an object deleted or moved meanwhile keeps its state; its copy is dead bytes),
//!    stores the new committed lengths and drops the old segment's entry — only if its live
//!    bytes reach exactly 0, i.e. nothing else still points there; failpoint
//!    `compact.after_commit`;
//! 5. unlink the old file (and fsync the directory); failpoint `compact.after_unlink`. A reader
//!    that looked the old location up before step 4 retries with a fresh snapshot.
//!
//! A crash before 4 leaves copies past nothing (unreferenced bytes in the active segment, or
//! past its committed length, truncated at open); a crash between 4 and 5 leaves an orphan file
//! that fsck reports and `fsck --repair` removes. Counts are never touched. The active segment
//! is never compacted; when it is itself sparse it is sealed first.

use std::collections::{BTreeMap, BTreeSet};

use net_mesh_segments::SegmentId;
use net_mesh_segments::codec::{FILE_HEADER_LEN, RECORD_HEADER_LEN};
use net_mesh_segments::failpoint;

use crate::codec::Hash;
use crate::gc::{GcError, GcReport};
use crate::index::{Batch, ObjectEntry, Relocation, SegmentEntry};
use crate::store::Store;

const FILE_HEADER: u64 = FILE_HEADER_LEN as u64;
const RECORD_HEADER: u64 = RECORD_HEADER_LEN as u64;

/// Bytes of whole records (header and payload) the index places in each segment, from one read
/// snapshot taken after the segment entries they are compared with (so a segment a concurrent
/// writer grew meanwhile looks more live, never less).
fn live_record_bytes(store: &Store) -> Result<BTreeMap<SegmentId, u64>, GcError> {
    let mut live: BTreeMap<SegmentId, u64> = BTreeMap::new();
    store.index.for_each_object(|_, e| {
        let record = RECORD_HEADER.saturating_add(u64::from(e.loc.payload_len));
        let bytes = live.entry(e.loc.segment).or_insert(0);
        *bytes = bytes.saturating_add(record);
    })?;
    Ok(live)
}

/// Holding a dead record (some committed record bytes no entry places there), and either
/// nothing live at all or a live fraction of its record bytes below the threshold. A segment
/// whose every record is live is never sparse, however small its records.
fn is_sparse(e: &SegmentEntry, live_record_bytes: u64, threshold: f64) -> bool {
    let area = e.committed_len.saturating_sub(FILE_HEADER);
    if live_record_bytes >= area {
        return false;
    }
    live_record_bytes == 0 || (live_record_bytes as f64 / area as f64) < threshold
}

/// The segments worth compacting: sparse by [`is_sparse`], per `live`.
fn sparse_ids<'a>(
    entries: &'a BTreeMap<SegmentId, SegmentEntry>,
    live: &'a BTreeMap<SegmentId, u64>,
    threshold: f64,
) -> impl Iterator<Item = SegmentId> + 'a {
    entries
        .iter()
        .filter(move |(id, e)| is_sparse(e, live.get(id).copied().unwrap_or(0), threshold))
        .map(|(id, _)| *id)
}

/// Compacts every sealed segment below `threshold`. A dry run counts the segments a real run
/// would compact: the active one included when it is sparse (a real run seals it first), and
/// with `freed_records` (the record bytes per segment its aborted sweep would have deleted,
/// still in the index) counted as dead. A real run's sweep has committed, so it ignores them.
pub(crate) fn compact(
    store: &Store,
    threshold: f64,
    dry_run: bool,
    progress: &crate::Progress,
    freed_records: &BTreeMap<SegmentId, u64>,
    report: &mut GcReport,
) -> Result<(), GcError> {
    let mut entries = store.index.segments()?;
    let mut live = live_record_bytes(store)?;
    if dry_run {
        for (segment, freed) in freed_records {
            if let Some(bytes) = live.get_mut(segment) {
                *bytes = bytes.saturating_sub(*freed);
            }
        }
    }
    let active = store.segments.active_segment();
    if !dry_run && sparse_ids(&entries, &live, threshold).any(|id| id == active) {
        // Seal the sparse active segment so it can be compacted (once uploads that appended
        // to it have settled); commit the new segment's header length at once so the new file
        // is never an orphan.
        store.segments.seal_active()?;
        store.commit_batch(Batch::default())?;
        entries = store.index.segments()?;
        live = live_record_bytes(store)?;
    }
    // Under a dry run nothing was sealed, so the active segment counts like a sealed one.
    let active = (!dry_run).then(|| store.segments.active_segment());
    let sparse: BTreeSet<SegmentId> = sparse_ids(&entries, &live, threshold)
        .filter(|id| Some(*id) != active)
        .filter(|id| {
            let busy = store.segments.has_unsettled(*id);
            if busy {
                report.compaction_notes.push(format!(
                    "segment {id} skipped: an upload has not yet committed records it holds"
                ));
            }
            !busy
        })
        .collect();
    if dry_run {
        report.segments_compacted = sparse.len() as u64;
        return Ok(());
    }
    let mut live_objects: Vec<(Hash, ObjectEntry)> = Vec::new();
    store.index.for_each_object(|hash, e| {
        if sparse.contains(&e.loc.segment) {
            live_objects.push((*hash, *e));
        }
    })?;
    let total = live_objects.iter().fold(0u64, |sum, (_, e)| {
        sum.saturating_add(u64::from(e.loc.payload_len))
    });
    progress.stage("compacting segments", Some(total));
    for segment in sparse {
        compact_one(store, segment, &live_objects, progress, report)?;
    }
    Ok(())
}

/// Appends a copy of each live record of `segment` and records its relocation in `batch`.
/// Returns the payload bytes copied.
fn copy_live(
    store: &Store,
    segment: SegmentId,
    live_objects: &[(Hash, ObjectEntry)],
    progress: &crate::Progress,
    batch: &mut Batch,
    report: &mut GcReport,
) -> Result<u64, GcError> {
    // A live record that does not read back (header mismatch, I/O) is not copied; the segment
    // is then kept (fsck reports it).
    let mut live: Vec<&(Hash, ObjectEntry)> = live_objects
        .iter()
        .filter(|(_, e)| e.loc.segment == segment)
        .collect();
    live.sort_by_key(|(_, e)| e.loc.offset);
    let mut copied_bytes = 0u64;
    for (id, current) in live {
        let loc = current.loc;
        progress.advance(u64::from(loc.payload_len));
        let payload = match store.segments.read(loc, current.kind, id) {
            Ok(payload) => payload,
            Err(e) => {
                report.compaction_notes.push(format!(
                    "segment {segment}: object {} not copied: {e}",
                    crate::error::hex(id)
                ));
                continue;
            }
        };
        let new_loc = store.segments.append(current.kind, id, &payload)?;
        batch.relocations.push(Relocation {
            hash: *id,
            to: new_loc,
            only_from: Some(loc),
        });
        failpoint::hit("compact.after_copy");
        copied_bytes = copied_bytes.saturating_add(u64::from(loc.payload_len));
    }
    Ok(copied_bytes)
}

fn compact_one(
    store: &Store,
    segment: SegmentId,
    live_objects: &[(Hash, ObjectEntry)],
    progress: &crate::Progress,
    report: &mut GcReport,
) -> Result<(), GcError> {
    let mut batch = Batch::default();
    let copied_bytes = match copy_live(store, segment, live_objects, progress, &mut batch, report) {
        Ok(bytes) => bytes,
        Err(e) => {
            // The copies made so far are given up (dead bytes past nothing).
            store.segments.settle(&batch.appended_records());
            return Err(e);
        }
    };
    let copies = batch.relocations.len() as u64;
    batch.retire_segments.push(segment);
    let outcome = store.commit_batch_after_sync_failpoint(batch, "compact.after_sync")?;
    failpoint::hit("compact.after_commit");
    report.records_copied = report.records_copied.saturating_add(copies);
    report.bytes_copied = report.bytes_copied.saturating_add(copied_bytes);
    report.segments_compacted = report.segments_compacted.saturating_add(1);
    if !outcome.retired.contains(&segment) {
        report.compaction_notes.push(format!(
            "segment {segment} kept: index entries outside its framed records still point there"
        ));
        return Ok(());
    }
    match store.segments.remove_segment(segment) {
        Ok(()) => {
            report.segments_removed = report.segments_removed.saturating_add(1);
            failpoint::hit("compact.after_unlink");
        }
        Err(e) => {
            tracing::warn!(segment, error = %e, "unlink after compaction failed; orphan left for fsck");
            report.orphan_files.push(
                store
                    .segments
                    .dir()
                    .join(net_mesh_segments::segment_file_name(segment))
                    .display()
                    .to_string(),
            );
        }
    }
    Ok(())
}
