//! Builds a blob's tree from its chunk refs as they arrive. Pure code: no I/O.
//!
//! Memory is bounded by `leaf_fanout + depth × internal_fanout` refs, whatever the blob size:
//! a leaf is handed to the [`NodeSink`] as soon as it is full and the next chunk arrives, and
//! internal nodes likewise. The shape depends only on the chunk sequence and the policy, so two
//! uploads of the same bytes build the same tree (and the same `BlobRef`).
//!
//! Shape rules (documented in docs/FORMAT.md §2.11):
//! - 1 chunk → `BlobRef::Small` (plain encoding only);
//! - a list that fits one leaf and holds at most `manifest_max_refs` refs → `BlobRef::Manifest`
//!   (no node stored);
//! - more → leaves of `leaf_fanout` chunks (the last may be short), grouped into internal nodes of
//!   `internal_fanout` children level by level; at the end every level below the top is closed
//!   (a closing node may have a single child), and the top level's single node is the root.
//!
//! The Manifest → Tree cross-over is what bounds the printed ref: a Manifest inlines its chunk
//! list, a Tree is 48 or 50 bytes whatever the blob size. The default cross-over
//! ([`DEFAULT_MANIFEST_MAX_REFS`]) keeps every text ref within [`MAX_SHORT_REF_TEXT_LEN`].

use crate::codec::layout::{
    CHUNK_REF_PARITY_LEN, ENCODING_REED_SOLOMON_LEN, MANIFEST_ENCODING_OFFSET, TEXT_PREFIX,
};
use crate::codec::{
    BlobRef, ChildRef, ChunkRef, ChunkRole, Encoding, Hash, InternalNode, LeafNode, MAX_DEPTH,
    MAX_INTERNAL_FANOUT, MAX_LEAF_FANOUT,
};

// Export/import of the builder's pending state (resumable uploads keep it in checkpoints).
mod state;
pub use state::{StateError, TreeState};

/// Longest printed ref (the `nm1…` text form) a store writing with the default tree policy
/// produces, for every blob size and encoding. Refs are pasted into shells, URLs and messages.
pub const MAX_SHORT_REF_TEXT_LEN: usize = 2048;

/// Default Manifest → Tree cross-over: the most chunk refs a Manifest whose text form fits
/// [`MAX_SHORT_REF_TEXT_LEN`] can hold in the worst case (30).
pub const DEFAULT_MANIFEST_MAX_REFS: usize = manifest_refs_within(MAX_SHORT_REF_TEXT_LEN);

/// Most chunk refs a Manifest may inline so that its text form is at most `text_len`
/// characters whatever its chunks: every ref counted as large as a Parity ref (41 bytes) and
/// the header as large as a Reed-Solomon one (21 bytes). Base32 turns `b` bytes into
/// `ceil(8b / 5)` characters, so `b <= floor(5 × (text_len − 3) / 8)`.
pub const fn manifest_refs_within(text_len: usize) -> usize {
    let base32_chars = text_len.saturating_sub(TEXT_PREFIX.len());
    let wire_bytes = base32_chars.saturating_mul(5) / 8;
    let header = MANIFEST_ENCODING_OFFSET + ENCODING_REED_SOLOMON_LEN;
    wire_bytes.saturating_sub(header) / CHUNK_REF_PARITY_LEN
}

/// The shape of the trees a store writes. Reads never depend on it: every ref carries its
/// shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreePolicy {
    /// Chunk refs per leaf node.
    pub leaf_fanout: usize,
    /// Children per internal node.
    pub internal_fanout: usize,
    /// Most chunk refs a `BlobRef::Manifest` inlines; a blob with more becomes a `Tree` (even
    /// when its refs fit one leaf: a tree of one root over one leaf).
    pub manifest_max_refs: usize,
}

impl Default for TreePolicy {
    fn default() -> Self {
        TreePolicy {
            leaf_fanout: 8192,
            internal_fanout: 4096,
            manifest_max_refs: DEFAULT_MANIFEST_MAX_REFS,
        }
    }
}

