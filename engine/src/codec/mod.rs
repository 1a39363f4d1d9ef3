//! Wire codecs for the objects the engine stores and ships: [`BlobRef`], tree [`LeafNode`]s
//! and [`InternalNode`]s, plus chunk and node ids.
//!
//! This module is pure: no I/O, no clocks, no allocation proportional to anything but checked
//! input. Every decoder is strict and canonical — for every accepted input `b`,
//! `encode(decode(b)) == b` — and never panics on any input. The byte layouts are documented in
//! `docs/FORMAT.md` section 2; the named offsets live in [`layout`] and a test checks the two
//! agree.
#![deny(clippy::arithmetic_side_effects)]

mod blob_ref;
mod caps;
mod chunk;
mod error;
pub mod fuzzing;
pub mod layout;
mod node;
mod reader;
pub mod text;

pub use blob_ref::{BlobRef, MIN_TREE_DEPTH};
pub use caps::{CAP_BLOB_TREE_V3, Capabilities};
pub use chunk::{ChunkRef, ChunkRole, Encoding};
pub use error::DecodeError;
pub use node::{ChildRef, InternalNode, LeafNode, MAX_INTERNAL_LEVEL, MIN_INTERNAL_LEVEL};

/// A 32-byte BLAKE3 output: a chunk id (plain hash) or a tree node id (derive-key hash).
pub type Hash = [u8; 32];

/// Largest chunk the engine stores or references (16 MiB).
pub const MAX_CHUNK_SIZE: u32 = 16 * 1024 * 1024;
/// Most chunk refs in one [`BlobRef::Manifest`] or one [`LeafNode`].
pub const MAX_LEAF_FANOUT: usize = 65_536;
/// Most children of one [`InternalNode`].
pub const MAX_INTERNAL_FANOUT: usize = 65_536;
/// Most node levels in a tree, root to leaves inclusive ([`BlobRef::Tree`] `depth`).
pub const MAX_DEPTH: u8 = 32;

/// BLAKE3 derive-key context for leaf node ids.
pub const LEAF_NODE_CONTEXT: &str = "net-mesh 2026-11 tree leaf node v1";
/// BLAKE3 derive-key context for internal node ids.
pub const INTERNAL_NODE_CONTEXT: &str = "net-mesh 2026-11 tree internal node v1";

/// The id of a chunk: plain `BLAKE3(data)`, so `b3sum` agrees.
pub fn chunk_id(data: &[u8]) -> Hash {
    *blake3::hash(data).as_bytes()
}

/// [`chunk_id`] of the bytes of `parts` one after another.
pub fn chunk_id_parts(parts: &[&[u8]]) -> Hash {
    let mut hasher = blake3::Hasher::new();
    for part in parts {
        hasher.update(part);
    }
    *hasher.finalize().as_bytes()
}

/// The two kinds of tree node; each has its own id derivation context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeKind {
    /// A [`LeafNode`]: a list of chunk refs.
    Leaf,
    /// An [`InternalNode`]: a list of child node refs.
    Internal,
}

impl NodeKind {
    /// The BLAKE3 derive-key context string for this node kind.
    pub fn context(self) -> &'static str {
        match self {
            NodeKind::Leaf => LEAF_NODE_CONTEXT,
            NodeKind::Internal => INTERNAL_NODE_CONTEXT,
        }
    }
}

/// The id of a tree node: BLAKE3 in derive-key mode with the kind's context over its canonical
/// encoding. Distinct from any chunk id (plain hash) and from the other node kind.
pub fn node_id(kind: NodeKind, encoded: &[u8]) -> Hash {
    blake3::derive_key(kind.context(), encoded)
}

/// Id of an encoded leaf node (`node_id(NodeKind::Leaf, encoded)`).
pub fn leaf_id(encoded: &[u8]) -> Hash {
    node_id(NodeKind::Leaf, encoded)
}

/// Id of an encoded internal node (`node_id(NodeKind::Internal, encoded)`).
pub fn internal_id(encoded: &[u8]) -> Hash {
    node_id(NodeKind::Internal, encoded)
}
