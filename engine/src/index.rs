//! The redb index: where every object lives, its reference count, the pinned roots and each
//! segment's committed length. Layouts of the values are in docs/FORMAT.md §3.
//!
//! All changes of one batch are applied by [`Index::commit`] in ONE write transaction, which the
//! caller runs only after the segment bytes it points at are durable.
#![deny(clippy::arithmetic_side_effects)]

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use net_mesh_segments::codec::RECORD_HEADER_LEN;
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

const RECORD_HEADER_LEN_U64: u64 = RECORD_HEADER_LEN as u64;

/// Size of an encoded [`ObjectEntry`] (docs/FORMAT.md §3.2).
pub const OBJECT_ENTRY_LEN: usize = 38;
/// Size of an encoded segment entry (docs/FORMAT.md §3.3).
pub const SEGMENT_ENTRY_LEN: usize = 17;
/// Fixed part of an encoded pin (docs/FORMAT.md §3.4), before the name and the ref bytes.
pub const PIN_HEADER_LEN: usize = 11;
/// Longest pin label in bytes.
pub const MAX_PIN_NAME: usize = 1024;

/// Why a pin name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pin name is {len} bytes long; at most {MAX_PIN_NAME} bytes are allowed")]
pub struct PinNameTooLong {
    /// Length of the refused name in bytes.
    pub len: usize,
}

/// Checks a pin name against [`MAX_PIN_NAME`]. Every API that takes a pin name calls it before
/// it writes anything.
pub fn check_pin_name(name: &str) -> Result<(), PinNameTooLong> {
    if name.len() > MAX_PIN_NAME {
        Err(PinNameTooLong { len: name.len() })
    } else {
        Ok(())
    }
}

/// The longest prefix of `name` of at most [`MAX_PIN_NAME`] bytes that ends on a character
/// boundary (`name` itself when it fits).
pub(crate) fn pin_name_prefix(name: &str) -> &str {
    let mut end = name.len().min(MAX_PIN_NAME);
    while !name.is_char_boundary(end) {
        end = end.saturating_sub(1);
    }
    name.get(..end).unwrap_or_default()
}

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
    /// A batch would store a location whose bytes are not covered by a committed length (an
    /// engine bug caught before anything is written; the store stays consistent).
    #[error(
        "refused: a record in segment {segment} ends at {end}, past its committed length {committed}"
    )]
    PastCommitted {
        segment: SegmentId,
        end: u64,
        committed: u64,
    },
}

impl IndexError {
    /// A batch refused inside its transaction before anything was written: it says nothing
    /// about durability, so the store handle stays usable.
    pub fn is_refusal(&self) -> bool {
        match self {
            IndexError::Staging(e) => e.is_conflict(),
            IndexError::MissingObject(_) | IndexError::PastCommitted { .. } => true,
            _ => false,
        }
    }

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
    /// Parents that reference the object, pins that name it and holds (docs/FORMAT.md §3.6).
    pub refcount: u64,
    /// When the object was stored or its count last fell to 0, whichever is later: while the
    /// count is 0, the object has been unreferenced since then (GC's grace runs from it).
    pub unreferenced_since_unix_ms: u64,
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
        out.extend_from_slice(&self.unreferenced_since_unix_ms.to_le_bytes());
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
            unreferenced_since_unix_ms: u64::from_le_bytes(take(bytes, 30).ok_or_else(short)?),
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
    /// The row bytes (docs/FORMAT.md §3.4). Names are checked where a pin is requested
    /// ([`check_pin_name`]); the cut at a character boundary only guards this encoder's
    /// contract that it never writes a row the decoder refuses.
    pub fn encode(&self) -> Vec<u8> {
        let name = pin_name_prefix(&self.name).as_bytes();
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
        let name = match std::str::from_utf8(name) {
            Ok(name) => name.to_owned(),
            // Older builds cut an over-long name at MAX_PIN_NAME bytes, possibly inside a
            // character; the rest of such a row is intact, so the partial character is dropped.
            Err(e) if name_len == MAX_PIN_NAME && e.error_len().is_none() => name
                .get(..e.valid_up_to())
                .and_then(|valid| std::str::from_utf8(valid).ok())
                .unwrap_or_default()
                .to_owned(),
            Err(_) => return Err(bad("name not UTF-8".into())),
        };
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
    /// New objects; an id already in the index is skipped, with its children (another
    /// writer stored it first, and that copy already counts them).
    pub new_objects: Vec<NewObject>,
    /// Other reference count changes, applied after the new objects exist.
    pub ref_deltas: HashMap<Hash, i64>,
    /// Durable lengths returned by `Segments::sync` (committed lengths only ever grow). Every
    /// location this batch stores must end within them (else [`IndexError::PastCommitted`]).
    pub segment_lengths: Vec<(SegmentId, u64)>,
    pub pins_add: Vec<Pin>,
    pub pins_remove: Vec<Hash>,
    /// Staging checkpoint changes (resumable uploads), applied in the same transaction.
    pub staging: Vec<crate::staging_table::StagingOp>,
    /// Objects whose bytes were rewritten elsewhere (repair of a corrupt record, compaction);
    /// applied after `new_objects`. See [`Relocation`].
    pub relocations: Vec<Relocation>,
    /// Segments whose index entry is dropped if, after this batch, no object lives in them
    /// (compaction); [`CommitOutcome::retired`] lists those dropped.
    pub retire_segments: Vec<SegmentId>,
}

/// An object appended for this batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewObject {
    pub hash: Hash,
    pub kind: RecordKind,
    pub loc: RecordLoc,
    /// What the object lists (a node's children, repeats included): each gets +1 when the
    /// object is inserted, so an indexed node always counts its children exactly once.
    pub children: Vec<Hash>,
}

