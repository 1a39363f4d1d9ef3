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
//! - each of those children is what its place in the tree says (`MisplacedChild`): a leaf
//!   lists chunks, an internal node of level 1 leaves, one of level L internal nodes of level
//!   L - 1; so an imported tree has the shape a read expects;
//! - everything the import found or stored stays held in memory while the importer lives (GC
//!   keeps it); once the importer commits a pin or a hold of the caller's, that counts it.

use std::collections::HashMap;

use bytes::Bytes;
use net_mesh_segments::RecordKind;

use super::open_batch::OpenBatch;
use crate::BlobRef;
use crate::codec::{DecodeError, Hash, InternalNode, LeafNode, chunk_id, internal_id, leaf_id};
use crate::error::{BlobError, Classify, ErrorClass, StoreError};
use crate::index::extension::ExtensionOp;
use crate::index::{CommitOutcome, DEFAULT_CHANNEL, PinName, check_channel_name, check_pin_name};
use crate::read::ObjectSource;
use crate::store::Store;

/// One object's kind and bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub kind: RecordKind,
    pub bytes: Bytes,
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
    #[error(
        "node {} lists {} as {expected}, but it is {found}",
        short(node),
        short(child)
    )]
    MisplacedChild {
        node: Hash,
        child: Hash,
        expected: Shape,
        found: Shape,
    },
    #[error("reading node {} already stored: {source}", short(hash))]
    StoredNode { hash: Hash, source: BlobError },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn short(hash: &Hash) -> String {
    crate::error::short_hex(hash)
}

impl Classify for ImportError {
    fn class(&self) -> ErrorClass {
        match self {
            ImportError::IdMismatch { .. }
            | ImportError::BadNode { .. }
            | ImportError::MisplacedChild { .. } => ErrorClass::Integrity,
            ImportError::MissingChild { .. } => ErrorClass::Refused,
            ImportError::StoredNode { source, .. } => source.class(),
            ImportError::Store(e) => e.class(),
        }
    }
}

/// What an object is, as far as the tree's shape goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Chunk,
    Leaf,
    /// An internal node of this level.
    Internal(u8),
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Shape::Chunk => write!(f, "a chunk"),
            Shape::Leaf => write!(f, "a leaf node"),
            Shape::Internal(level) => write!(f, "an internal node of level {level}"),
        }
    }
}

/// An object checked against its id and decoded: what it lists, and what each of those must be.
#[derive(Debug)]
struct Parsed {
    children: Vec<(Hash, RecordKind)>,
    /// The shape every child must have (`None` for a chunk, which lists nothing).
    child_shape: Option<Shape>,
    /// The object's own level, for an internal node.
    level: Option<u8>,
}

/// An object whose bytes were checked against its id and decoded ([`Verified::check`]), so
/// that [`Importer::import_verified`] stores it without hashing it again. Its fields cannot be
/// changed after the check.
#[derive(Debug)]
pub struct Verified {
    kind: RecordKind,
    hash: Hash,
    bytes: Bytes,
    parsed: Parsed,
}

impl Verified {
    /// Checks that `bytes` (an object of `kind`) hash to `hash` and, for a node, decode
    /// (`IdMismatch`, `BadNode`).
    pub fn check(kind: RecordKind, hash: &Hash, bytes: Bytes) -> Result<Verified, ImportError> {
        let parsed = parse(kind, hash, &bytes)?;
        Ok(Verified {
            kind,
            hash: *hash,
            bytes,
            parsed,
        })
    }

    pub fn kind(&self) -> RecordKind {
        self.kind
    }

    pub fn hash(&self) -> &Hash {
        &self.hash
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The objects it lists, with their kinds: a leaf's chunks, an internal node's children
    /// (none for a chunk).
    pub fn children(&self) -> &[(Hash, RecordKind)] {
        &self.parsed.children
    }

    /// An internal node's level (`None` for a chunk or a leaf).
    pub fn level(&self) -> Option<u8> {
        self.parsed.level
    }
}

/// The objects `bytes` (an object of `kind`) lists, with their kinds: a leaf's chunks, an
/// internal node's children. Checks the id first.
pub fn children_of(
    kind: RecordKind,
    hash: &Hash,
    bytes: &[u8],
) -> Result<Vec<(Hash, RecordKind)>, ImportError> {
    parse(kind, hash, bytes).map(|p| p.children)
}

fn parse(kind: RecordKind, hash: &Hash, bytes: &[u8]) -> Result<Parsed, ImportError> {
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
        RecordKind::Chunk => Parsed {
            children: Vec::new(),
            child_shape: None,
            level: None,
        },
        RecordKind::LeafNode => Parsed {
            children: LeafNode::decode(bytes)
                .map_err(bad)?
                .chunks
                .iter()
                .map(|c| (c.hash, RecordKind::Chunk))
                .collect(),
            child_shape: Some(Shape::Chunk),
            level: None,
        },
        RecordKind::InternalNode => {
            let node = InternalNode::decode(bytes).map_err(bad)?;
            let (child_kind, child_shape) = match node.level {
                0 | 1 => (RecordKind::LeafNode, Shape::Leaf),
                level => (RecordKind::InternalNode, Shape::Internal(level - 1)),
            };
            Parsed {
                children: node.children.iter().map(|c| (c.hash, child_kind)).collect(),
                child_shape: Some(child_shape),
                level: Some(node.level),
            }
        }
    })
}