/// Why a tree policy was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("leaf fan-out {0} is outside 1..={MAX_LEAF_FANOUT}")]
    LeafFanout(usize),
    #[error("internal fan-out {0} is outside 2..={MAX_INTERNAL_FANOUT}")]
    InternalFanout(usize),
    #[error("manifest cross-over {0} is outside 1..={MAX_LEAF_FANOUT} chunk refs")]
    ManifestMaxRefs(usize),
}

impl TreePolicy {
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.leaf_fanout == 0 || self.leaf_fanout > MAX_LEAF_FANOUT {
            return Err(PolicyError::LeafFanout(self.leaf_fanout));
        }
        if self.internal_fanout < 2 || self.internal_fanout > MAX_INTERNAL_FANOUT {
            return Err(PolicyError::InternalFanout(self.internal_fanout));
        }
        if self.manifest_max_refs == 0 || self.manifest_max_refs > MAX_LEAF_FANOUT {
            return Err(PolicyError::ManifestMaxRefs(self.manifest_max_refs));
        }
        Ok(())
    }
}

/// Receives the nodes of a tree as they are completed; returns each node's id.
pub trait NodeSink {
    type Error;
    fn put_leaf(&mut self, leaf: &LeafNode) -> Result<Hash, Self::Error>;
    fn put_internal(&mut self, node: &InternalNode) -> Result<Hash, Self::Error>;
}

/// Why a tree could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TreeError<E> {
    #[error(transparent)]
    Sink(E),
    #[error("blob needs more than {MAX_DEPTH} tree levels with this fan-out")]
    TooDeep,
    #[error("blob size overflows u64")]
    SizeOverflow,
}

/// Incremental tree builder; see the module docs for the shape rules.
#[derive(Debug)]
pub struct TreeBuilder {
    policy: TreePolicy,
    encoding: Encoding,
    /// Chunk refs of the leaf being filled.
    leaf: Vec<ChunkRef>,
    /// Data bytes covered by `leaf`.
    leaf_bytes: u64,
    /// `levels[i]`: completed nodes of level `i` (0 = leaves) waiting for their parent.
    levels: Vec<Vec<ChildRef>>,
    total_bytes: u64,
    chunk_count: u64,
    /// Leaf nodes handed to the sink so far (checkpoints record it).
    completed_leaves: u64,
    /// Internal nodes handed to the sink so far.
    completed_internals: u64,
}

impl TreeBuilder {
    pub fn new(policy: TreePolicy, encoding: Encoding) -> Result<TreeBuilder, PolicyError> {
        policy.validate()?;
        Ok(TreeBuilder {
            policy,
            encoding,
            leaf: Vec::new(),
            leaf_bytes: 0,
            levels: Vec::new(),
            total_bytes: 0,
            chunk_count: 0,
            completed_leaves: 0,
            completed_internals: 0,
        })
    }

    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    pub fn chunk_count(&self) -> u64 {
        self.chunk_count
    }

    /// Adds the next chunk of the blob (data or parity, in blob order).
    pub fn push<S: NodeSink>(
        &mut self,
        chunk: ChunkRef,
        sink: &mut S,
    ) -> Result<(), TreeError<S::Error>> {
        if self.leaf.len() >= self.policy.leaf_fanout {
            self.close_leaf(sink)?;
        }
        if chunk.role == ChunkRole::Data {
            let size = u64::from(chunk.size);
            self.leaf_bytes = self
                .leaf_bytes
                .checked_add(size)
                .ok_or(TreeError::SizeOverflow)?;
            self.total_bytes = self
                .total_bytes
                .checked_add(size)
                .ok_or(TreeError::SizeOverflow)?;
        }
        self.leaf.push(chunk);
        self.chunk_count = self.chunk_count.saturating_add(1);
        Ok(())
    }