/// An object whose bytes were copied to `to` (same id, same payload length; durable before the
/// commit, like every location the index stores). The entry keeps its kind, count and time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Relocation {
    pub hash: Hash,
    pub to: RecordLoc,
    /// `Some(loc)`: move only if the entry still points at `loc`, and skip quietly if it moved
    /// or was deleted meanwhile (compaction's copies of a concurrently changed object are then
    /// dead bytes). `None`: the entry must exist (else `MissingObject`).
    pub only_from: Option<RecordLoc>,
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
            && self.retire_segments.is_empty()
    }

    /// Repoints object `hash` at `new_loc` when the batch commits (the entry must exist).
    /// The old record becomes dead bytes for compaction.
    pub fn relocate(&mut self, hash: Hash, new_loc: RecordLoc) {
        self.relocations.push(Relocation {
            hash,
            to: new_loc,
            only_from: None,
        });
    }

    pub fn add_ref(&mut self, hash: Hash, delta: i64) {
        let d = self.ref_deltas.entry(hash).or_insert(0);
        *d = d.saturating_add(delta);
    }

    /// Records this batch appended, per segment (what `Segments::settle` needs once the batch
    /// is committed or given up).
    pub fn appended_records(&self) -> BTreeMap<SegmentId, u64> {
        let mut out: BTreeMap<SegmentId, u64> = BTreeMap::new();
        let locs = self
            .new_objects
            .iter()
            .map(|o| &o.loc)
            .chain(self.relocations.iter().map(|r| &r.to));
        for loc in locs {
            let n = out.entry(loc.segment).or_insert(0);
            *n = n.saturating_add(1);
        }
        out
    }
}

