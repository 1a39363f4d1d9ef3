//! Walking a blob's tree: reading and verifying its nodes, and listing its chunks in blob
//! order (`blob chunks`, GC's stripe check, fsck).

use std::collections::HashSet;
use std::ops::ControlFlow;

use net_mesh_segments::RecordKind;

use crate::codec::{
    BlobRef, ChunkRef, ChunkRole, Encoding, Hash, InternalNode, LeafNode, internal_id, leaf_id,
};
use crate::error::BlobError;
use crate::index::{IndexReader, ObjectEntry};
use crate::store::Store;

/// One chunk of a blob, for `blob chunks`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkInfo {
    pub hash: Hash,
    pub size: u32,
    pub role: ChunkRole,
    /// Erasure-coding stripe (None for a plain blob).
    pub stripe: Option<u32>,
}

/// Reads node `hash` (kind from its index entry), verifies its id and returns the ids of the
/// children it lists, one per entry (repeats included: counts are per entry).
pub(super) fn node_children(
    store: &Store,
    hash: &Hash,
    entry: &ObjectEntry,
) -> Result<Vec<Hash>, BlobError> {
    let bytes = store.read_record(hash, entry.kind, "object", entry.loc)?;
    match entry.kind {
        RecordKind::Chunk => Ok(Vec::new()),
        RecordKind::LeafNode => Ok(decode_leaf(hash, &bytes)?
            .chunks
            .iter()
            .map(|c| c.hash)
            .collect()),
        RecordKind::InternalNode => Ok(decode_internal(hash, &bytes)?
            .children
            .iter()
            .map(|c| c.hash)
            .collect()),
    }
}

pub(crate) fn decode_leaf(hash: &Hash, bytes: &[u8]) -> Result<LeafNode, BlobError> {
    let actual = leaf_id(bytes);
    if actual != *hash {
        return Err(BlobError::ChainMismatch {
            at_depth: 0,
            parent_hash: *hash,
            child_hash: actual,
        });
    }
    LeafNode::decode(bytes).map_err(|source| BlobError::BadNode {
        hash: *hash,
        source,
    })
}

pub(crate) fn decode_internal(hash: &Hash, bytes: &[u8]) -> Result<InternalNode, BlobError> {
    let actual = internal_id(bytes);
    if actual != *hash {
        return Err(BlobError::ChainMismatch {
            at_depth: 0,
            parent_hash: *hash,
            child_hash: actual,
        });
    }
    InternalNode::decode(bytes).map_err(|source| BlobError::BadNode {
        hash: *hash,
        source,
    })
}

fn read_verified(
    store: &Store,
    reader: &IndexReader,
    hash: &Hash,
    kind: RecordKind,
    what: &'static str,
) -> Result<bytes::Bytes, BlobError> {
    let entry = reader
        .object(hash)?
        .ok_or(BlobError::Missing { hash: *hash, what })?;
    if entry.kind != kind {
        return Err(BlobError::Corrupted {
            hash: *hash,
            reason: format!("index says {:?}, expected {what}", entry.kind),
        });
    }
    store.read_record(hash, kind, what, entry.loc)
}

/// What [`for_each_list`] calls with each chunk list.
/// It returns `Break` to stop the walk there.
type ListVisitor<'a> = dyn FnMut(&[ChunkRef], Encoding) -> Result<ControlFlow<()>, BlobError> + 'a;

/// Calls `f` with every chunk list of the blob in blob order (reading and verifying its nodes).
/// With `visited`, a node already in it (met earlier in this blob or another) is skipped with
/// its subtree, so each distinct list is visited once: a tree that lists one subtree many
/// times (a blob of repeated content, or a peer's tree made to list a few nodes an
/// astronomical number of times) costs its distinct nodes, not its logical size.
pub(super) fn for_each_list(
    store: &Store,
    reader: &IndexReader,
    blob_ref: &BlobRef,
    visited: Option<&mut HashSet<Hash>>,
    f: &mut ListVisitor<'_>,
) -> Result<ControlFlow<()>, BlobError> {
    match blob_ref {
        BlobRef::Small { hash, size } => {
            let chunk = ChunkRef {
                hash: *hash,
                size: u32::try_from(*size).unwrap_or(u32::MAX),
                role: ChunkRole::Data,
            };
            f(&[chunk], Encoding::Plain)
        }
        BlobRef::Manifest {
            encoding, chunks, ..
        } => f(chunks, *encoding),
        BlobRef::Tree {
            root_hash, depth, ..
        } => walk_node(
            store,
            reader,
            root_hash,
            depth.saturating_sub(1),
            visited,
            f,
        ),
    }
}

