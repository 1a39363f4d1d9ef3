//! The redb index: where every object lives, its reference count, the channels and the roots
//! pinned in each, each segment's committed length, and the tables other crates attach through the extension seam.
//! Layouts of the values are in docs/FORMAT.md §3.
//!
//! All changes of one batch are applied by [`Index::commit`] in ONE write transaction, which the
//! caller runs only after the segment bytes it points at are durable.
#![deny(clippy::arithmetic_side_effects)]

mod batch;
mod commit;
mod entry;
pub mod extension;

use std::collections::BTreeMap;
use std::path::Path;

use net_mesh_segments::SegmentId;
use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle,
};

use crate::class::ErrorClass;
use crate::codec::Hash;
use extension::{ExtensionError, ExtensionTxn, Extensions};

pub use batch::{Batch, CommitOutcome, NewObject, Relocation};
pub use entry::*;

/// Version of the index layout (the `_v1` suffix of every table name).
pub const INDEX_FORMAT_VERSION: u8 = 1;

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta_v1");
pub(crate) const OBJECTS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("objects_v1");
/// Pins, keyed by channel then blob id (a channel lists by a range).
pub(crate) const PINS: TableDefinition<(&str, &[u8; 32]), &[u8]> = TableDefinition::new("pins_v2");
/// Channels: name → [`ChannelEntry`].
pub(crate) const CHANNELS: TableDefinition<&str, &[u8]> = TableDefinition::new("channels_v1");
/// The pin table of stores written before channels (keyed by blob id alone); migrated into
/// channel `default` of [`PINS`] and deleted when such a store opens.
const LEGACY_PINS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("pins_v1");
pub(crate) const SEGMENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("segments_v1");

const META_FORMAT_KEY: &str = "format_version";

/// Every table the engine itself keeps or kept (anything else belongs to an extension;
/// `pins_v1` stays reserved so no extension can claim it).
pub(crate) const ENGINE_TABLES: [&str; 8] = [
    "meta_v1",
    "objects_v1",
    "pins_v1",
    "pins_v2",
    "channels_v1",
    "segments_v1",
    "lost_refs_v1",
    "fsck_cursor_v1",
];

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
    /// A pin names a channel the index does not have; refused before anything is written.
    #[error("channel {0:?} does not exist")]
    NoSuchChannel(String),
    #[error("{0}")]
    Extension(#[from] extension::ExtensionError),
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
        matches!(
            self,
            IndexError::MissingObject(_)
                | IndexError::NoSuchChannel(_)
                | IndexError::PastCommitted { .. }
                | IndexError::Extension(
                    ExtensionError::Refused { .. } | ExtensionError::Unregistered(_)
                )
        )
    }
}