/// What a batch commit changed that the caller reports.
#[derive(Debug, Default, Clone)]
pub struct CommitOutcome {
    /// New objects actually inserted (not already present).
    pub inserted: u64,
    pub inserted_bytes: u64,
    /// Pins added (not already present) and removed (present).
    pub pins_added: u64,
    pub pins_removed: u64,
    /// Objects repointed by `Batch::relocations`.
    pub relocated: u64,
    /// Segments of `Batch::retire_segments` whose entry was dropped (nothing lives there).
    pub retired: Vec<SegmentId>,
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
            let mut lost_refs = txn.open_table(LOST_REFS)?;
            let mut segs = SegmentTally::new(txn.open_table(SEGMENTS)?);
            for &(id, len) in &batch.segment_lengths {
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
                    return Err(IndexError::MissingObject(crate::error::hex(
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
                let Some(mut entry) = object_in(&objects, &hash)? else {
                    return Err(IndexError::MissingObject(crate::error::hex(&hash)));
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
        }
        net_mesh_segments::failpoint::hit("engine.index_commit.before");
        txn.commit()?;
        net_mesh_segments::failpoint::hit("engine.index_commit.after");
        Ok(outcome)
    }
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

/// A pin row that does not decode.
#[derive(Debug)]
pub struct BadPinRow {
    /// The row's key: the blob id it claims.
    pub id: Hash,
    /// Why it does not decode.
    pub error: IndexError,
}

/// Every pin row: those that decode, in id order, and those that do not.
#[derive(Debug, Default)]
pub struct PinListing {
    pub pins: Vec<(Hash, Pin)>,
    pub bad: Vec<BadPinRow>,
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

    /// Every pin row: a row that does not decode is listed apart instead of failing the
    /// listing. Fails only when the table itself cannot be read.
    pub fn pin_listing(&self) -> Result<PinListing, IndexError> {
        let mut out = PinListing::default();
        for row in self.pins.iter()? {
            let (k, v) = row?;
            let id = *k.value();
            match Pin::decode(&id, v.value()) {
                Ok(pin) => out.pins.push((id, pin)),
                Err(error) => out.bad.push(BadPinRow { id, error }),
            }
        }
        Ok(out)
    }

    /// Every pin with its blob id, in id order; fails on the first row that does not decode.
    /// For callers that must know every pin to stay safe (GC's stripe guard): a row whose
    /// blob is unknown could name anything.
    pub fn pins(&self) -> Result<Vec<(Hash, Pin)>, IndexError> {
        let listing = self.pin_listing()?;
        match listing.bad.into_iter().next() {
            Some(bad) => Err(bad.error),
            None => Ok(listing.pins),
        }
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
            unreferenced_since_unix_ms: 1_700_000_000_000,
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

    fn pin(name: &str) -> Pin {
        Pin {
            blob_ref: BlobRef::Small {
                hash: [7; 32],
                size: 3,
            },
            name: name.to_string(),
            created_unix_ms: 9,
        }
    }

    #[test]
    fn pin_names_are_checked_and_never_encoded_cut_inside_a_character() {
        let limit = "é".repeat(MAX_PIN_NAME / 2);
        assert_eq!(check_pin_name(&limit), Ok(()));
        let long = format!("a{limit}");
        assert_eq!(
            check_pin_name(&long),
            Err(PinNameTooLong {
                len: MAX_PIN_NAME + 1
            })
        );
        // The encoder's guard: a name that bypassed the check is cut at a boundary.
        let p = pin(&long);
        let decoded = Pin::decode(&[0], &p.encode()).unwrap();
        assert_eq!(decoded.name.len(), MAX_PIN_NAME - 1);
        assert!(long.starts_with(&decoded.name));
        assert_eq!(
            Pin::decode(&[0], &pin(&limit).encode()).unwrap(),
            pin(&limit)
        );
    }

    #[test]
    fn a_name_an_older_build_cut_inside_a_character_decodes_without_it() {
        let whole = pin(&"a".repeat(MAX_PIN_NAME - 1)).encode();
        let mut legacy = whole.clone();
        let name_end = PIN_HEADER_LEN + MAX_PIN_NAME - 1;
        legacy.splice(name_end..name_end, ["é".as_bytes()[0]]);
        legacy[9..11].copy_from_slice(&(MAX_PIN_NAME as u16).to_le_bytes());
        let decoded = Pin::decode(&[0], &legacy).unwrap();
        assert_eq!(decoded, Pin::decode(&[0], &whole).unwrap());
        // Only that signature is forgiven: a shorter name, or a bad byte inside, is corrupt.
        let mut bad = pin("ab").encode();
        bad[PIN_HEADER_LEN + 1] = 0xc3;
        assert!(Pin::decode(&[0], &bad).is_err());
        let mut inside = legacy.clone();
        inside[PIN_HEADER_LEN] = 0xff;
        assert!(Pin::decode(&[0], &inside).is_err());
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
            unreferenced_since_unix_ms: 5,
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
