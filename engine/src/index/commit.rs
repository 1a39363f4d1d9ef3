//! [`Index::commit`]: one batch, one write transaction, every rule checked inside it.
#![deny(clippy::arithmetic_side_effects)]

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use net_mesh_segments::codec::RECORD_HEADER_LEN;
use net_mesh_segments::{RecordLoc, SegmentId};
use redb::ReadableTable;

use super::extension::{ExtensionError, ExtensionTxn};

use super::{
    Batch, CHANNELS, ChannelEntry, CommitOutcome, Index, IndexError, LOST_REFS, OBJECTS,
    ObjectEntry, PINS, Pin, SEGMENTS, SegmentEntry, blob_id, corrupted, decode_lost_refs,
    encode_lost_refs, object_in, pin_roots, segment_in, take_lost_refs,
};

const RECORD_HEADER_LEN_U64: u64 = RECORD_HEADER_LEN as u64;

pub(super) fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Index {
    /// Applies one batch in one write transaction. The segment bytes it references must already
    /// be durable, and every location it stores must end within a committed length (the
    /// batch's own `segment_lengths` or one already stored): a batch that breaks this is
    /// refused with [`IndexError::PastCommitted`] before anything is written.
    pub fn commit(&self, batch: &Batch) -> Result<CommitOutcome, IndexError> {
        let mut outcome = CommitOutcome::default();
        let now = now_unix_ms();
        let txn = self.db.begin_write()?;
        {
            let mut objects = txn.open_table(OBJECTS)?;
            let mut pins = txn.open_table(PINS)?;
            let mut channels = txn.open_table(CHANNELS)?;
            let mut lost_refs = txn.open_table(LOST_REFS)?;
            let mut segs = SegmentTally::new(txn.open_table(SEGMENTS)?);
            let retired_below = self.retired_below.load(Ordering::Acquire);
            for &(id, len) in &batch.segment_lengths {
                // A length taken by a sync before compaction retired the segment (and unlinked
                // its file) must not bring its entry back: the index would then name a
                // segment that no longer exists, and the store would not open.
                if id < retired_below && !segs.has(id)? {
                    continue;
                }
                let e = segs.get(id)?;
                e.committed_len = e.committed_len.max(len);
            }
            let stored_locs = batch
                .new_objects
                .iter()
                .map(|o| &o.loc)
                .chain(batch.relocations.iter().map(|r| &r.to));
            for loc in stored_locs {
                segs.check_committed(loc)?;
            }
            let mut deltas = batch.ref_deltas.clone();
            for new in &batch.new_objects {
                if objects.get(&new.hash)?.is_some() {
                    continue;
                }
                let entry = ObjectEntry {
                    kind: new.kind,
                    loc: new.loc,
                    // An object fsck --repair dropped while still referenced gets back the
                    // count its surviving parents and pins hold (§3.10).
                    refcount: take_lost_refs(&mut lost_refs, &new.hash)?,
                    unreferenced_since_unix_ms: now,
                };
                objects.insert(&new.hash, entry.encode().as_slice())?;
                for child in &new.children {
                    let d = deltas.entry(*child).or_insert(0);
                    *d = d.saturating_add(1);
                }
                segs.add_live(new.loc.segment, new.loc.payload_len)?;
                outcome.inserted = outcome.inserted.saturating_add(1);
                outcome.inserted_bytes = outcome
                    .inserted_bytes
                    .saturating_add(u64::from(new.loc.payload_len));
            }
            for relocation in &batch.relocations {
                let Some(mut entry) = object_in(&objects, &relocation.hash)? else {
                    if relocation.only_from.is_some() {
                        continue;
                    }
                    return Err(IndexError::MissingObject(crate::class::hex(
                        &relocation.hash,
                    )));
                };
                if relocation.only_from.is_some_and(|from| from != entry.loc) {
                    continue;
                }
                let to = relocation.to;
                if entry.loc.payload_len != to.payload_len {
                    return Err(corrupted(
                        "objects_v1",
                        &relocation.hash,
                        format!(
                            "relocation to a record of {} bytes, the object has {}",
                            to.payload_len, entry.loc.payload_len
                        ),
                    ));
                }
                if entry.loc == to {
                    continue;
                }
                segs.sub_live(entry.loc.segment, entry.loc.payload_len)?;
                segs.add_live(to.segment, to.payload_len)?;
                entry.loc = to;
                objects.insert(&relocation.hash, entry.encode().as_slice())?;
                outcome.relocated = outcome.relocated.saturating_add(1);
            }
            for op in &batch.extension_ops {
                let namespace = self
                    .extensions()
                    .get(op.namespace())
                    .ok_or_else(|| ExtensionError::Unregistered(op.namespace().to_string()))?
                    .namespace();
                let mut ext_txn =
                    ExtensionTxn::new(&txn, namespace, &mut deltas, &mut outcome.released, now);
                op.apply(&mut ext_txn)?;
            }
            for name in &batch.channels_create {
                if channels.get(name.as_str())?.is_some() {
                    continue;
                }
                let entry = ChannelEntry {
                    created_unix_ms: now,
                };
                channels.insert(name.as_str(), entry.encode().as_slice())?;
                outcome.channels_created = outcome.channels_created.saturating_add(1);
            }
            for pin in &batch.pins_add {
                let channel = pin.channel.as_str();
                if channels.get(channel)?.is_none() {
                    return Err(IndexError::NoSuchChannel(pin.channel.clone()));
                }
                let id = blob_id(&pin.blob_ref);
                if pins.get((channel, &id))?.is_some() {
                    continue;
                }
                pins.insert((channel, &id), pin.encode().as_slice())?;
                outcome.pins_added = outcome.pins_added.saturating_add(1);
                for root in pin_roots(&pin.blob_ref) {
                    let d = deltas.entry(root).or_insert(0);
                    *d = d.saturating_add(1);
                }
            }
            for rename in &batch.pins_rename {
                let channel = rename.channel.as_str();
                let id = blob_id(&rename.blob_ref);
                let Some(row) = pins.get((channel, &id))?.map(|v| v.value().to_vec()) else {
                    continue;
                };
                let Ok(old) = Pin::decode(channel, &id, &row) else {
                    continue;
                };
                if old.name == rename.name {
                    continue;
                }
                let renamed = Pin {
                    name: rename.name.clone(),
                    ..old
                };
                pins.insert((channel, &id), renamed.encode().as_slice())?;
                outcome.pins_renamed = outcome.pins_renamed.saturating_add(1);
            }
            for (channel, id) in &batch.pins_remove {
                let Some(old) = pins
                    .remove((channel.as_str(), id))?
                    .map(|v| v.value().to_vec())
                else {
                    continue;
                };
                outcome.pins_removed = outcome.pins_removed.saturating_add(1);
                let Ok(pin) = Pin::decode(channel, id, &old) else {
                    // What the row pinned is unknown: leave every count as it is (too high
                    // now, which fsck --repair settles; lowering a guess could lose data).
                    outcome.pins_removed_undecodable.push(*id);
                    continue;
                };
                for root in pin_roots(&pin.blob_ref) {
                    let d = deltas.entry(root).or_insert(0);
                    *d = d.saturating_sub(1);
                }
            }
            for (hash, delta) in deltas {
                if delta == 0 {
                    continue;
                }
                let Some(mut entry) = object_in(&objects, &hash)? else {
                    if delta > 0 {
                        return Err(IndexError::MissingObject(crate::class::hex(&hash)));
                    }
                    // Dropping references to an object that is gone (fsck --repair or a forced
                    // chunk removal dropped it): the count they held, if recorded, loses them.
                    release_lost_refs(&mut lost_refs, &hash, delta.unsigned_abs())?;
                    continue;
                };
                let was = entry.refcount;
                entry.refcount = was
                    .checked_add_signed(delta)
                    .ok_or_else(|| corrupted("objects_v1", &hash, "reference count underflow"))?;
                if entry.refcount == 0 && was != 0 {
                    entry.unreferenced_since_unix_ms = now;
                }
                objects.insert(&hash, entry.encode().as_slice())?;
            }
            for &segment in &batch.retire_segments {
                if segs.retire_if_dead(segment)? {
                    outcome.retired.push(segment);
                }
            }
            segs.store()?;
            // Raised before the commit: a transaction that starts once this one has committed
            // must see it (raised in vain if the commit fails, which only poisons the store).
            if let Some(&top) = outcome.retired.iter().max() {
                self.retired_below
                    .fetch_max(top.saturating_add(1), Ordering::AcqRel);
            }
        }
        net_mesh_segments::failpoint::hit("engine.index_commit.before");
        txn.commit()?;
        net_mesh_segments::failpoint::hit("engine.index_commit.after");
        Ok(outcome)
    }
}

