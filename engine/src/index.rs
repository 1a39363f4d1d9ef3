//! The redb index: where every object lives, its reference count, the pinned roots and each
//! segment's committed length. Layouts of the values are in docs/FORMAT.md §3.
//!
//! All changes of one batch are applied by [`Index::commit`] in ONE write transaction, which the
//! caller runs only after the segment bytes it points at are durable.
#![deny(clippy::arithmetic_side_effects)]

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use net_mesh_segments::{RecordKind, RecordLoc, SegmentId};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::codec::{BlobRef, Hash};

/// Version of the index layout (the `_v1` suffix of every table name).
pub const INDEX_FORMAT_VERSION: u8 = 1;

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta_v1");
pub(crate) const OBJECTS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("objects_v1");
pub(crate) const PINS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("pins_v1");
pub(crate) const SEGMENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("segments_v1");

const META_FORMAT_KEY: &str = "format_version";

/// Size of an encoded [`ObjectEntry`] (docs/FORMAT.md §3.2).
pub const OBJECT_ENTRY_LEN: usize = 38;
/// Size of an encoded segment entry (docs/FORMAT.md §3.3).
pub const SEGMENT_ENTRY_LEN: usize = 17;
/// Fixed part of an encoded pin (docs/FORMAT.md §3.4), before the name and the ref bytes.
pub const PIN_HEADER_LEN: usize = 11;
/// Longest pin label in bytes.
pub const MAX_PIN_NAME: usize = 1024;

/// Why an index operation failed.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("redb: {0}")]
    Db(Box<redb::Error>),
    #[error("index entry {table}[{key}] is corrupted: {reason}")]
    Corrupted {
        table: &'static str,
        key: String,
        reason: String,
    },
    #[error(
        "index format version {found} is not supported (this build reads {INDEX_FORMAT_VERSION})"
    )]
    UnsupportedFormat { found: u8 },
    #[error("object {0} is referenced but not in the index")]
    MissingObject(String),
    #[error("staging: {0}")]
    Staging(crate::staging_table::StagingTableError),
}

impl IndexError {
    pub fn is_corruption(&self) -> bool {
        match self {
            IndexError::Staging(e) => !e.is_conflict(),
            _ => matches!(
                self,
                IndexError::Corrupted { .. } | IndexError::MissingObject(_)
            ),
        }
    }
}

impl<E: Into<redb::Error>> From<E> for IndexError {
    fn from(e: E) -> Self {
        IndexError::Db(Box::new(e.into()))
    }
}

fn corrupted(table: &'static str, key: &[u8], reason: impl Into<String>) -> IndexError {
    let key = key.iter().take(8).map(|b| format!("{b:02x}")).collect();
    IndexError::Corrupted {
        table,
        key,
        reason: reason.into(),
    }
}

/// One object's index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectEntry {
    pub kind: RecordKind,
    pub loc: RecordLoc,
    /// Parents that reference the object plus pins that name it.
    pub refcount: u64,
    pub created_unix_ms: u64,
}

fn take<const N: usize>(bytes: &[u8], at: usize) -> Option<[u8; N]> {
    bytes.get(at..at.checked_add(N)?)?.try_into().ok()
}

impl ObjectEntry {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(OBJECT_ENTRY_LEN);
        out.push(INDEX_FORMAT_VERSION);
        out.push(self.kind as u8);
        out.extend_from_slice(&self.loc.segment.to_le_bytes());
        out.extend_from_slice(&self.loc.offset.to_le_bytes());
        out.extend_from_slice(&self.loc.payload_len.to_le_bytes());
        out.extend_from_slice(&self.refcount.to_le_bytes());
        out.extend_from_slice(&self.created_unix_ms.to_le_bytes());
        out
    }

    pub fn decode(key: &[u8], bytes: &[u8]) -> Result<ObjectEntry, IndexError> {
        let bad = |reason: String| corrupted("objects_v1", key, reason);
        if bytes.len() != OBJECT_ENTRY_LEN {
            return Err(bad(format!("length {} != {OBJECT_ENTRY_LEN}", bytes.len())));
        }
        let version = bytes.first().copied().unwrap_or_default();
        if version != INDEX_FORMAT_VERSION {
            return Err(bad(format!("entry version {version}")));
        }
        let kind_byte = bytes.get(1).copied().unwrap_or_default();
        let kind = RecordKind::try_from(kind_byte).map_err(|_| bad(format!("kind {kind_byte}")))?;
        let short = || bad("short entry".to_string());
        Ok(ObjectEntry {
            kind,
            loc: RecordLoc {
                segment: u64::from_le_bytes(take(bytes, 2).ok_or_else(short)?),
                offset: u64::from_le_bytes(take(bytes, 10).ok_or_else(short)?),
                payload_len: u32::from_le_bytes(take(bytes, 18).ok_or_else(short)?),
            },
            refcount: u64::from_le_bytes(take(bytes, 22).ok_or_else(short)?),
            created_unix_ms: u64::from_le_bytes(take(bytes, 30).ok_or_else(short)?),
        })
    }
}

