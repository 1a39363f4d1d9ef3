//! The extension seam: how other crates (staging, the storage node, replication) keep tables in
//! the store's index, written in the same transaction as an engine batch, and hold references
//! that GC and fsck respect. Built once here so that no other crate opens `index.redb`.
//!
//! - An [`Extension`] is registered when the store opens. It owns a namespace; its tables live
//!   in the reserved, versioned name space `ext.{namespace}.{table}` (`table` ends in `_v{N}`),
//!   which the engine never uses for its own tables (docs/FORMAT.md §3.11).
//! - A batch carries [`ExtensionOp`]s. Each runs inside the batch's one write transaction with
//!   an [`ExtensionTxn`]: it opens its namespace's tables and adds or drops *holds* (+1 / −1 on
//!   an object's reference count, applied with the batch's other count changes). An op may
//!   refuse ([`ExtensionError::Refused`]): the whole batch is refused before anything is written
//!   and the store stays usable. An op of a namespace no registered extension owns is refused
//!   too: every hold in the index has a registered holder that can account for it.
//! - fsck asks each extension for the holds it stores ([`Extension::holds`]) and adds them to
//!   the counts it derives from parents and pins. A table the engine does not know and no
//!   registered extension owns may hold references nobody can count: fsck then reports it and
//!   refuses to lower any count (a forgotten holder can never cause data loss).
//! - GC asks each extension to release stale holds before its scan
//!   ([`Extension::release_stale`]), in one transaction.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use redb::{Key, ReadTransaction, TableDefinition, TableHandle, Value, WriteTransaction};

use crate::class::ErrorClass;
use crate::codec::Hash;

/// Prefix of every extension table name.
pub const EXTENSION_TABLE_PREFIX: &str = "ext.";