/// An import in progress (see the module docs).
#[derive(Debug)]
pub struct Importer<'s> {
    batch: OpenBatch<'s>,
    imported: u64,
    imported_bytes: u64,
    /// The level of each internal node this import stored or read (a child's level is
    /// checked against its parent's; the store is asked only for nodes not seen here).
    levels: HashMap<Hash, u8>,
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
        let parsed = parse(kind, hash, bytes)?;
        self.store_parsed(kind, hash, bytes, parsed)
    }

    /// [`Importer::import`] of an object already checked against its id (its bytes are not
    /// hashed again).
    pub fn import_verified(&mut self, object: Verified) -> Result<bool, ImportError> {
        let Verified {
            kind,
            hash,
            bytes,
            parsed,
        } = object;
        self.store_parsed(kind, &hash, &bytes, parsed)
    }

    /// Stores `bytes`, checked against `hash` and parsed into `parsed`, once its children fit
    /// (module docs).
    fn store_parsed(
        &mut self,
        kind: RecordKind,
        hash: &Hash,
        bytes: &[u8],
        parsed: Parsed,
    ) -> Result<bool, ImportError> {
        let Parsed {
            children,
            child_shape,
            level,
        } = parsed;
        for (child, _) in &children {
            let Some(child_kind) = self.batch.hold_present(*child)? else {
                return Err(ImportError::MissingChild {
                    node: *hash,
                    child: *child,
                });
            };
            let found = self.shape_of(child, child_kind)?;
            if let Some(expected) = child_shape
                && found != expected
            {
                return Err(ImportError::MisplacedChild {
                    node: *hash,
                    child: *child,
                    expected,
                    found,
                });
            }
        }
        if let Some(level) = level {
            self.levels.insert(*hash, level);
        }
        // The node's put takes those holds over: released once a committed node counts them.
        let new = self.batch.put_object(
            kind,
            *hash,
            &[bytes],
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

    /// What `hash`, present as an object of `kind`, is (an internal node's level from
    /// [`Importer::stored_internal_level`]).
    fn shape_of(&mut self, hash: &Hash, kind: RecordKind) -> Result<Shape, ImportError> {
        Ok(match kind {
            RecordKind::Chunk => Shape::Chunk,
            RecordKind::LeafNode => Shape::Leaf,
            // Not an internal node after all (a damaged index): level 0 fits no place.
            RecordKind::InternalNode => Shape::Internal(
                self.stored_internal_level(hash)
                    .map_err(|source| ImportError::StoredNode {
                        hash: *hash,
                        source,
                    })?
                    .unwrap_or(0),
            ),
        })
    }

    /// The level of `hash` if it is an internal node this import stored or met, or one the
    /// store holds (committed; read verified, once per import); `None` for another kind. For
    /// a caller that checks a tree's shape where it meets a node it need not fetch, and for
    /// the import's own check of a node's children.
    pub fn stored_internal_level(&mut self, hash: &Hash) -> Result<Option<u8>, BlobError> {
        if let Some(level) = self.levels.get(hash) {
            return Ok(Some(*level));
        }
        let object = self.batch.store().read_object(hash)?;
        if object.kind != RecordKind::InternalNode {
            return Ok(None);
        }
        let level = InternalNode::decode(&object.bytes)
            .map(|node| node.level)
            .map_err(|source| BlobError::BadNode {
                hash: *hash,
                source,
            })?;
        self.levels.insert(*hash, level);
        Ok(Some(level))
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

    /// [`Importer::pin_in`] under `name`: a name the user gave also renames the blob's pin if
    /// `channel` pins it already ([`PinName`]).
    pub fn pin_named_in(
        &mut self,
        channel: &str,
        blob_ref: &BlobRef,
        name: &PinName,
    ) -> Result<(), StoreError> {
        check_channel_name(channel)?;
        check_pin_name(&name.name)?;
        self.batch.pin_named_in(channel, blob_ref, name);
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
            levels: HashMap::new(),
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
