//! Importing objects one by one, for node-to-node sync: a peer offers objects by id, the
//! [`Importer`] takes only those the store lacks, verifies each against its id before it is
//! stored, and holds what it stored or found until a pin (or a caller's extension op) counts
//! it. Reading one object back verified is [`Store::read_object`].
//!
//! Rules that keep the index consistent whatever a peer sends:
//! - a chunk's bytes must hash to its id (BLAKE3), a node's encoding must hash to its node id
//!   and decode (`IdMismatch`, `BadNode`: integrity errors, nothing stored);
//! - a node is imported only after every object it lists is in the store or in this import
//!   (`MissingChild`): an indexed node always counts children that exist, so a pull walks the
//!   tree children first;
//! - everything the import found or stored stays held in memory while the importer lives (GC
//!   keeps it); once the importer commits a pin or a hold of the caller's, that counts it.

use net_mesh_segments::RecordKind;

use super::open_batch::OpenBatch;
use crate::BlobRef;
use crate::codec::{DecodeError, Hash, InternalNode, LeafNode, chunk_id, internal_id, leaf_id};
use crate::error::{BlobError, Classify, ErrorClass, StoreError};
use crate::index::extension::ExtensionOp;
use crate::index::{CommitOutcome, DEFAULT_CHANNEL, check_channel_name, check_pin_name};
use crate::read::ObjectSource;
use crate::store::Store;

/// One object's kind and bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub kind: RecordKind,
    pub bytes: Vec<u8>,
}

/// Why an object was not imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{kind:?} {} hashes to {}", short(expected), short(actual))]
    IdMismatch {
        kind: RecordKind,
        expected: Hash,
        actual: Hash,
    },
    #[error("node {} does not decode: {source}", short(hash))]
    BadNode { hash: Hash, source: DecodeError },
    #[error(
        "node {} lists {}, which is neither stored nor imported yet",
        short(node),
        short(child)
    )]
    MissingChild { node: Hash, child: Hash },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn short(hash: &Hash) -> String {
    crate::error::short_hex(hash)
}

impl Classify for ImportError {
    fn class(&self) -> ErrorClass {
        match self {
            ImportError::IdMismatch { .. } | ImportError::BadNode { .. } => ErrorClass::Integrity,
            ImportError::MissingChild { .. } => ErrorClass::Refused,
            ImportError::Store(e) => e.class(),
        }
    }
}

/// The objects `bytes` (an object of `kind`) lists, with their kinds: a leaf's chunks, an
/// internal node's children. Checks the id first.
pub fn children_of(
    kind: RecordKind,
    hash: &Hash,
    bytes: &[u8],
) -> Result<Vec<(Hash, RecordKind)>, ImportError> {
    let actual = match kind {
        RecordKind::Chunk => chunk_id(bytes),
        RecordKind::LeafNode => leaf_id(bytes),
        RecordKind::InternalNode => internal_id(bytes),
    };
    if actual != *hash {
        return Err(ImportError::IdMismatch {
            kind,
            expected: *hash,
            actual,
        });
    }
    let bad = |source| ImportError::BadNode {
        hash: *hash,
        source,
    };
    Ok(match kind {
        RecordKind::Chunk => Vec::new(),
        RecordKind::LeafNode => LeafNode::decode(bytes)
            .map_err(bad)?
            .chunks
            .iter()
            .map(|c| (c.hash, RecordKind::Chunk))
            .collect(),
        RecordKind::InternalNode => {
            let node = InternalNode::decode(bytes).map_err(bad)?;
            let child_kind = if node.level == 1 {
                RecordKind::LeafNode
            } else {
                RecordKind::InternalNode
            };
            node.children.iter().map(|c| (c.hash, child_kind)).collect()
        }
    })
}

/// An import in progress (see the module docs).
#[derive(Debug)]
pub struct Importer<'s> {
    batch: OpenBatch<'s>,
    imported: u64,
    imported_bytes: u64,
}

impl<'s> Importer<'s> {
    /// Whether the store (or this import) has `hash`; if it does, the importer holds it until
    /// it ends, so what a peer need not send stays.
    pub fn has(&mut self, hash: &Hash) -> Result<bool, StoreError> {
        self.batch.hold_if_present(*hash)
    }