fn walk_node(
    store: &Store,
    reader: &IndexReader,
    hash: &Hash,
    level: u8,
    mut visited: Option<&mut HashSet<Hash>>,
    f: &mut ListVisitor<'_>,
) -> Result<ControlFlow<()>, BlobError> {
    if let Some(visited) = visited.as_deref_mut()
        && !visited.insert(*hash)
    {
        return Ok(ControlFlow::Continue(()));
    }
    if level == 0 {
        let bytes = read_verified(store, reader, hash, RecordKind::LeafNode, "leaf node")?;
        let leaf = decode_leaf(hash, &bytes)?;
        return f(&leaf.chunks, leaf.encoding);
    }
    let bytes = read_verified(
        store,
        reader,
        hash,
        RecordKind::InternalNode,
        "internal node",
    )?;
    let node = decode_internal(hash, &bytes)?;
    for child in &node.children {
        let flow = walk_node(
            store,
            reader,
            &child.hash,
            level.saturating_sub(1),
            visited.as_deref_mut(),
            f,
        )?;
        if flow.is_break() {
            return Ok(flow);
        }
    }
    Ok(ControlFlow::Continue(()))
}

impl Store {
    /// Every chunk of a blob as `{hash, size, role, stripe}`, in blob order (all in memory:
    /// for a blob of many chunks, [`Store::for_each_chunk`]).
    pub fn blob_chunks(&self, blob_ref: &BlobRef) -> Result<Vec<ChunkInfo>, BlobError> {
        let mut out = Vec::new();
        // Never stopped early: the visitor always continues.
        let _listed_all = self.for_each_chunk(blob_ref, &mut |chunk| {
            out.push(chunk);
            ControlFlow::Continue(())
        })?;
        Ok(out)
    }

    /// Calls `f` with every chunk of a blob as `{hash, size, role, stripe}`, in blob order,
    /// reading one tree node at a time, until `f` returns `Break`; returns whether it did. An
    /// erasure-coded list that does not split into stripes fails the listing as it fails a
    /// read ([`crate::erasure::stripe::assign`]).
    pub fn for_each_chunk(
        &self,
        blob_ref: &BlobRef,
        f: &mut dyn FnMut(ChunkInfo) -> ControlFlow<()>,
    ) -> Result<ControlFlow<()>, BlobError> {
        self.for_each_chunk_impl(blob_ref, f)
            .map_err(|e| self.lost_if_pinned(blob_ref, e))
    }

    fn for_each_chunk_impl(
        &self,
        blob_ref: &BlobRef,
        f: &mut dyn FnMut(ChunkInfo) -> ControlFlow<()>,
    ) -> Result<ControlFlow<()>, BlobError> {
        self.check_chunks_present(blob_ref)?;
        let reader = self.index.reader()?;
        let listed = for_each_list(self, &reader, blob_ref, None, &mut |chunks, encoding| {
            let stripes = crate::erasure::stripe::assign(chunks, encoding)?;
            for (c, stripe) in chunks.iter().zip(stripes) {
                let flow = f(ChunkInfo {
                    hash: c.hash,
                    size: c.size,
                    role: c.role,
                    stripe,
                });
                if flow.is_break() {
                    return Ok(flow);
                }
            }
            Ok(ControlFlow::Continue(()))
        });
        match (listed, blob_ref) {
            // The root node is what a Tree's listing reads first.
            (Err(BlobError::Missing { hash, .. }), BlobRef::Tree { root_hash, .. })
                if hash == *root_hash =>
            {
                Err(BlobError::not_in_store(blob_ref))
            }
            (listed, _) => listed,
        }
    }
}