/// A segment's entry: the length up to which its bytes are durable and referenced by the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SegmentEntry {
    pub committed_len: u64,
    /// Payload bytes of the objects the index places in this segment.
    pub live_bytes: u64,
}

impl SegmentEntry {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SEGMENT_ENTRY_LEN);
        out.push(INDEX_FORMAT_VERSION);
        out.extend_from_slice(&self.committed_len.to_le_bytes());
        out.extend_from_slice(&self.live_bytes.to_le_bytes());
        out
    }

    pub fn decode(segment: SegmentId, bytes: &[u8]) -> Result<SegmentEntry, IndexError> {
        let bad = |reason: &str| corrupted("segments_v1", &segment.to_be_bytes(), reason);
        if bytes.len() != SEGMENT_ENTRY_LEN || bytes.first() != Some(&INDEX_FORMAT_VERSION) {
            return Err(bad("bad length or version"));
        }
        Ok(SegmentEntry {
            committed_len: u64::from_le_bytes(take(bytes, 1).ok_or_else(|| bad("short"))?),
            live_bytes: u64::from_le_bytes(take(bytes, 9).ok_or_else(|| bad("short"))?),
        })
    }
}

/// A pinned root: a blob the user keeps, with an optional label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    pub blob_ref: BlobRef,
    pub name: String,
    pub created_unix_ms: u64,
}

impl Pin {
    pub fn encode(&self) -> Vec<u8> {
        let name = self.name.as_bytes();
        let name = name.get(..name.len().min(MAX_PIN_NAME)).unwrap_or_default();
        let name_len = u16::try_from(name.len()).unwrap_or(0);
        let mut out =
            Vec::with_capacity(PIN_HEADER_LEN.saturating_add(name.len()).saturating_add(64));
        out.push(INDEX_FORMAT_VERSION);
        out.extend_from_slice(&self.created_unix_ms.to_le_bytes());
        out.extend_from_slice(&name_len.to_le_bytes());
        out.extend_from_slice(name);
        out.extend_from_slice(&self.blob_ref.encode());
        out
    }

    pub fn decode(key: &[u8], bytes: &[u8]) -> Result<Pin, IndexError> {
        let bad = |reason: String| corrupted("pins_v1", key, reason);
        if bytes.first() != Some(&INDEX_FORMAT_VERSION) {
            return Err(bad("bad version".into()));
        }
        let created_unix_ms =
            u64::from_le_bytes(take(bytes, 1).ok_or_else(|| bad("short".into()))?);
        let name_len = usize::from(u16::from_le_bytes(
            take(bytes, 9).ok_or_else(|| bad("short".into()))?,
        ));
        if name_len > MAX_PIN_NAME {
            return Err(bad(format!("name length {name_len} > {MAX_PIN_NAME}")));
        }
        let name_end = PIN_HEADER_LEN.saturating_add(name_len);
        let name = bytes
            .get(PIN_HEADER_LEN..name_end)
            .ok_or_else(|| bad("short name".into()))?;
        let name = String::from_utf8(name.to_vec()).map_err(|_| bad("name not UTF-8".into()))?;
        let ref_bytes = bytes.get(name_end..).unwrap_or_default();
        let blob_ref = BlobRef::decode(ref_bytes).map_err(|e| bad(format!("blob ref: {e}")))?;
        Ok(Pin {
            blob_ref,
            name,
            created_unix_ms,
        })
    }
}

/// The stable id of a blob ref: keys the pin table and is what `blob ls` shows.
pub fn blob_id(blob_ref: &BlobRef) -> Hash {
    blake3::derive_key("net-mesh 2026-11 blob ref id v1", &blob_ref.encode())
}

