//! Tree nodes: [`LeafNode`] (chunk refs) and [`InternalNode`] (child node refs).

use super::chunk::{ChunkRef, Encoding, data_size, read_chunk_list, write_chunk_list};
use super::layout::{
    CHILD_REF_LEN, FORMAT_VERSION, INTERNAL_CHILDREN_OFFSET, INTERNAL_NODE_MAGIC,
    LEAF_ENCODING_OFFSET, LEAF_NODE_MAGIC,
};
use super::reader::{Reader, put_count};
use super::{DecodeError, Hash, MAX_DEPTH, MAX_INTERNAL_FANOUT, internal_id, leaf_id};

/// Smallest valid internal node level (children are leaves).
pub const MIN_INTERNAL_LEVEL: u8 = 1;
/// Largest valid internal node level (`MAX_DEPTH - 1`: the root of the deepest tree).
pub const MAX_INTERNAL_LEVEL: u8 = MAX_DEPTH.saturating_sub(1);

/// The bottom level of a tree: a list of at most `MAX_LEAF_FANOUT` chunk refs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafNode {
    /// How the chunks are protected.
    pub encoding: Encoding,
    /// The chunks; covered bytes = sum of Data chunk sizes.
    pub chunks: Vec<ChunkRef>,
}

/// A reference from an internal node to one child node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChildRef {
    /// Node id of the child.
    pub hash: Hash,
    /// Blob bytes under that child (> 0).
    pub covered: u64,
}

/// An internal tree node: at most `MAX_INTERNAL_FANOUT` children of one level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InternalNode {
    /// 1 = children are leaves; L = children are internal nodes of level L-1.
    pub level: u8,
    /// The children, in blob order.
    pub children: Vec<ChildRef>,
}

impl LeafNode {
    /// Canonical bytes. Invalid values encode to bytes `decode` rejects.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            self.chunks
                .len()
                .saturating_mul(super::layout::CHUNK_REF_PARITY_LEN)
                .saturating_add(LEAF_ENCODING_OFFSET)
                .saturating_add(3),
        );
        out.extend_from_slice(&LEAF_NODE_MAGIC);
        out.push(FORMAT_VERSION);
        write_chunk_list(&mut out, self.encoding, &self.chunks);
        out
    }

    /// Strict canonical decode.
    pub fn decode(bytes: &[u8]) -> Result<LeafNode, DecodeError> {
        let mut r = Reader::new(bytes);
        r.header("leaf node", LEAF_NODE_MAGIC)?;
        let (encoding, chunks, _covered) = read_chunk_list(&mut r, "leaf chunks")?;
        r.finish()?;
        Ok(LeafNode { encoding, chunks })
    }

    /// Checks every rule `decode` enforces by decoding the encoding.
    pub fn validate(&self) -> Result<(), DecodeError> {
        Self::decode(&self.encode()).map(|_| ())
    }

    /// Node id: `leaf_id(&self.encode())`.
    pub fn id(&self) -> Hash {
        leaf_id(&self.encode())
    }

    /// Blob bytes under this leaf: sum of Data chunk sizes.
    pub fn covered(&self) -> Result<u64, DecodeError> {
        data_size(&self.chunks)
    }
}

impl InternalNode {
    /// Canonical bytes. Invalid values encode to bytes `decode` rejects.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            self.children
                .len()
                .saturating_mul(CHILD_REF_LEN)
                .saturating_add(INTERNAL_CHILDREN_OFFSET),
        );
        out.extend_from_slice(&INTERNAL_NODE_MAGIC);
        out.push(FORMAT_VERSION);
        out.push(self.level);
        put_count(&mut out, self.children.len());
        for child in &self.children {
            out.extend_from_slice(&child.hash);
            out.extend_from_slice(&child.covered.to_le_bytes());
        }
        out
    }

    /// Strict canonical decode.
    pub fn decode(bytes: &[u8]) -> Result<InternalNode, DecodeError> {
        let mut r = Reader::new(bytes);
        r.header("internal node", INTERNAL_NODE_MAGIC)?;
        let level = r.u8("level")?;
        if !(MIN_INTERNAL_LEVEL..=MAX_INTERNAL_LEVEL).contains(&level) {
            return Err(DecodeError::LevelOutOfRange {
                level,
                min: MIN_INTERNAL_LEVEL,
                max: MAX_INTERNAL_LEVEL,
            });
        }
        let count = r.count("internal node children", MAX_INTERNAL_FANOUT)?;
        r.ensure_room("internal node children", count, CHILD_REF_LEN)?;
        let mut children = Vec::with_capacity(count);
        let mut covered_sum: u64 = 0;
        for _ in 0..count {
            let hash = r.hash("child hash")?;
            let covered_offset = r.offset();
            let covered = r.u64("child covered")?;
            if covered == 0 {
                return Err(DecodeError::ZeroSize {
                    what: "child covered",
                    offset: covered_offset,
                });
            }
            covered_sum = covered_sum
                .checked_add(covered)
                .ok_or(DecodeError::Overflow {
                    what: "sum of child covered sizes",
                })?;
            children.push(ChildRef { hash, covered });
        }
        r.finish()?;
        Ok(InternalNode { level, children })
    }

    /// Checks every rule `decode` enforces by decoding the encoding.
    pub fn validate(&self) -> Result<(), DecodeError> {
        Self::decode(&self.encode()).map(|_| ())
    }

    /// Node id: `internal_id(&self.encode())`.
    pub fn id(&self) -> Hash {
        internal_id(&self.encode())
    }

    /// Blob bytes under this node: sum of children's `covered`.
    pub fn covered(&self) -> Result<u64, DecodeError> {
        self.children.iter().try_fold(0u64, |acc, child| {
            acc.checked_add(child.covered).ok_or(DecodeError::Overflow {
                what: "sum of child covered sizes",
            })
        })
    }
}