impl crate::class::Classify for IndexError {
    fn class(&self) -> ErrorClass {
        match self {
            IndexError::Db(_) => ErrorClass::Io,
            IndexError::Corrupted { .. } | IndexError::UnsupportedFormat { .. } => {
                ErrorClass::Integrity
            }
            IndexError::MissingObject(_) | IndexError::PastCommitted { .. } => ErrorClass::Refused,
            IndexError::NoSuchChannel(_) => ErrorClass::NotFound,
            IndexError::Extension(e) => e.class(),
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

/// The index database, with the extensions registered for it.
#[derive(Debug)]
pub struct Index {
    db: IndexDb,
    extensions: Extensions,
    /// One above the highest segment id a commit of this handle retired (0: none yet). A
    /// segment length for a segment below it that has no entry is a stale report of a
    /// retired segment (see [`Index::commit`]), never a new segment: segment ids only grow,
    /// and every commit carries every length not yet committed, so a segment older than a
    /// retired one has its entry by the time that one is retired. In memory only: stale
    /// reports do not outlive the process that made them.
    retired_below: std::sync::atomic::AtomicU64,
}

impl Index {
    /// Opens (creating if needed) the index at `path` on `storage`, checks its format version
    /// and lets each extension run its open step (in the same transaction). With `read_only`,
    /// an index that needs no setting up (format key, tables, default channel, no legacy
    /// tables) is opened read-only: nothing is written, not even by redb at open or close, and
    /// every write transaction is refused.
    pub(crate) fn open_on(
        storage: &dyn crate::storage::IndexStorage,
        path: &Path,
        extensions: Extensions,
        read_only: bool,
    ) -> Result<Index, IndexError> {
        if read_only
            && let Ok(Some(db)) = storage.open_database_read_only(path)
            && is_settled(&db)?
        {
            // Nothing to set up: a check opens it without writing a byte. (One that cannot be
            // opened read-only — redb must recover it after a crash — or needs setting up is
            // opened for writing, as any open would.)
            for ext in extensions.iter() {
                tracing::debug!(
                    namespace = ext.namespace(),
                    "read-only open: extension open step skipped"
                );
            }
            return Ok(Index {
                db: IndexDb::ReadOnly(db),
                extensions,
                retired_below: std::sync::atomic::AtomicU64::new(0),
            });
        }
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
            txn.open_table(SEGMENTS)?;
            migrate_pins(&txn)?;
            let mut deltas = std::collections::HashMap::new();
            let mut released = Vec::new();
            for ext in extensions.iter() {
                let mut ext_txn = ExtensionTxn::new(
                    &txn,
                    ext.namespace(),
                    &mut deltas,
                    &mut released,
                    commit::now_unix_ms(),
                );
                ext.on_open(&mut ext_txn)?;
            }
            if !deltas.is_empty() {
                return Err(ExtensionError::InvalidName(
                    "an extension's open step changed holds".to_string(),
                )
                .into());
            }
        }
        txn.commit()?;
        Ok(Index {
            db: IndexDb::Writable(db),
            extensions,
            retired_below: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The extensions registered with this index.
    pub fn extensions(&self) -> &Extensions {
        &self.extensions
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

    /// A consistent snapshot for lookups.
    pub fn reader(&self) -> Result<IndexReader, IndexError> {
        let txn = self.db.begin_read()?;
        Ok(IndexReader {
            objects: txn.open_table(OBJECTS)?,
            pins: txn.open_table(PINS)?,
            channels: txn.open_table(CHANNELS)?,
        })
    }
}

impl Index {
    /// The database, for the GC, compaction and fsck transactions (engine-internal).
    pub(crate) fn db(&self) -> &IndexDb {
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

/// The index database: writable, or opened read-only by a check (see [`Index::open_on`]).
pub(crate) enum IndexDb {
    Writable(Database),
    ReadOnly(redb::ReadOnlyDatabase),
}

impl std::fmt::Debug for IndexDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IndexDb::Writable(db) => f.debug_tuple("Writable").field(db).finish(),
            IndexDb::ReadOnly(_) => f.write_str("ReadOnly"),
        }
    }
}

impl IndexDb {
    pub(crate) fn begin_read(&self) -> Result<redb::ReadTransaction, redb::TransactionError> {
        match self {
            IndexDb::Writable(db) => db.begin_read(),
            IndexDb::ReadOnly(db) => db.begin_read(),
        }
    }

    /// A write transaction; refused (as an I/O error) on a read-only index.
    pub(crate) fn begin_write(&self) -> Result<redb::WriteTransaction, redb::TransactionError> {
        match self {
            IndexDb::Writable(db) => db.begin_write(),
            IndexDb::ReadOnly(_) => Err(redb::TransactionError::Storage(redb::StorageError::Io(
                std::io::Error::new(
                    std::io::ErrorKind::ReadOnlyFilesystem,
                    "the index is open read-only (fsck without --repair)",
                ),
            ))),
        }
    }
}

/// Whether the open's transaction would change nothing of the engine's own: the format key is
/// this version's, the tables exist, the default channel exists, no legacy pins table is left
/// to migrate and no table outside the engine's and the extensions' names is left for an
/// extension to adopt.
fn is_settled(db: &impl ReadableDatabase) -> Result<bool, IndexError> {
    let txn = db.begin_read()?;
    let names: Vec<String> = txn.list_tables()?.map(|t| t.name().to_string()).collect();
    let has = |name: &str| names.iter().any(|n| n == name);
    if !(has(META.name())
        && has(OBJECTS.name())
        && has(SEGMENTS.name())
        && has(PINS.name())
        && has(CHANNELS.name()))
        || has(LEGACY_PINS.name())
        || names.iter().any(|n| {
            !ENGINE_TABLES.contains(&n.as_str())
                && !n.starts_with(extension::EXTENSION_TABLE_PREFIX)
        })
    {
        return Ok(false);
    }
    let meta = txn.open_table(META)?;
    if meta.get(META_FORMAT_KEY)?.map(|v| v.value().to_vec()) != Some(vec![INDEX_FORMAT_VERSION]) {
        return Ok(false);
    }
    let channels = txn.open_table(CHANNELS)?;
    Ok(channels.get(DEFAULT_CHANNEL)?.is_some())
}

/// Brings the pin tables to the current layout inside the open transaction: creates
/// `pins_v2` and `channels_v1`, makes sure channel `default` exists, and moves every row of a
/// legacy `pins_v1` (bytes as they are, decodable or not) into `default`, then deletes
/// `pins_v1`. One transaction, so a crash leaves either the old tables or the new ones; the
/// references the rows hold are the same, so no count changes.
fn migrate_pins(txn: &redb::WriteTransaction) -> Result<(), IndexError> {
    let mut pins = txn.open_table(PINS)?;
    let mut channels = txn.open_table(CHANNELS)?;
    if channels.get(DEFAULT_CHANNEL)?.is_none() {
        let entry = ChannelEntry {
            created_unix_ms: commit::now_unix_ms(),
        };
        channels.insert(DEFAULT_CHANNEL, entry.encode().as_slice())?;
    }
    let legacy_exists = txn.list_tables()?.any(|t| t.name() == LEGACY_PINS.name());
    if !legacy_exists {
        return Ok(());
    }
    {
        let legacy = txn.open_table(LEGACY_PINS)?;
        for row in legacy.iter()? {
            let (k, v) = row?;
            let id = *k.value();
            // A row already in `default` (never written by this build) keeps its bytes.
            if pins.get((DEFAULT_CHANNEL, &id))?.is_none() {
                pins.insert((DEFAULT_CHANNEL, &id), v.value())?;
            }
        }
    }
    txn.delete_table(LEGACY_PINS)?;
    Ok(())
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

/// What an unpin removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unpinned {
    /// No pin row has that id.
    NotPinned,
    /// The pin row was removed and the references it held released.
    Removed,
    /// The pin row did not decode: it was removed, and since the references it held are
    /// unknown no count was lowered. Those counts are now too high — space leaks until
    /// `fsck --repair` recomputes them (fsck reports `refcount_mismatch`); nothing is lost.
    RemovedUndecodable,
}

/// A pin row that does not decode.
#[derive(Debug)]
pub struct BadPinRow {
    /// The channel of the row's key.
    pub channel: String,
    /// The row's key: the blob id it claims.
    pub id: Hash,
    /// Why it does not decode.
    pub error: IndexError,
}

/// Pin rows: those that decode, in (channel, id) order, each [`Pin`] carrying its channel, and
/// those that do not.
#[derive(Debug, Default)]
pub struct PinListing {
    pub pins: Vec<(Hash, Pin)>,
    pub bad: Vec<BadPinRow>,
}

/// A channel as listed: its name, when it was created and how many pin rows it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelInfo {
    pub name: String,
    pub created_unix_ms: u64,
    /// Pin rows in the channel, including rows that do not decode.
    pub pins: u64,
}

type PinsTable = redb::ReadOnlyTable<(&'static str, &'static [u8; 32]), &'static [u8]>;

/// A read snapshot of the index.
#[derive(Debug)]
pub struct IndexReader {
    objects: redb::ReadOnlyTable<&'static [u8; 32], &'static [u8]>,
    pins: PinsTable,
    channels: redb::ReadOnlyTable<&'static str, &'static [u8]>,
}

/// A pin row of `channel` that does not decode, and why.
fn bad_pin_row(channel: &str, id: Hash, error: IndexError) -> BadPinRow {
    BadPinRow {
        channel: channel.to_string(),
        id,
        error,
    }
}

/// Adds one pin row to `out`: decoded, or apart when it does not decode.
fn list_pin_row(out: &mut PinListing, channel: &str, id: Hash, bytes: &[u8]) {
    match Pin::decode(channel, &id, bytes) {
        Ok(pin) => out.pins.push((id, pin)),
        Err(error) => out.bad.push(bad_pin_row(channel, id, error)),
    }
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

    /// Every pin row of every channel, in (channel, id) order: a row that does not decode is
    /// listed apart instead of failing the listing. Fails only when the table itself cannot be
    /// read.
    pub fn pin_listing(&self) -> Result<PinListing, IndexError> {
        let mut out = PinListing::default();
        for row in self.pins.iter()? {
            let (k, v) = row?;
            let (channel, id) = k.value();
            list_pin_row(&mut out, channel, *id, v.value());
        }
        Ok(out)
    }

    /// How many pin rows the index holds, in every channel (rows that do not decode too),
    /// counted without reading them.
    pub fn pin_rows(&self) -> Result<u64, IndexError> {
        Ok(self.pins.len()?)
    }

    /// Every pin row of `channel`, in id order, as [`IndexReader::pin_listing`] lists them.
    pub fn pin_listing_in(&self, channel: &str) -> Result<PinListing, IndexError> {
        let mut out = PinListing::default();
        // The closure never breaks.
        let _all = self.for_each_pin_in(channel, &mut |row| {
            match row {
                Ok(pin) => out.pins.push(pin),
                Err(bad) => out.bad.push(bad),
            }
            std::ops::ControlFlow::Continue(())
        })?;
        Ok(out)
    }

    /// Hands `f` every pin row of `channel` in id order, one at a time (a row that does not
    /// decode as `Err`, in its place), until `f` breaks; nothing is collected, so a channel of
    /// any size lists in constant memory. Fails only when the table itself cannot be read.
    pub fn for_each_pin_in(
        &self,
        channel: &str,
        f: &mut dyn FnMut(Result<(Hash, Pin), BadPinRow>) -> std::ops::ControlFlow<()>,
    ) -> Result<std::ops::ControlFlow<()>, IndexError> {
        self.for_each_pin_between(channel, &[0u8; 32], &[0xffu8; 32], f)
    }

    /// [`IndexReader::for_each_pin_in`] for the rows whose ids lie in `first..=last`.
    pub fn for_each_pin_between(
        &self,
        channel: &str,
        first: &Hash,
        last: &Hash,
        f: &mut dyn FnMut(Result<(Hash, Pin), BadPinRow>) -> std::ops::ControlFlow<()>,
    ) -> Result<std::ops::ControlFlow<()>, IndexError> {
        for row in self.pins.range((channel, first)..=(channel, last))? {
            let (k, v) = row?;
            let (_, id) = k.value();
            let row = Pin::decode(channel, id, v.value())
                .map(|pin| (*id, pin))
                .map_err(|error| bad_pin_row(channel, *id, error));
            if f(row).is_break() {
                return Ok(std::ops::ControlFlow::Break(()));
            }
        }
        Ok(std::ops::ControlFlow::Continue(()))
    }

    /// Every pin of every channel with its blob id, in (channel, id) order; fails on the
    /// first row that does not decode.
    /// For callers that must know every pin to stay safe (GC's stripe guard): a row whose
    /// blob is unknown could name anything.
    pub fn pins(&self) -> Result<Vec<(Hash, Pin)>, IndexError> {
        let listing = self.pin_listing()?;
        match listing.bad.into_iter().next() {
            Some(bad) => Err(bad.error),
            None => Ok(listing.pins),
        }
    }

    /// The pin of blob `id` in channel `default`.
    pub fn pin(&self, id: &Hash) -> Result<Option<Pin>, IndexError> {
        self.pin_in(DEFAULT_CHANNEL, id)
    }

    /// The pin of blob `id` in `channel`.
    pub fn pin_in(&self, channel: &str, id: &Hash) -> Result<Option<Pin>, IndexError> {
        match self.pins.get((channel, id))? {
            Some(v) => Ok(Some(Pin::decode(channel, id, v.value())?)),
            None => Ok(None),
        }
    }

    /// The first channel (by name) with a pin row for blob `id`, decodable or not; O(channels).
    /// Error point `index.channel_pinning`: the lookup fails as a failed index read does.
    pub fn channel_pinning(&self, id: &Hash) -> Result<Option<String>, IndexError> {
        if net_mesh_segments::failpoint::fails("index.channel_pinning") {
            return Err(IndexError::from(redb::StorageError::Io(
                std::io::Error::other(
                    "reading the index failed: injected (failpoint error:index.channel_pinning)",
                ),
            )));
        }
        for row in self.channels.iter()? {
            let (k, _) = row?;
            let name = k.value();
            if self.pins.get((name, id))?.is_some() {
                return Ok(Some(name.to_string()));
            }
        }
        Ok(None)
    }

    /// The entry of channel `name`, if it exists.
    pub fn channel(&self, name: &str) -> Result<Option<ChannelEntry>, IndexError> {
        match self.channels.get(name)? {
            Some(v) => Ok(Some(ChannelEntry::decode(name, v.value())?)),
            None => Ok(None),
        }
    }

    /// Every channel in name order, with its pin rows counted.
    pub fn channels(&self) -> Result<Vec<ChannelInfo>, IndexError> {
        let mut out = Vec::new();
        for row in self.channels.iter()? {
            let (k, v) = row?;
            let name = k.value();
            let entry = ChannelEntry::decode(name, v.value())?;
            let (first, last) = ([0u8; 32], [0xffu8; 32]);
            let mut pins = 0u64;
            for row in self.pins.range((name, &first)..=(name, &last))? {
                row?;
                pins = pins.saturating_add(1);
            }
            out.push(ChannelInfo {
                name: name.to_string(),
                created_unix_ms: entry.created_unix_ms,
                pins,
            });
        }
        Ok(out)
    }

    /// Channels that pin rows name but `channels_v1` lacks, with their row counts (fsck).
    pub fn channels_missing(&self) -> Result<BTreeMap<String, u64>, IndexError> {
        let mut out: BTreeMap<String, u64> = BTreeMap::new();
        for row in self.pins.iter()? {
            let (k, _) = row?;
            let (channel, _) = k.value();
            if self.channels.get(channel)?.is_none() {
                let n = out.entry(channel.to_string()).or_insert(0);
                *n = n.saturating_add(1);
            }
        }
        Ok(out)
    }
}