    /// Adds one erasure-coding stripe: its data refs, then its parity refs. A stripe is never
    /// split across leaves: when it would take the open leaf past `leaf_fanout` refs, the leaf
    /// is closed first. So leaf fan-out is counted in whole stripes, and a single stripe of
    /// more than `leaf_fanout` refs gets a leaf of its own.
    pub fn push_stripe<S: NodeSink>(
        &mut self,
        stripe: &[ChunkRef],
        sink: &mut S,
    ) -> Result<(), TreeError<S::Error>> {
        if !self.leaf.is_empty()
            && self.leaf.len().saturating_add(stripe.len()) > self.policy.leaf_fanout
        {
            self.close_leaf(sink)?;
        }
        for chunk in stripe {
            if chunk.role == ChunkRole::Data {
                let size = u64::from(chunk.size);
                self.leaf_bytes = self
                    .leaf_bytes
                    .checked_add(size)
                    .ok_or(TreeError::SizeOverflow)?;
                self.total_bytes = self
                    .total_bytes
                    .checked_add(size)
                    .ok_or(TreeError::SizeOverflow)?;
            }
            self.leaf.push(*chunk);
            self.chunk_count = self.chunk_count.saturating_add(1);
        }
        Ok(())
    }

    fn close_leaf<S: NodeSink>(&mut self, sink: &mut S) -> Result<(), TreeError<S::Error>> {
        let node = LeafNode {
            encoding: self.encoding,
            chunks: std::mem::take(&mut self.leaf),
        };
        let hash = sink.put_leaf(&node).map_err(TreeError::Sink)?;
        self.completed_leaves = self.completed_leaves.saturating_add(1);
        let covered = std::mem::take(&mut self.leaf_bytes);
        self.push_child(0, ChildRef { hash, covered }, sink)
    }

    /// Adds a completed node of level `level` to its parent's pending list.
    fn push_child<S: NodeSink>(
        &mut self,
        level: usize,
        child: ChildRef,
        sink: &mut S,
    ) -> Result<(), TreeError<S::Error>> {
        if level + 2 > usize::from(MAX_DEPTH) {
            return Err(TreeError::TooDeep);
        }
        if self.levels.len() <= level {
            self.levels.resize_with(level + 1, Vec::new);
        }
        let full = self
            .levels
            .get(level)
            .is_some_and(|l| l.len() >= self.policy.internal_fanout);
        if full {
            let parent = self.close_internal(level, sink)?;
            self.push_child(level + 1, parent, sink)?;
        }
        if let Some(pending) = self.levels.get_mut(level) {
            pending.push(child);
        }
        Ok(())
    }

    /// Emits the node over `levels[level]` (a node of level `level + 1`) and empties the list.
    fn close_internal<S: NodeSink>(
        &mut self,
        level: usize,
        sink: &mut S,
    ) -> Result<ChildRef, TreeError<S::Error>> {
        let children = self
            .levels
            .get_mut(level)
            .map(std::mem::take)
            .unwrap_or_default();
        let covered = children
            .iter()
            .try_fold(0u64, |acc, c| acc.checked_add(c.covered))
            .ok_or(TreeError::SizeOverflow)?;
        let node_level = u8::try_from(level + 1).map_err(|_| TreeError::TooDeep)?;
        let node = InternalNode {
            level: node_level,
            children,
        };
        let hash = sink.put_internal(&node).map_err(TreeError::Sink)?;
        self.completed_internals = self.completed_internals.saturating_add(1);
        Ok(ChildRef { hash, covered })
    }

    /// Ends the blob: emits the remaining nodes and returns the blob's reference.
    ///
    /// A blob with no chunk at all is the caller's business (it stores the empty chunk first).
    pub fn finish<S: NodeSink>(mut self, sink: &mut S) -> Result<BlobRef, TreeError<S::Error>> {
        if self.levels.is_empty() && self.leaf.len() <= self.policy.manifest_max_refs {
            return Ok(self.flat_ref());
        }
        self.close_leaf(sink)?;
        let mut level = 0;
        loop {
            let is_top = level + 1 >= self.levels.len();
            let pending = self.levels.get(level).map_or(0, Vec::len);
            // A leaf is never the root (a Tree's depth is at least 2): a single leaf gets an
            // internal node of one child above it.
            if is_top && pending == 1 && level > 0 {
                let root = self.levels.get(level).and_then(|l| l.first()).copied();
                let Some(root) = root else { break };
                let depth = u8::try_from(level + 1).map_err(|_| TreeError::TooDeep)?;
                return Ok(BlobRef::Tree {
                    encoding: self.encoding,
                    root_hash: root.hash,
                    total_size: self.total_bytes,
                    depth,
                });
            }
            let parent = self.close_internal(level, sink)?;
            self.push_child(level + 1, parent, sink)?;
            level += 1;
        }
        // Unreachable in practice: the loop returns once a single node tops the tree.
        Err(TreeError::TooDeep)
    }