    /// Verifies and stores one object (nothing if the store has it already). Returns whether
    /// it was stored by this call.
    pub fn import(
        &mut self,
        kind: RecordKind,
        hash: &Hash,
        bytes: &[u8],
    ) -> Result<bool, ImportError> {
        let children = children_of(kind, hash, bytes)?;
        for (child, _) in &children {
            if !self.batch.hold_if_present(*child)? {
                return Err(ImportError::MissingChild {
                    node: *hash,
                    child: *child,
                });
            }
        }
        // The node's put takes those holds over: released once a committed node counts them.
        let new = self.batch.put_object(
            kind,
            *hash,
            bytes,
            children.into_iter().map(|(h, _)| h).collect(),
        )?;
        if new {
            self.imported = self.imported.saturating_add(1);
            self.imported_bytes = self.imported_bytes.saturating_add(bytes.len() as u64);
        }
        if self.batch.is_full() {
            self.batch.commit()?;
        }
        Ok(new)
    }

    /// The level of `hash` if the store holds it (committed) as an internal node; `None` for
    /// another kind. Read verified, for a caller that checks a tree's shape where it meets a
    /// node it need not fetch.
    pub fn stored_internal_level(&self, hash: &Hash) -> Result<Option<u8>, BlobError> {
        let object = self.batch.store().read_object(hash)?;
        if object.kind != RecordKind::InternalNode {
            return Ok(None);
        }
        InternalNode::decode(&object.bytes)
            .map(|node| Some(node.level))
            .map_err(|source| BlobError::BadNode {
                hash: *hash,
                source,
            })
    }

    /// Objects stored by this import so far, and their payload bytes.
    pub fn imported(&self) -> (u64, u64) {
        (self.imported, self.imported_bytes)
    }

    /// Pins `blob_ref` under `name` in channel `default` when the import commits
    /// ([`Importer::pin_in`]).
    pub fn pin(&mut self, blob_ref: &BlobRef, name: &str) -> Result<(), StoreError> {
        self.pin_in(DEFAULT_CHANNEL, blob_ref, name)
    }

    /// Pins `blob_ref` under `name` in `channel` when the import commits. Its roots must be
    /// in the store or imported (else the commit is refused with `MissingObject`), and the
    /// channel must exist (else [`StoreError::NoSuchChannel`]).
    pub fn pin_in(
        &mut self,
        channel: &str,
        blob_ref: &BlobRef,
        name: &str,
    ) -> Result<(), StoreError> {
        check_channel_name(channel)?;
        check_pin_name(name)?;
        self.batch.pin_in(channel, blob_ref, name);
        Ok(())
    }

    /// Adds a caller's extension op (e.g. a durable hold) to the next commit.
    pub fn push_op(&mut self, op: Box<dyn ExtensionOp>) {
        self.batch.push_op(op);
    }

    /// Commits what was imported (and any pin or op added): fdatasync, one transaction.
    pub fn commit(&mut self) -> Result<CommitOutcome, StoreError> {
        self.batch.commit()
    }
}

impl Store {
    /// Starts an import (see [`Importer`]).
    pub fn importer(&self) -> Result<Importer<'_>, StoreError> {
        self.check_writable()?;
        Ok(Importer {
            batch: OpenBatch::new(self)?,
            imported: 0,
            imported_bytes: 0,
        })
    }

    /// Whether the store has object `hash` (a snapshot answer: nothing keeps it; an
    /// [`Importer`] holds what it finds).
    pub fn has(&self, hash: &Hash) -> Result<bool, StoreError> {
        Ok(self.index.reader()?.contains(hash)?)
    }

    /// Reads one object, verified against its id (a chunk's bytes hash to it, a node's
    /// encoding hashes to its node id).
    pub fn read_object(&self, hash: &Hash) -> Result<Object, BlobError> {
        let entry = self
            .index
            .reader()?
            .object(hash)?
            .ok_or(BlobError::Missing {
                hash: *hash,
                what: "object",
            })?;
        let bytes = self.source()?.object(hash, entry.kind, "object")?;
        match children_of(entry.kind, hash, &bytes) {
            Ok(_) => Ok(Object {
                kind: entry.kind,
                bytes,
            }),
            Err(ImportError::IdMismatch { actual, .. }) => Err(BlobError::ChainMismatch {
                at_depth: 0,
                parent_hash: *hash,
                child_hash: actual,
            }),
            Err(ImportError::BadNode { hash, source }) => Err(BlobError::BadNode { hash, source }),
            Err(other) => Err(BlobError::Corrupted {
                hash: *hash,
                reason: other.to_string(),
            }),
        }
    }
}