/// Whether `namespace` is a valid extension namespace: 1..=32 bytes of `[a-z0-9_]`.
pub fn valid_namespace(namespace: &str) -> bool {
    !namespace.is_empty()
        && namespace.len() <= 32
        && namespace
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Whether `table` is a valid versioned table name inside a namespace: `[a-z0-9_]+_v{N}`.
pub fn valid_table_name(table: &str) -> bool {
    let Some((stem, version)) = table.rsplit_once("_v") else {
        return false;
    };
    !stem.is_empty()
        && table.len() <= 64
        && stem
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !version.is_empty()
        && version.bytes().all(|b| b.is_ascii_digit())
}

/// The full redb name of table `table` of `namespace`.
pub fn table_name(namespace: &str, table: &str) -> String {
    format!("{EXTENSION_TABLE_PREFIX}{namespace}.{table}")
}

/// Why an extension's part of a transaction failed.
#[derive(Debug, thiserror::Error)]
pub enum ExtensionError {
    /// The extension refused the change (a conflict, a missing record): nothing was written.
    #[error("{namespace}: {source}")]
    Refused {
        namespace: &'static str,
        class: ErrorClass,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A stored value of the extension does not decode.
    #[error("{namespace}: table {table}: {reason}")]
    Corrupted {
        namespace: &'static str,
        table: String,
        reason: String,
    },
    /// A batch carried an op of a namespace no registered extension owns.
    #[error("no extension {0:?} is registered with this store")]
    Unregistered(String),
    /// A namespace or table name outside the reserved naming rules.
    #[error("invalid extension name {0:?}")]
    InvalidName(String),
    #[error("redb: {0}")]
    Db(Box<redb::Error>),
}

impl<E: Into<redb::Error>> From<E> for ExtensionError {
    fn from(e: E) -> Self {
        ExtensionError::Db(Box::new(e.into()))
    }
}

impl ExtensionError {
    /// A refused op, with the error class the caller reports.
    pub fn refused(
        namespace: &'static str,
        class: ErrorClass,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> ExtensionError {
        ExtensionError::Refused {
            namespace,
            class,
            source: Box::new(source),
        }
    }

    pub fn class(&self) -> ErrorClass {
        match self {
            ExtensionError::Refused { class, .. } => *class,
            ExtensionError::Corrupted { .. } => ErrorClass::Integrity,
            ExtensionError::Unregistered(_) | ExtensionError::InvalidName(_) => ErrorClass::Usage,
            ExtensionError::Db(_) => ErrorClass::Io,
        }
    }
}

/// A crate that keeps tables and holds in the store's index. Registered when the store opens.
pub trait Extension: Send + Sync + Debug {
    /// The namespace of its tables and ops (see [`valid_namespace`]).
    fn namespace(&self) -> &'static str;

    /// Runs in a write transaction every time the store opens: create tables, migrate older
    /// layouts of its own.
    fn on_open(&self, _txn: &mut ExtensionTxn<'_>) -> Result<(), ExtensionError> {
        Ok(())
    }

    /// Every hold this extension's tables account for, per object (fsck adds them to the
    /// counts it derives from parent nodes and pins).
    fn holds(&self, reader: &ExtensionReader<'_>) -> Result<HashMap<Hash, u64>, ExtensionError>;

    /// Releases the holds that are stale now (GC calls this before its scan), reporting each
    /// release with [`ExtensionTxn::released`].
    fn release_stale(&self, _txn: &mut ExtensionTxn<'_>) -> Result<(), ExtensionError> {
        Ok(())
    }
}

/// A change an extension makes inside a batch's write transaction.
pub trait ExtensionOp: Send + Debug {
    /// The namespace of the extension that owns the tables it changes.
    fn namespace(&self) -> &'static str;

    /// Applies the change. Returning an error refuses the whole batch.
    fn apply(&self, txn: &mut ExtensionTxn<'_>) -> Result<(), ExtensionError>;
}

/// A hold an extension released, as GC reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReleasedHold {
    pub namespace: &'static str,
    /// What was released (the extension's own id, e.g. a staging id).
    pub what: String,
}

/// An extension's view of a write transaction: its own tables and holds.
pub struct ExtensionTxn<'a> {
    txn: &'a WriteTransaction,
    namespace: &'static str,
    deltas: &'a mut HashMap<Hash, i64>,
    released: &'a mut Vec<ReleasedHold>,
    now_unix_ms: u64,
}

impl std::fmt::Debug for ExtensionTxn<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExtensionTxn")
            .field("namespace", &self.namespace)
            .field("holds", &self.deltas.len())
            .finish()
    }
}

impl<'a> ExtensionTxn<'a> {
    pub(crate) fn new(
        txn: &'a WriteTransaction,
        namespace: &'static str,
        deltas: &'a mut HashMap<Hash, i64>,
        released: &'a mut Vec<ReleasedHold>,
        now_unix_ms: u64,
    ) -> ExtensionTxn<'a> {
        ExtensionTxn {
            txn,
            namespace,
            deltas,
            released,
            now_unix_ms,
        }
    }

    /// Opens (creating if needed) table `table` of this extension's namespace.
    pub fn open_table<K: Key + 'static, V: Value + 'static>(
        &self,
        table: &str,
    ) -> Result<redb::Table<'_, K, V>, ExtensionError> {
        let name = checked_name(self.namespace, table)?;
        Ok(self.txn.open_table(TableDefinition::<K, V>::new(&name))?)
    }

    /// Renames a table an older layout kept outside the reserved namespace (`legacy`, e.g.
    /// `staging_v1`) to `table` of this namespace, if it exists and `table` does not. Returns
    /// whether it did. Engine tables cannot be adopted.
    pub fn adopt_legacy_table(&self, legacy: &str, table: &str) -> Result<bool, ExtensionError> {
        let name = checked_name(self.namespace, table)?;
        if super::ENGINE_TABLES.contains(&legacy) || legacy.starts_with(EXTENSION_TABLE_PREFIX) {
            return Err(ExtensionError::InvalidName(legacy.to_string()));
        }
        let exists = |wanted: &str| -> Result<bool, ExtensionError> {
            Ok(self.txn.list_tables()?.any(|t| t.name() == wanted))
        };
        if !exists(legacy)? || exists(&name)? {
            return Ok(false);
        }
        let legacy_def = TableDefinition::<&[u8], &[u8]>::new(legacy);
        let new_def = TableDefinition::<&[u8], &[u8]>::new(&name);
        self.txn.rename_table(legacy_def, new_def)?;
        Ok(true)
    }

    /// Adds one reference to `hash` (applied with the batch's count changes; the object must
    /// exist, or the batch is refused with `MissingObject`).
    pub fn hold(&mut self, hash: Hash) {
        let d = self.deltas.entry(hash).or_insert(0);
        *d = d.saturating_add(1);
    }

    /// Drops one reference this extension held on `hash`.
    pub fn release(&mut self, hash: Hash) {
        let d = self.deltas.entry(hash).or_insert(0);
        *d = d.saturating_sub(1);
    }

    /// Reports a release (GC lists it).
    pub fn released(&mut self, what: String) {
        self.released.push(ReleasedHold {
            namespace: self.namespace,
            what,
        });
    }

    /// The transaction's clock (Unix milliseconds).
    pub fn now_unix_ms(&self) -> u64 {
        self.now_unix_ms
    }
}