    fn flat_ref(self) -> BlobRef {
        match (self.leaf.as_slice(), self.encoding) {
            ([only], Encoding::Plain) if only.role == ChunkRole::Data => BlobRef::Small {
                hash: only.hash,
                size: u64::from(only.size),
            },
            _ => BlobRef::Manifest {
                encoding: self.encoding,
                chunks: self.leaf,
                size: self.total_bytes,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[derive(Default)]
    struct MemSink {
        leaves: HashMap<Hash, LeafNode>,
        internals: HashMap<Hash, InternalNode>,
    }

    impl NodeSink for MemSink {
        type Error = std::convert::Infallible;
        fn put_leaf(&mut self, leaf: &LeafNode) -> Result<Hash, Self::Error> {
            let id = leaf.id();
            self.leaves.insert(id, leaf.clone());
            Ok(id)
        }
        fn put_internal(&mut self, node: &InternalNode) -> Result<Hash, Self::Error> {
            let id = node.id();
            self.internals.insert(id, node.clone());
            Ok(id)
        }
    }

    fn chunk(i: u32) -> ChunkRef {
        let mut hash = [0u8; 32];
        hash[..4].copy_from_slice(&i.to_le_bytes());
        ChunkRef {
            hash,
            size: 100 + i,
            role: ChunkRole::Data,
        }
    }

    fn build(n: u32, policy: TreePolicy) -> (BlobRef, MemSink) {
        let mut sink = MemSink::default();
        let mut b = TreeBuilder::new(policy, Encoding::Plain).unwrap();
        for i in 0..n {
            b.push(chunk(i), &mut sink).unwrap();
        }
        (b.finish(&mut sink).unwrap(), sink)
    }

    /// Walks the tree and returns the chunks in order, checking covered sizes and levels.
    fn walk(sink: &MemSink, hash: Hash, level: u8, out: &mut Vec<ChunkRef>) -> u64 {
        if level == 0 {
            let leaf = &sink.leaves[&hash];
            out.extend(leaf.chunks.iter().copied());
            return leaf.chunks.iter().map(|c| u64::from(c.size)).sum();
        }
        let node = &sink.internals[&hash];
        assert_eq!(node.level, level);
        node.children
            .iter()
            .map(|c| {
                let got = walk(sink, c.hash, level - 1, out);
                assert_eq!(got, c.covered);
                got
            })
            .sum()
    }

    const TINY: TreePolicy = TreePolicy {
        leaf_fanout: 2,
        internal_fanout: 2,
        manifest_max_refs: DEFAULT_MANIFEST_MAX_REFS,
    };

    #[test]
    fn one_chunk_is_small_and_few_are_a_manifest() {
        let (r, sink) = build(1, TINY);
        assert_eq!(
            r,
            BlobRef::Small {
                hash: chunk(0).hash,
                size: 100
            }
        );
        assert!(sink.leaves.is_empty());
        let (r, sink) = build(2, TINY);
        assert!(matches!(r, BlobRef::Manifest { ref chunks, size: 201, .. } if chunks.len() == 2));
        assert!(sink.leaves.is_empty());
    }

    #[test]
    fn trees_of_every_size_hold_all_chunks_in_order() {
        for n in 3..70u32 {
            let (r, sink) = build(n, TINY);
            let BlobRef::Tree {
                root_hash,
                total_size,
                depth,
                ..
            } = r
            else {
                panic!("{n} chunks should make a tree, got {r:?}")
            };
            let mut out = Vec::new();
            let covered = walk(&sink, root_hash, depth - 1, &mut out);
            let expected: Vec<_> = (0..n).map(chunk).collect();
            assert_eq!(out, expected, "n = {n}");
            assert_eq!(covered, total_size);
            assert_eq!(
                total_size,
                expected.iter().map(|c| u64::from(c.size)).sum::<u64>()
            );
        }
    }

    #[test]
    fn tiny_fanout_reaches_depth_three_and_more() {
        let (r, _) = build(5, TINY);
        assert_eq!(r.depth(), 3);
        let (r, _) = build(17, TINY);
        assert!(r.depth() >= 4, "depth {}", r.depth());
    }

    #[test]
    fn same_chunks_build_the_same_ref() {
        let policy = TreePolicy {
            leaf_fanout: 3,
            internal_fanout: 4,
            manifest_max_refs: DEFAULT_MANIFEST_MAX_REFS,
        };
        assert_eq!(build(50, policy).0, build(50, policy).0);
        assert_ne!(build(50, policy).0, build(51, policy).0);
    }

    #[test]
    fn past_the_manifest_cross_over_one_leaf_becomes_a_tree_of_depth_two() {
        let policy = TreePolicy {
            leaf_fanout: 10,
            internal_fanout: 2,
            manifest_max_refs: 4,
        };
        let (r, sink) = build(4, policy);
        assert!(matches!(r, BlobRef::Manifest { ref chunks, .. } if chunks.len() == 4));
        assert!(sink.leaves.is_empty() && sink.internals.is_empty());
        for n in 5..=10u32 {
            let (r, sink) = build(n, policy);
            let BlobRef::Tree {
                root_hash, depth, ..
            } = r
            else {
                panic!("{n} chunks should make a tree, got {r:?}")
            };
            assert_eq!(depth, 2, "n = {n}");
            assert_eq!(sink.leaves.len(), 1);
            assert_eq!(sink.internals[&root_hash].children.len(), 1);
            let mut out = Vec::new();
            walk(&sink, root_hash, 1, &mut out);
            assert_eq!(out, (0..n).map(chunk).collect::<Vec<_>>());
        }
        // One chunk stays Small whatever the cross-over.
        let one = TreePolicy {
            manifest_max_refs: 1,
            ..policy
        };
        assert!(matches!(build(1, one).0, BlobRef::Small { .. }));
        assert!(matches!(build(2, one).0, BlobRef::Tree { depth: 2, .. }));
    }

    #[test]
    fn default_cross_over_is_the_largest_that_keeps_refs_short() {
        assert_eq!(DEFAULT_MANIFEST_MAX_REFS, 30);
        let base32 = |bytes: usize| (bytes * 8).div_ceil(5);
        assert!(3 + base32(21 + 30 * 41) <= MAX_SHORT_REF_TEXT_LEN);
        assert!(3 + base32(21 + 31 * 41) > MAX_SHORT_REF_TEXT_LEN);
        assert_eq!(manifest_refs_within(3 + base32(21 + 7 * 41)), 7);
        assert_eq!(manifest_refs_within(0), 0);
    }

    #[test]
    fn invalid_policy_is_rejected() {
        let bad = TreePolicy {
            leaf_fanout: 0,
            internal_fanout: 2,
            manifest_max_refs: 1,
        };
        assert_eq!(
            TreeBuilder::new(bad, Encoding::Plain).unwrap_err(),
            PolicyError::LeafFanout(0)
        );
        let bad = TreePolicy {
            leaf_fanout: 2,
            internal_fanout: 1,
            manifest_max_refs: 1,
        };
        assert_eq!(
            TreeBuilder::new(bad, Encoding::Plain).unwrap_err(),
            PolicyError::InternalFanout(1)
        );
        let bad = TreePolicy {
            manifest_max_refs: 0,
            ..TreePolicy::default()
        };
        assert_eq!(
            TreeBuilder::new(bad, Encoding::Plain).unwrap_err(),
            PolicyError::ManifestMaxRefs(0)
        );
    }
}