/// Objects a pin counts as references: the chunks of a Small or Manifest blob, the root node of
/// a Tree.
pub fn pin_roots(blob_ref: &BlobRef) -> Vec<Hash> {
    match blob_ref {
        BlobRef::Small { hash, .. } => vec![*hash],
        BlobRef::Manifest { chunks, .. } => chunks.iter().map(|c| c.hash).collect(),
        BlobRef::Tree { root_hash, .. } => vec![*root_hash],
    }
}

/// Everything one write transaction changes.
#[derive(Debug, Default)]
pub struct Batch {
    /// New objects; an id already in the index is skipped (another writer stored it first).
    pub new_objects: Vec<(Hash, RecordKind, RecordLoc)>,
    /// Reference count changes, applied after the new objects exist.
    pub ref_deltas: HashMap<Hash, i64>,
    /// Durable lengths returned by `Segments::sync` (committed lengths only ever grow).
    pub segment_lengths: Vec<(SegmentId, u64)>,
    pub pins_add: Vec<Pin>,
    pub pins_remove: Vec<Hash>,
    /// Staging checkpoint changes (resumable uploads), applied in the same transaction.
    pub staging: Vec<crate::staging_table::StagingOp>,
    /// Objects whose bytes were rewritten elsewhere (repair of a corrupt record, compaction):
    /// the entry keeps its kind, count and creation time and points at the new location.
    /// Applied after `new_objects`; see [`Batch::relocate`].
    pub relocations: Vec<(Hash, RecordLoc)>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.new_objects.is_empty()
            && self.ref_deltas.is_empty()
            && self.segment_lengths.is_empty()
            && self.pins_add.is_empty()
            && self.pins_remove.is_empty()
            && self.staging.is_empty()
            && self.relocations.is_empty()
    }

    /// Repoints object `hash` at `new_loc` when the batch commits (`Index::relocate`'s batch
    /// form). The record at `new_loc` must hold the same object (same id, same payload length)
    /// and be durable before the commit, like every location the index stores; the entry must
    /// exist (else `MissingObject`). The old record becomes dead bytes for compaction.
    pub fn relocate(&mut self, hash: Hash, new_loc: RecordLoc) {
        self.relocations.push((hash, new_loc));
    }

    pub fn add_ref(&mut self, hash: Hash, delta: i64) {
        let d = self.ref_deltas.entry(hash).or_insert(0);
        *d = d.saturating_add(delta);
    }
}

/// What a batch commit changed that the caller reports.
#[derive(Debug, Default, Clone, Copy)]
pub struct CommitOutcome {
    /// New objects actually inserted (not already present).
    pub inserted: u64,
    pub inserted_bytes: u64,
    /// Pins added (not already present) and removed (present).
    pub pins_added: u64,
    pub pins_removed: u64,
    /// Objects repointed by `Batch::relocations`.
    pub relocated: u64,
}

/// The index database.
#[derive(Debug)]
pub struct Index {
    db: Database,
}

fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Index {
    /// Opens (creating if needed) the index at `path` and checks its format version.
    pub fn open(path: &Path) -> Result<Index, IndexError> {
        Self::open_on(&crate::storage::RedbFile, path)
    }

    /// [`Index::open`] on an explicit index storage.
    pub fn open_on(
        storage: &dyn crate::storage::IndexStorage,
        path: &Path,
    ) -> Result<Index, IndexError> {
        let db = storage.open_database(path)?;
        let txn = db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            let found = meta.get(META_FORMAT_KEY)?.map(|v| v.value().to_vec());
            match found.as_deref() {
                None => {
                    meta.insert(META_FORMAT_KEY, [INDEX_FORMAT_VERSION].as_slice())?;
                }
                Some([v]) if *v == INDEX_FORMAT_VERSION => {}
                Some(other) => {
                    return Err(IndexError::UnsupportedFormat {
                        found: other.first().copied().unwrap_or(0),
                    });
                }
            }
            txn.open_table(OBJECTS)?;
            txn.open_table(PINS)?;
            txn.open_table(SEGMENTS)?;
            txn.open_table(crate::staging_table::STAGING)?;
        }
        txn.commit()?;
        Ok(Index { db })
    }

    /// Every segment's entry.
    pub fn segments(&self) -> Result<BTreeMap<SegmentId, SegmentEntry>, IndexError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(SEGMENTS)?;
        let mut out = BTreeMap::new();
        for row in table.iter()? {
            let (k, v) = row?;
            out.insert(k.value(), SegmentEntry::decode(k.value(), v.value())?);
        }
        Ok(out)
    }

    /// The redb database (staging checkpoints are read through it).
    pub(crate) fn database(&self) -> &Database {
        &self.db
    }

    /// A consistent snapshot for lookups.
    pub fn reader(&self) -> Result<IndexReader, IndexError> {
        let txn = self.db.begin_read()?;
        Ok(IndexReader {
            objects: txn.open_table(OBJECTS)?,
            pins: txn.open_table(PINS)?,
        })
    }

    /// Applies one batch in one write transaction. The segment bytes it references must already
    /// be durable.
    pub fn commit(&self, batch: &Batch) -> Result<CommitOutcome, IndexError> {
        let mut outcome = CommitOutcome::default();
        let now = now_unix_ms();
        let txn = self.db.begin_write()?;
        {
            let mut objects = txn.open_table(OBJECTS)?;
            let mut segments = txn.open_table(SEGMENTS)?;
            let mut pins = txn.open_table(PINS)?;
            let mut lost_refs = txn.open_table(LOST_REFS)?;
            let mut seg_entries: BTreeMap<SegmentId, SegmentEntry> = BTreeMap::new();
            let load_seg = |segments: &redb::Table<u64, &[u8]>,
                            id: SegmentId|
             -> Result<SegmentEntry, IndexError> {
                Ok(match segments.get(id)? {
                    Some(v) => SegmentEntry::decode(id, v.value())?,
                    None => SegmentEntry::default(),
                })
            };
            for &(id, len) in &batch.segment_lengths {
                let mut e = match seg_entries.get(&id) {
                    Some(e) => *e,
                    None => load_seg(&segments, id)?,
                };
                e.committed_len = e.committed_len.max(len);
                seg_entries.insert(id, e);
            }
            for (hash, kind, loc) in &batch.new_objects {
                if objects.get(hash)?.is_some() {
                    continue;
                }
                let entry = ObjectEntry {
                    kind: *kind,
                    loc: *loc,
                    // gc: an object fsck --repair dropped while still referenced gets back the
                    // count its surviving parents and pins hold (§3.10).
                    refcount: take_lost_refs(&mut lost_refs, hash)?,
                    created_unix_ms: now,
                };
                objects.insert(hash, entry.encode().as_slice())?;
                let mut e = match seg_entries.get(&loc.segment) {
                    Some(e) => *e,
                    None => load_seg(&segments, loc.segment)?,
                };
                e.live_bytes = e.live_bytes.saturating_add(u64::from(loc.payload_len));
                seg_entries.insert(loc.segment, e);
                outcome.inserted = outcome.inserted.saturating_add(1);
                outcome.inserted_bytes = outcome
                    .inserted_bytes
                    .saturating_add(u64::from(loc.payload_len));
            }
            // --- relocations (issue 4: repair; compaction) ---
            for (hash, loc) in &batch.relocations {
                let Some(raw) = objects.get(hash)?.map(|v| v.value().to_vec()) else {
                    return Err(IndexError::MissingObject(crate::error::hex(hash)));
                };
                let mut entry = ObjectEntry::decode(hash, &raw)?;
                if entry.loc.payload_len != loc.payload_len {
                    return Err(corrupted(
                        "objects_v1",
                        hash,
                        format!(
                            "relocation to a record of {} bytes, the object has {}",
                            loc.payload_len, entry.loc.payload_len
                        ),
                    ));
                }
                if entry.loc == *loc {
                    continue;
                }
                let len = u64::from(loc.payload_len);
                let mut old = match seg_entries.get(&entry.loc.segment) {
                    Some(e) => *e,
                    None => load_seg(&segments, entry.loc.segment)?,
                };
                old.live_bytes = old.live_bytes.saturating_sub(len);
                seg_entries.insert(entry.loc.segment, old);
                let mut new = match seg_entries.get(&loc.segment) {
                    Some(e) => *e,
                    None => load_seg(&segments, loc.segment)?,
                };
                new.live_bytes = new.live_bytes.saturating_add(len);
                seg_entries.insert(loc.segment, new);
                entry.loc = *loc;
                objects.insert(hash, entry.encode().as_slice())?;
                outcome.relocated = outcome.relocated.saturating_add(1);
            }
            let mut deltas = batch.ref_deltas.clone();
            crate::staging_table::apply(&txn, &batch.staging, &mut deltas)?;
            for pin in &batch.pins_add {
                let id = blob_id(&pin.blob_ref);
                if pins.get(&id)?.is_some() {
                    continue;
                }
                pins.insert(&id, pin.encode().as_slice())?;
                outcome.pins_added = outcome.pins_added.saturating_add(1);
                for root in pin_roots(&pin.blob_ref) {
                    let d = deltas.entry(root).or_insert(0);
                    *d = d.saturating_add(1);
                }
            }
            for id in &batch.pins_remove {
                let Some(old) = pins.remove(id)?.map(|v| v.value().to_vec()) else {
                    continue;
                };
                let pin = Pin::decode(id, &old)?;
                outcome.pins_removed = outcome.pins_removed.saturating_add(1);
                for root in pin_roots(&pin.blob_ref) {
                    let d = deltas.entry(root).or_insert(0);
                    *d = d.saturating_sub(1);
                }
            }
            for (hash, delta) in deltas {
                if delta == 0 {
                    continue;
                }
                let Some(raw) = objects.get(&hash)?.map(|v| v.value().to_vec()) else {
                    return Err(IndexError::MissingObject(crate::error::hex(&hash)));
                };
                let mut entry = ObjectEntry::decode(&hash, &raw)?;
                entry.refcount = entry
                    .refcount
                    .checked_add_signed(delta)
                    .ok_or_else(|| corrupted("objects_v1", &hash, "reference count underflow"))?;
                objects.insert(&hash, entry.encode().as_slice())?;
            }
            for (id, e) in seg_entries {
                segments.insert(id, e.encode().as_slice())?;
            }
        }
        net_mesh_segments::failpoint::hit("engine.index_commit.before");
        txn.commit()?;
        net_mesh_segments::failpoint::hit("engine.index_commit.after");
        Ok(outcome)
    }
}

