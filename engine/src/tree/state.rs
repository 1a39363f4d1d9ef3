//! Export and import of a [`TreeBuilder`]'s pending state, so a resumed upload continues the
//! exact tree an uninterrupted one would build. Pure code: no I/O.
//!
//! The state is what the builder holds between two chunks: the open leaf's chunk refs, each
//! level's completed nodes still waiting for their parent, and the running totals. Importing
//! checks every invariant the builder itself keeps, so a state decoded from disk can never make
//! the builder emit a malformed node.

use super::{PolicyError, TreeBuilder, TreePolicy};
use crate::codec::{ChildRef, ChunkRef, ChunkRole, Encoding, Hash, MAX_DEPTH};

/// A [`TreeBuilder`]'s complete pending state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeState {
    pub policy: TreePolicy,
    pub encoding: Encoding,
    /// Chunk refs of the leaf being filled (at most `policy.leaf_fanout`).
    pub open_leaf: Vec<ChunkRef>,
    /// `levels[i]`: completed nodes of level `i` (0 = leaves) waiting for their parent; each
    /// list holds 1..=`policy.internal_fanout` refs.
    pub levels: Vec<Vec<ChildRef>>,
    /// Data bytes of every chunk pushed so far (= input offset of the end of the last chunk).
    pub total_bytes: u64,
    /// Chunks pushed so far.
    pub chunk_count: u64,
    /// Leaf nodes emitted so far.
    pub completed_leaves: u64,
    /// Internal nodes emitted so far.
    pub completed_internals: u64,
}

/// Why a tree state cannot be imported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("tree policy: {0}")]
    Policy(#[from] PolicyError),
    #[error("open leaf holds {found} chunk refs, more than the leaf fan-out {max}")]
    LeafOverfull { found: usize, max: usize },
    #[error("level {level} holds {found} pending refs (allowed 1..={max})")]
    LevelSize {
        level: usize,
        found: usize,
        max: usize,
    },
    #[error("{levels} pending levels exceed the maximum tree depth")]
    TooDeep { levels: usize },
    #[error("parity chunk in a plain-encoded open leaf")]
    ParityInPlain,
    #[error("covered bytes {covered} do not add up to the total {total}")]
    SizeMismatch { covered: u64, total: u64 },
    #[error("a pending node covers zero bytes")]
    ZeroCovered,
    #[error("{chunks} chunks pushed but the open leaf is empty (or the reverse)")]
    CountMismatch { chunks: u64 },
}

impl TreeState {
    /// Every object this state references (the open leaf's chunks, then each pending node), with
    /// repeats: the objects a resumable upload's checkpoint holds a reference on.
    pub fn held_objects(&self) -> impl Iterator<Item = Hash> + '_ {
        self.open_leaf
            .iter()
            .map(|c| c.hash)
            .chain(self.levels.iter().flatten().map(|c| c.hash))
    }

    /// The last chunk pushed, if any (the builder closes a leaf lazily, so after any push the
    /// open leaf is non-empty and ends with it).
    pub fn last_chunk(&self) -> Option<&ChunkRef> {
        self.open_leaf.last()
    }

    /// Checks every invariant [`TreeBuilder`] keeps between two pushes.
    pub fn validate(&self) -> Result<(), StateError> {
        self.policy.validate()?;
        if self.open_leaf.len() > self.policy.leaf_fanout {
            return Err(StateError::LeafOverfull {
                found: self.open_leaf.len(),
                max: self.policy.leaf_fanout,
            });
        }
        if (self.chunk_count == 0) != self.open_leaf.is_empty() {
            return Err(StateError::CountMismatch {
                chunks: self.chunk_count,
            });
        }
        if self.chunk_count == 0 && !self.levels.is_empty() {
            return Err(StateError::CountMismatch {
                chunks: self.chunk_count,
            });
        }
        if self.levels.len().saturating_add(2) > usize::from(MAX_DEPTH) {
            return Err(StateError::TooDeep {
                levels: self.levels.len(),
            });
        }
        if self.encoding == Encoding::Plain
            && self.open_leaf.iter().any(|c| c.role != ChunkRole::Data)
        {
            return Err(StateError::ParityInPlain);
        }
        let mut covered = self
            .open_leaf
            .iter()
            .try_fold(0u64, |acc, c| acc.checked_add(c.data_size()));
        for (level, pending) in self.levels.iter().enumerate() {
            if pending.is_empty() || pending.len() > self.policy.internal_fanout {
                return Err(StateError::LevelSize {
                    level,
                    found: pending.len(),
                    max: self.policy.internal_fanout,
                });
            }
            for child in pending {
                if child.covered == 0 {
                    return Err(StateError::ZeroCovered);
                }
                covered = covered.and_then(|acc| acc.checked_add(child.covered));
            }
        }
        match covered {
            Some(c) if c == self.total_bytes => Ok(()),
            other => Err(StateError::SizeMismatch {
                covered: other.unwrap_or(u64::MAX),
                total: self.total_bytes,
            }),
        }
    }
}

impl TreeBuilder {
    /// A copy of the pending state (see [`TreeState`]).
    pub fn export_state(&self) -> TreeState {
        TreeState {
            policy: self.policy,
            encoding: self.encoding,
            open_leaf: self.leaf.clone(),
            levels: self.levels.clone(),
            total_bytes: self.total_bytes,
            chunk_count: self.chunk_count,
            completed_leaves: self.completed_leaves,
            completed_internals: self.completed_internals,
        }
    }