/// Lowers the recorded lost count of `hash` by `by` (removing the row at 0); nothing when no
/// count is recorded.
fn release_lost_refs(
    table: &mut redb::Table<&[u8; 32], &[u8]>,
    hash: &crate::codec::Hash,
    by: u64,
) -> Result<(), IndexError> {
    let Some(raw) = table.get(hash)?.map(|v| v.value().to_vec()) else {
        return Ok(());
    };
    let left = decode_lost_refs(hash, &raw)?.saturating_sub(by);
    if left == 0 {
        table.remove(hash)?;
    } else {
        table.insert(hash, encode_lost_refs(left).as_slice())?;
    }
    Ok(())
}

/// The segment entries one transaction changes, loaded on first use and written back once.
pub(crate) struct SegmentTally<'t> {
    table: redb::Table<'t, u64, &'static [u8]>,
    entries: BTreeMap<SegmentId, SegmentEntry>,
    retired: Vec<SegmentId>,
}

impl<'t> SegmentTally<'t> {
    pub(crate) fn new(table: redb::Table<'t, u64, &'static [u8]>) -> SegmentTally<'t> {
        SegmentTally {
            table,
            entries: BTreeMap::new(),
            retired: Vec::new(),
        }
    }

    /// The entry of `segment` (a default one if the index has none yet).
    pub(crate) fn get(&mut self, segment: SegmentId) -> Result<&mut SegmentEntry, IndexError> {
        if !self.entries.contains_key(&segment) {
            let entry = segment_in(&self.table, segment)?.unwrap_or_default();
            self.entries.insert(segment, entry);
        }
        self.entries
            .get_mut(&segment)
            .ok_or_else(|| corrupted("segments_v1", &segment.to_be_bytes(), "vanished"))
    }

    /// Whether the index has an entry for `segment` (or this transaction made one).
    pub(crate) fn has(&mut self, segment: SegmentId) -> Result<bool, IndexError> {
        Ok(self.entries.contains_key(&segment) || segment_in(&self.table, segment)?.is_some())
    }

    /// Refuses a location that ends past its segment's committed length.
    fn check_committed(&mut self, loc: &RecordLoc) -> Result<(), IndexError> {
        let end = loc
            .offset
            .saturating_add(RECORD_HEADER_LEN_U64)
            .saturating_add(u64::from(loc.payload_len));
        let committed = self.get(loc.segment)?.committed_len;
        if end > committed {
            return Err(IndexError::PastCommitted {
                segment: loc.segment,
                end,
                committed,
            });
        }
        Ok(())
    }

    pub(crate) fn add_live(&mut self, segment: SegmentId, bytes: u32) -> Result<(), IndexError> {
        let e = self.get(segment)?;
        e.live_bytes = e.live_bytes.saturating_add(u64::from(bytes));
        Ok(())
    }

    pub(crate) fn sub_live(&mut self, segment: SegmentId, bytes: u32) -> Result<(), IndexError> {
        let e = self.get(segment)?;
        e.live_bytes = e.live_bytes.saturating_sub(u64::from(bytes));
        Ok(())
    }

    /// Drops the entry of `segment` if no object lives there; returns whether it did.
    fn retire_if_dead(&mut self, segment: SegmentId) -> Result<bool, IndexError> {
        if self.get(segment)?.live_bytes != 0 {
            return Ok(false);
        }
        self.entries.remove(&segment);
        self.retired.push(segment);
        Ok(true)
    }

    /// Writes every changed entry back (and removes the retired ones).
    pub(crate) fn store(mut self) -> Result<(), IndexError> {
        for (id, e) in &self.entries {
            self.table.insert(*id, e.encode().as_slice())?;
        }
        for id in &self.retired {
            self.table.remove(*id)?;
        }
        Ok(())
    }
}