// ---- GC, compaction and fsck support (branch gc) -------------------------------------------

impl Index {
    /// The database, for the GC, compaction and fsck transactions (engine-internal).
    pub(crate) fn db(&self) -> &Database {
        &self.db
    }

    /// Calls `f` with every object entry, in id order, from one read snapshot, without
    /// collecting them (GC's scan and compaction keep only what they need).
    pub fn for_each_object(
        &self,
        mut f: impl FnMut(&Hash, &ObjectEntry),
    ) -> Result<(), IndexError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(OBJECTS)?;
        for row in table.iter()? {
            let (k, v) = row?;
            let id = *k.value();
            f(&id, &ObjectEntry::decode(&id, v.value())?);
        }
        Ok(())
    }

    /// The reference count recorded for an object that was dropped while still referenced
    /// (`lost_refs_v1`, docs/FORMAT.md §3.10), if any.
    pub fn lost_refs(&self, hash: &Hash) -> Result<Option<u64>, IndexError> {
        let txn = self.db.begin_read()?;
        let table = match txn.open_table(LOST_REFS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        match table.get(hash)? {
            Some(v) => Ok(Some(decode_lost_refs(hash, v.value())?)),
            None => Ok(None),
        }
    }

    /// Every object entry, in id order (for fsck; O(objects) memory).
    pub fn objects(&self) -> Result<Vec<(Hash, ObjectEntry)>, IndexError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(OBJECTS)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (k, v) = row?;
            let id = *k.value();
            out.push((id, ObjectEntry::decode(&id, v.value())?));
        }
        Ok(out)
    }
}

/// Reads one object entry inside a write transaction.
pub(crate) fn object_in(
    table: &redb::Table<&[u8; 32], &[u8]>,
    hash: &Hash,
) -> Result<Option<ObjectEntry>, IndexError> {
    match table.get(hash)?.map(|v| v.value().to_vec()) {
        Some(raw) => Ok(Some(ObjectEntry::decode(hash, &raw)?)),
        None => Ok(None),
    }
}

/// Reads one segment entry inside a write transaction (absent → default).
pub(crate) fn segment_in(
    table: &redb::Table<u64, &[u8]>,
    id: SegmentId,
) -> Result<Option<SegmentEntry>, IndexError> {
    match table.get(id)?.map(|v| v.value().to_vec()) {
        Some(raw) => Ok(Some(SegmentEntry::decode(id, &raw)?)),
        None => Ok(None),
    }
}

/// Objects `fsck --repair` dropped while parents or pins still named them, with the count
/// those references hold (docs/FORMAT.md §3.10). Value: version byte 1, then u64 LE count.
pub(crate) const LOST_REFS: TableDefinition<&[u8; 32], &[u8]> =
    TableDefinition::new("lost_refs_v1");
/// Size of an encoded lost-refs value.
pub const LOST_REFS_LEN: usize = 9;