    /// A builder that continues from `state` exactly as the exporting builder would have.
    pub fn from_state(state: TreeState) -> Result<TreeBuilder, StateError> {
        state.validate()?;
        let leaf_bytes = state.open_leaf.iter().map(ChunkRef::data_size).sum();
        Ok(TreeBuilder {
            policy: state.policy,
            encoding: state.encoding,
            leaf: state.open_leaf,
            leaf_bytes,
            levels: state.levels,
            total_bytes: state.total_bytes,
            chunk_count: state.chunk_count,
            completed_leaves: state.completed_leaves,
            completed_internals: state.completed_internals,
        })
    }

    /// Leaf nodes emitted so far.
    pub fn completed_leaves(&self) -> u64 {
        self.completed_leaves
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use crate::codec::{BlobRef, InternalNode, LeafNode};
    use crate::tree::NodeSink;

    #[derive(Default)]
    struct Ids(Vec<Hash>);

    impl NodeSink for Ids {
        type Error = std::convert::Infallible;
        fn put_leaf(&mut self, leaf: &LeafNode) -> Result<Hash, Self::Error> {
            self.0.push(leaf.id());
            Ok(leaf.id())
        }
        fn put_internal(&mut self, node: &InternalNode) -> Result<Hash, Self::Error> {
            self.0.push(node.id());
            Ok(node.id())
        }
    }

    fn chunk(i: u32) -> ChunkRef {
        let mut hash = [0u8; 32];
        hash[..4].copy_from_slice(&i.to_le_bytes());
        ChunkRef {
            hash,
            size: 10 + i % 7,
            role: ChunkRole::Data,
        }
    }

    fn policy(leaf: usize, internal: usize) -> TreePolicy {
        TreePolicy {
            leaf_fanout: leaf,
            internal_fanout: internal,
            manifest_max_refs: crate::tree::DEFAULT_MANIFEST_MAX_REFS,
        }
    }

    fn uninterrupted(n: u32, p: TreePolicy) -> (BlobRef, Vec<Hash>) {
        let mut sink = Ids::default();
        let mut b = TreeBuilder::new(p, Encoding::Plain).unwrap();
        for i in 0..n {
            b.push(chunk(i), &mut sink).unwrap();
        }
        (b.finish(&mut sink).unwrap(), sink.0)
    }

    #[test]
    fn resuming_from_any_exported_state_builds_the_same_ref_and_nodes() {
        let crossing = TreePolicy {
            manifest_max_refs: 3,
            ..policy(8, 3)
        };
        for p in [
            policy(1, 2),
            policy(2, 2),
            policy(3, 4),
            policy(8, 3),
            crossing,
        ] {
            for n in [1u32, 2, 3, 5, 9, 17, 40] {
                let (want, want_nodes) = uninterrupted(n, p);
                for cut in 0..=n {
                    let mut sink = Ids::default();
                    let mut b = TreeBuilder::new(p, Encoding::Plain).unwrap();
                    for i in 0..cut {
                        b.push(chunk(i), &mut sink).unwrap();
                    }
                    let state = b.export_state();
                    state.validate().unwrap();
                    assert_eq!(state.completed_leaves, b.completed_leaves());
                    let mut resumed = TreeBuilder::from_state(state).unwrap();
                    for i in cut..n {
                        resumed.push(chunk(i), &mut sink).unwrap();
                    }
                    let got = resumed.finish(&mut sink).unwrap();
                    assert_eq!(got, want, "policy {p:?} n {n} cut {cut}");
                    assert_eq!(sink.0, want_nodes, "policy {p:?} n {n} cut {cut}");
                }
            }
        }
    }

    #[test]
    fn held_objects_are_the_open_leaf_then_pending_nodes() {
        let mut sink = Ids::default();
        let mut b = TreeBuilder::new(policy(2, 4), Encoding::Plain).unwrap();
        for i in 0..5 {
            b.push(chunk(i), &mut sink).unwrap();
        }
        let state = b.export_state();
        let held: Vec<Hash> = state.held_objects().collect();
        assert_eq!(held.len(), 1 + 2, "one open chunk, two closed leaves");
        assert_eq!(held[0], chunk(4).hash);
        assert_eq!(&held[1..], &sink.0[..]);
        assert_eq!(state.last_chunk(), Some(&chunk(4)));
    }

    #[test]
    fn inconsistent_states_are_rejected() {
        let mut sink = Ids::default();
        let mut b = TreeBuilder::new(policy(2, 2), Encoding::Plain).unwrap();
        for i in 0..7 {
            b.push(chunk(i), &mut sink).unwrap();
        }
        let good = b.export_state();

        let mut s = good.clone();
        s.total_bytes += 1;
        assert!(matches!(
            TreeBuilder::from_state(s),
            Err(StateError::SizeMismatch { .. })
        ));

        let mut s = good.clone();
        s.open_leaf.push(chunk(99));
        s.open_leaf.push(chunk(98));
        assert!(matches!(
            TreeBuilder::from_state(s),
            Err(StateError::LeafOverfull { .. })
        ));

        let mut s = good.clone();
        s.levels.push(Vec::new());
        assert!(matches!(
            TreeBuilder::from_state(s),
            Err(StateError::LevelSize { .. })
        ));

        let mut s = good.clone();
        s.open_leaf.clear();
        assert!(matches!(
            TreeBuilder::from_state(s),
            Err(StateError::CountMismatch { .. })
        ));

        let mut s = good.clone();
        s.policy.internal_fanout = 1;
        assert!(matches!(
            TreeBuilder::from_state(s),
            Err(StateError::Policy(_))
        ));

        let mut s = good;
        s.levels[0][0].covered = 0;
        assert!(TreeBuilder::from_state(s).is_err());
    }
}