/// An extension's view of a read snapshot.
pub struct ExtensionReader<'a> {
    txn: &'a ReadTransaction,
    namespace: &'static str,
}

impl std::fmt::Debug for ExtensionReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExtensionReader")
            .field("namespace", &self.namespace)
            .finish()
    }
}

impl<'a> ExtensionReader<'a> {
    pub(crate) fn new(txn: &'a ReadTransaction, namespace: &'static str) -> ExtensionReader<'a> {
        ExtensionReader { txn, namespace }
    }

    /// Opens table `table` of this namespace; `None` when it was never created.
    pub fn open_table<K: Key + 'static, V: Value + 'static>(
        &self,
        table: &str,
    ) -> Result<Option<redb::ReadOnlyTable<K, V>>, ExtensionError> {
        let name = checked_name(self.namespace, table)?;
        match self.txn.open_table(TableDefinition::<K, V>::new(&name)) {
            Ok(t) => Ok(Some(t)),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

fn checked_name(namespace: &str, table: &str) -> Result<String, ExtensionError> {
    if !valid_table_name(table) {
        return Err(ExtensionError::InvalidName(table.to_string()));
    }
    Ok(table_name(namespace, table))
}

/// The extensions registered with one store.
#[derive(Debug, Clone, Default)]
pub struct Extensions(Vec<Arc<dyn Extension>>);

impl Extensions {
    /// Checks every namespace and that no two extensions share one.
    pub fn new(extensions: Vec<Arc<dyn Extension>>) -> Result<Extensions, ExtensionError> {
        for (i, e) in extensions.iter().enumerate() {
            let ns = e.namespace();
            if !valid_namespace(ns)
                || extensions
                    .iter()
                    .skip(i.saturating_add(1))
                    .any(|o| o.namespace() == ns)
            {
                return Err(ExtensionError::InvalidName(ns.to_string()));
            }
        }
        Ok(Extensions(extensions))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn Extension>> {
        self.0.iter()
    }

    pub(crate) fn get(&self, namespace: &str) -> Option<&Arc<dyn Extension>> {
        self.0.iter().find(|e| e.namespace() == namespace)
    }

    /// Every hold the registered extensions store, summed per object.
    pub(crate) fn holds(&self, db: &super::IndexDb) -> Result<HashMap<Hash, u64>, ExtensionError> {
        let txn = db.begin_read()?;
        let mut total: HashMap<Hash, u64> = HashMap::new();
        for e in &self.0 {
            for (hash, n) in e.holds(&ExtensionReader::new(&txn, e.namespace()))? {
                let t = total.entry(hash).or_insert(0);
                *t = t.saturating_add(n);
            }
        }
        Ok(total)
    }

    /// Tables in the index that neither the engine nor a registered extension owns.
    pub(crate) fn unowned_tables(
        &self,
        db: &super::IndexDb,
    ) -> Result<Vec<String>, ExtensionError> {
        let txn = db.begin_read()?;
        let mut out = Vec::new();
        for table in txn.list_tables()? {
            let name = table.name();
            if super::ENGINE_TABLES.contains(&name) {
                continue;
            }
            let owned = name
                .strip_prefix(EXTENSION_TABLE_PREFIX)
                .and_then(|rest| rest.split_once('.'))
                .is_some_and(|(ns, _)| self.get(ns).is_some());
            if !owned {
                out.push(name.to_string());
            }
        }
        Ok(out)
    }
}