pub(crate) fn encode_lost_refs(count: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(LOST_REFS_LEN);
    out.push(INDEX_FORMAT_VERSION);
    out.extend_from_slice(&count.to_le_bytes());
    out
}

pub(crate) fn decode_lost_refs(hash: &Hash, bytes: &[u8]) -> Result<u64, IndexError> {
    if bytes.len() != LOST_REFS_LEN || bytes.first() != Some(&INDEX_FORMAT_VERSION) {
        return Err(corrupted("lost_refs_v1", hash, "bad length or version"));
    }
    Ok(u64::from_le_bytes(
        take(bytes, 1).ok_or_else(|| corrupted("lost_refs_v1", hash, "short"))?,
    ))
}

/// Removes and returns the lost reference count of `hash` (0 when none is recorded).
pub(crate) fn take_lost_refs(
    table: &mut redb::Table<&[u8; 32], &[u8]>,
    hash: &Hash,
) -> Result<u64, IndexError> {
    let Some(raw) = table.remove(hash)?.map(|v| v.value().to_vec()) else {
        return Ok(0);
    };
    decode_lost_refs(hash, &raw)
}

// ---- end of GC, compaction and fsck support -------------------------------------------------

impl Index {
    /// Repoints object `hash` at `new_loc` in one transaction, recording `segment_lengths`
    /// (from `Segments::sync`, which must have made `new_loc` durable first). Prefer
    /// `Batch::relocate` + `Store` commit, which does the sync; this is the index-level form.
    pub fn relocate(
        &self,
        hash: Hash,
        new_loc: RecordLoc,
        segment_lengths: Vec<(SegmentId, u64)>,
    ) -> Result<CommitOutcome, IndexError> {
        let mut batch = Batch {
            segment_lengths,
            ..Batch::default()
        };
        batch.relocate(hash, new_loc);
        self.commit(&batch)
    }
}

/// A read snapshot of the index.
#[derive(Debug)]
pub struct IndexReader {
    objects: redb::ReadOnlyTable<&'static [u8; 32], &'static [u8]>,
    pins: redb::ReadOnlyTable<&'static [u8; 32], &'static [u8]>,
}

impl IndexReader {
    pub fn object(&self, hash: &Hash) -> Result<Option<ObjectEntry>, IndexError> {
        match self.objects.get(hash)? {
            Some(v) => Ok(Some(ObjectEntry::decode(hash, v.value())?)),
            None => Ok(None),
        }
    }

    pub fn contains(&self, hash: &Hash) -> Result<bool, IndexError> {
        Ok(self.objects.get(hash)?.is_some())
    }

    /// Every pin with its blob id, in id order.
    pub fn pins(&self) -> Result<Vec<(Hash, Pin)>, IndexError> {
        let mut out = Vec::new();
        for row in self.pins.iter()? {
            let (k, v) = row?;
            let id = *k.value();
            out.push((id, Pin::decode(&id, v.value())?));
        }
        Ok(out)
    }

    pub fn pin(&self, id: &Hash) -> Result<Option<Pin>, IndexError> {
        match self.pins.get(id)? {
            Some(v) => Ok(Some(Pin::decode(id, v.value())?)),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_entry_round_trips_and_rejects_bad_bytes() {
        let e = ObjectEntry {
            kind: RecordKind::LeafNode,
            loc: RecordLoc {
                segment: 7,
                offset: 4096,
                payload_len: 123,
            },
            refcount: 3,
            created_unix_ms: 1_700_000_000_000,
        };
        let bytes = e.encode();
        assert_eq!(ObjectEntry::decode(&[0], &bytes).unwrap(), e);
        assert!(ObjectEntry::decode(&[0], &bytes[..37]).is_err());
        let mut bad = bytes.clone();
        bad[0] = 9;
        assert!(ObjectEntry::decode(&[0], &bad).is_err());
        let mut bad = bytes.clone();
        bad[1] = 0xEE;
        assert!(matches!(
            ObjectEntry::decode(&[0], &bad),
            Err(IndexError::Corrupted { .. })
        ));
    }

    #[test]
    fn object_entry_golden_bytes() {
        let e = ObjectEntry {
            kind: RecordKind::Chunk,
            loc: RecordLoc {
                segment: 1,
                offset: 2,
                payload_len: 3,
            },
            refcount: 4,
            created_unix_ms: 5,
        };
        let hex: String = e.encode().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "0101\
             0100000000000000\
             0200000000000000\
             03000000\
             0400000000000000\
             0500000000000000"
        );
    }
}
