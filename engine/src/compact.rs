//! Compaction: reclaims the space of deleted objects by copying a sparse sealed segment's live
//! records forward and unlinking it.
//!
//! Per segment (the caller holds the GC write guard, so no upload appends meanwhile):
//! 1. frame the segment up to its committed length; a framing error leaves it alone (fsck);
//! 2. copy every record the index still places there to the active segment (`append`);
//!    failpoint `compact.after_copy`;
//! 3. `Segments::sync` (fdatasync); failpoint `compact.after_sync`;
//! 4. ONE index transaction relocates the copied objects (live bytes move with them), stores
//!    the new committed lengths and drops the old segment's entry — only if its live bytes
//!    reach exactly 0, i.e. nothing else still points there; failpoint `compact.after_commit`;
//! 5. unlink the old file (and fsync the directory); failpoint `compact.after_unlink`.
//!
//! A crash before 4 leaves copies past nothing (unreferenced bytes in the active segment, or
//! past its committed length, truncated at open); a crash between 4 and 5 leaves an orphan file
//! that fsck reports and `fsck --repair` removes. Counts are never touched. The active segment
//! is never compacted; when it is itself sparse it is sealed first.

use std::collections::BTreeMap;

use net_mesh_segments::SegmentId;
use net_mesh_segments::codec::FILE_HEADER_LEN;
use net_mesh_segments::failpoint;

use crate::gc::{GcError, GcReport};
use crate::index::{Batch, OBJECTS, SEGMENTS, SegmentEntry, object_in, segment_in};
use crate::store::Store;

const FILE_HEADER: u64 = FILE_HEADER_LEN as u64;

/// Fraction of a segment's committed record bytes that are live payload.
fn live_ratio(e: &SegmentEntry) -> f64 {
    let area = e.committed_len.saturating_sub(FILE_HEADER);
    if area == 0 {
        return 1.0;
    }
    e.live_bytes as f64 / area as f64
}

/// Below the threshold, or holding records but nothing live at all.
fn is_sparse(e: &SegmentEntry, threshold: f64) -> bool {
    e.committed_len > FILE_HEADER && (live_ratio(e) < threshold || e.live_bytes == 0)
}

/// Compacts every sealed segment below `threshold`. Caller holds the GC write guard.
pub(crate) fn compact(
    store: &Store,
    threshold: f64,
    dry_run: bool,
    report: &mut GcReport,
) -> Result<(), GcError> {
    let mut entries = store.index.segments()?;
    let active = store.segments.active_segment();
    if let Some(e) = entries.get(&active)
        && is_sparse(e, threshold)
        && !dry_run
    {
        // Seal the sparse active segment so it can be compacted; commit the new segment's
        // header length at once so the new file is never an orphan.
        store.segments.seal_active()?;
        let mut batch = Batch::default();
        store
            .commit_batch(&mut batch)
            .map_err(|e| GcError::Segments(store_to_segment_error(e)))?;
        entries = store.index.segments()?;
    }
    let active = store.segments.active_segment();
    let sparse: BTreeMap<SegmentId, SegmentEntry> = entries
        .into_iter()
        .filter(|(id, e)| *id != active && is_sparse(e, threshold))
        .collect();
    for (segment, entry) in sparse {
        if dry_run {
            report.segments_compacted = report.segments_compacted.saturating_add(1);
            continue;
        }
        compact_one(store, segment, entry, report)?;
    }
    Ok(())
}

fn store_to_segment_error(e: crate::error::StoreError) -> net_mesh_segments::SegmentError {
    match e {
        crate::error::StoreError::Segments(s) => s,
        other => net_mesh_segments::SegmentError::InvalidConfig(other.to_string()),
    }
}

fn compact_one(
    store: &Store,
    segment: SegmentId,
    entry: SegmentEntry,
    report: &mut GcReport,
) -> Result<(), GcError> {
    let items = store.segments.scan(segment, entry.committed_len)?;
    let reader = store.index.reader()?;
    let mut moves = Vec::new();
    let mut copied_bytes = 0u64;
    for item in items {
        let (loc, kind, id) = match item {
            Ok(rec) => rec,
            Err(e) => {
                report
                    .compaction_notes
                    .push(format!("segment {segment} kept: framing error: {e}"));
                return Ok(());
            }
        };
        let Some(current) = reader.object(&id)? else {
            continue;
        };
        if current.loc != loc {
            continue;
        }
        let payload = store.segments.read(loc, kind, &id)?;
        let new_loc = store.segments.append(kind, &id, &payload)?;
        failpoint::hit("compact.after_copy");
        copied_bytes = copied_bytes.saturating_add(u64::from(loc.payload_len));
        moves.push((id, loc, new_loc));
    }
    let lengths = store.segments.sync().inspect_err(|_| {
        store
            .poisoned
            .store(true, std::sync::atomic::Ordering::Release)
    })?;
    failpoint::hit("compact.after_sync");

    let txn = store.index.db().begin_write()?;
    let dropped;
    {
        let mut objects = txn.open_table(OBJECTS)?;
        let mut segments = txn.open_table(SEGMENTS)?;
        let mut seg_entries: BTreeMap<SegmentId, SegmentEntry> = BTreeMap::new();
        for (id, len) in &lengths {
            let mut e = segment_in(&segments, *id)?.unwrap_or_default();
            e.committed_len = e.committed_len.max(*len);
            seg_entries.insert(*id, e);
        }
        for (id, old_loc, new_loc) in &moves {
            let Some(mut e) = object_in(&objects, id)? else {
                continue;
            };
            if e.loc != *old_loc {
                continue;
            }
            e.loc = *new_loc;
            objects.insert(id, e.encode().as_slice())?;
            for (seg, add, sub) in [
                (old_loc.segment, 0u64, u64::from(old_loc.payload_len)),
                (new_loc.segment, u64::from(new_loc.payload_len), 0u64),
            ] {
                let mut s = match seg_entries.get(&seg) {
                    Some(s) => *s,
                    None => segment_in(&segments, seg)?.unwrap_or_default(),
                };
                s.live_bytes = s.live_bytes.saturating_add(add).saturating_sub(sub);
                seg_entries.insert(seg, s);
            }
        }
        let old = match seg_entries.remove(&segment) {
            Some(s) => s,
            None => segment_in(&segments, segment)?.unwrap_or_default(),
        };
        for (id, e) in &seg_entries {
            segments.insert(*id, e.encode().as_slice())?;
        }
        if old.live_bytes == 0 {
            segments.remove(segment)?;
            dropped = true;
        } else {
            // Something the scan did not see still points here: keep the segment.
            segments.insert(segment, old.encode().as_slice())?;
            dropped = false;
        }
    }
    txn.commit()?;
    failpoint::hit("compact.after_commit");
    report.records_copied = report.records_copied.saturating_add(moves.len() as u64);
    report.bytes_copied = report.bytes_copied.saturating_add(copied_bytes);
    report.segments_compacted = report.segments_compacted.saturating_add(1);
    if !dropped {
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
