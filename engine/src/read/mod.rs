//! The read path: whole and range reads, verified on the way down.
//!
//! Every node is hashed and compared with the hash its parent (or the `BlobRef`) holds before its
//! children are used; every chunk is hashed before a byte of it reaches the sink. A range read
//! descends only into the children whose byte span intersects the range.

mod erasure;

use std::cell::Cell;
use std::collections::HashMap;
use std::io::Write;
use std::ops::Range;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use net_mesh_segments::{RecordKind, RecordLoc, SegmentError};

use crate::codec::{
    BlobRef, ChunkRef, ChunkRole, Encoding, Hash, InternalNode, LeafNode, chunk_id, chunk_id_parts,
    internal_id, leaf_id,
};
use crate::error::BlobError;
use crate::index::IndexReader;
use crate::store::Store;

/// Summary of a blob for `stat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobStat {
    pub kind: &'static str,
    pub size: u64,
    pub depth: u8,
    pub chunks: u64,
    pub encoding: Encoding,
}

/// Where a chunk that fails its hash check sits, for the error it produces.
#[derive(Clone, Copy)]
pub(crate) enum ChunkPlace {
    /// Listed in a Small or Manifest ref: index in the list.
    Flat,
    /// Listed in a leaf at this depth of a tree.
    InTree { leaf_depth: u8 },
}

/// Record kind, name for errors, and id function of a node level.
type NodeKindInfo = (RecordKind, &'static str, fn(&[u8]) -> Hash);

/// What [`Store::read_objects`] hands on for each object: its id, its kind, and what the store
/// answered (the bytes are the receiver's to keep). Returning `false` stops the read (it then
/// fails with `BlobError::Sink`).
pub type ObjectAnswer<'a> = dyn FnMut(&Hash, RecordKind, Result<Bytes, &BlobError>) -> bool + 'a;

/// A data chunk's bytes as a source holds them: in order, in one part or more (a remote
/// source's pieces as they arrived, so they need not be joined).
pub type ChunkParts = Vec<Bytes>;

/// The bytes of `parts` in one buffer: the part itself when there is one (no copy), else the
/// parts joined.
pub fn joined(parts: ChunkParts) -> Bytes {
    match <[Bytes; 1]>::try_from(parts) {
        Ok([one]) => one,
        Err(parts) => Bytes::from(parts.concat()),
    }
}

/// Where a verified read gets the objects it asks for: the store's index and segments
/// ([`Store::fetch_range`]), or a remote node's stream (the storage node's client). The reader
/// checks every object it is given against the hash it asked for (and every node against its
/// parent, every chunk against its ref) before using it, so a source need not be trusted.
pub trait ObjectSource {
    /// The bytes of object `hash`, which the reader expects to be a `kind` (`what` names it in
    /// errors).
    fn object(&self, hash: &Hash, kind: RecordKind, what: &'static str)
    -> Result<Bytes, BlobError>;

    /// The bytes of data chunk `hash`, in parts, for a read that gives them back through
    /// [`ObjectSource::chunk_used`] once it has verified them and written its part of the
    /// range (nothing is asked for in between), so a source that hands objects on can move
    /// them instead of copying, and only verified ones. Default: [`ObjectSource::object`], as
    /// one part.
    fn chunk_to_use(&self, hash: &Hash) -> Result<ChunkParts, BlobError> {
        Ok(vec![self.object(hash, RecordKind::Chunk, "chunk")?])
    }

    /// Takes back a chunk read with [`ObjectSource::chunk_to_use`], verified and used. An
    /// error stops the read. Default: the bytes are dropped.
    fn chunk_used(&self, _hash: &Hash, _parts: ChunkParts) -> Result<(), BlobError> {
        Ok(())
    }
}

/// The store as an [`ObjectSource`]: one index snapshot, and the segments.
pub(crate) struct StoreSource<'a> {
    pub(crate) store: &'a Store,
    pub(crate) index: IndexReader,
}

impl ObjectSource for StoreSource<'_> {
    fn object(
        &self,
        hash: &Hash,
        kind: RecordKind,
        what: &'static str,
    ) -> Result<Bytes, BlobError> {
        let entry = self
            .index
            .object(hash)?
            .ok_or(BlobError::Missing { hash: *hash, what })?;
        if entry.kind != kind {
            return Err(BlobError::Corrupted {
                hash: *hash,
                reason: format!("index says {:?}, expected {what}", entry.kind),
            });
        }
        let counter = match kind {
            RecordKind::Chunk => &self.store.stats.chunk_reads,
            _ => &self.store.stats.node_reads,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.store.read_record(hash, kind, what, entry.loc)
    }
}

/// A verified traversal of one blob over an [`ObjectSource`].
pub(crate) struct Reader<'a> {
    source: &'a dyn ObjectSource,
    /// Whether the source had anything of the objects asked for so far (an object, or one
    /// that is there but fails): until then, a read that fails for missing objects found
    /// the blob absent rather than damaged.
    found_any: Cell<bool>,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(source: &'a dyn ObjectSource) -> Reader<'a> {
        Reader {
            source,
            found_any: Cell::new(false),
        }
    }

    /// Notes what the source answered for one object.
    fn noted<T>(&self, answer: Result<T, BlobError>) -> Result<T, BlobError> {
        if !matches!(answer, Err(BlobError::Missing { .. })) {
            self.found_any.set(true);
        }
        answer
    }

    /// `e`, the failure of a traversal of `blob_ref`, as [`BlobError::NotInStore`] when every
    /// object it asked for was missing (lost erasure-coded shards included).
    fn absent_or(&self, blob_ref: &BlobRef, e: BlobError) -> BlobError {
        match e {
            BlobError::Missing { .. } | BlobError::Unrecoverable { .. }
                if !self.found_any.get() =>
            {
                BlobError::not_in_store(blob_ref)
            }
            other => other,
        }
    }

    pub(crate) fn read_object(
        &self,
        hash: &Hash,
        kind: RecordKind,
        what: &'static str,
    ) -> Result<Bytes, BlobError> {
        self.noted(self.source.object(hash, kind, what))
    }

    /// Reads and verifies one chunk.
    pub(crate) fn chunk(
        &self,
        chunk: &ChunkRef,
        index: u64,
        place: ChunkPlace,
    ) -> Result<Bytes, BlobError> {
        let data = self.read_object(&chunk.hash, RecordKind::Chunk, "chunk")?;
        check_chunk(chunk, index, place, data)
    }

    /// Writes the part of `range` that falls in the data chunks of `chunks`, whose first byte is
    /// at blob offset `base`.
    pub(crate) fn chunks(
        &self,
        chunks: &[ChunkRef],
        base: u64,
        range: &Range<u64>,
        place: ChunkPlace,
        sink: &mut dyn Write,
    ) -> Result<(), BlobError> {
        let mut start = base;
        for (i, chunk) in chunks.iter().enumerate() {
            if chunk.role != ChunkRole::Data {
                continue;
            }
            let end = start.saturating_add(u64::from(chunk.size));
            if end > range.start && start < range.end {
                let parts = self.noted(self.source.chunk_to_use(&chunk.hash))?;
                let slices: Vec<&[u8]> = parts.iter().map(|part| &part[..]).collect();
                check_chunk_id(chunk, i as u64, place, chunk_id_parts(&slices), &slices)?;
                // The chunk's bytes `from..to` (its length is its ref's, checked above).
                let mut from = range.start.saturating_sub(start);
                let mut to = range.end.min(end).saturating_sub(start);
                for slice in slices {
                    let len = slice.len();
                    let at = usize::try_from(from).unwrap_or(usize::MAX).min(len);
                    let until = usize::try_from(to).unwrap_or(usize::MAX).min(len);
                    if let Some(part) = slice.get(at..until).filter(|part| !part.is_empty()) {
                        sink.write_all(part).map_err(BlobError::Sink)?;
                    }
                    from = from.saturating_sub(len as u64);
                    to = to.saturating_sub(len as u64);
                }
                self.source.chunk_used(&chunk.hash, parts)?;
            }
            if start >= range.end {
                break;
            }
            start = end;
        }
        Ok(())
    }

    /// Reads node `hash` at tree level `level` (0 = leaf), `at_depth` below the root, covering
    /// `covered` bytes from blob offset `base`, and writes its part of `range`.
    #[allow(clippy::too_many_arguments)]
    fn node(
        &self,
        hash: &Hash,
        level: u8,
        at_depth: u8,
        base: u64,
        covered: u64,
        encoding: Encoding,
        range: &Range<u64>,
        sink: &mut dyn Write,
    ) -> Result<(), BlobError> {
        if level == 0 {
            let bytes = self.read_object(hash, RecordKind::LeafNode, "leaf node")?;
            let actual = leaf_id(&bytes);
            if actual != *hash {
                return Err(BlobError::ChainMismatch {
                    at_depth,
                    parent_hash: *hash,
                    child_hash: actual,
                });
            }
            let leaf = LeafNode::decode(&bytes).map_err(|source| BlobError::BadNode {
                hash: *hash,
                source,
            })?;
            let leaf_bytes = leaf.covered().map_err(|source| BlobError::BadNode {
                hash: *hash,
                source,
            })?;
            if leaf_bytes != covered || leaf.encoding != encoding {
                return Err(BlobError::Corrupted {
                    hash: *hash,
                    reason: format!("leaf covers {leaf_bytes} bytes, its parent says {covered}"),
                });
            }
            return self.chunk_list(
                &leaf.chunks,
                leaf.encoding,
                base,
                range,
                ChunkPlace::InTree {
                    leaf_depth: at_depth,
                },
                sink,
            );
        }
        let bytes = self.read_object(hash, RecordKind::InternalNode, "internal node")?;
        let actual = internal_id(&bytes);
        if actual != *hash {
            return Err(BlobError::ChainMismatch {
                at_depth,
                parent_hash: *hash,
                child_hash: actual,
            });
        }
        let node = InternalNode::decode(&bytes).map_err(|source| BlobError::BadNode {
            hash: *hash,
            source,
        })?;
        let node_bytes = node.covered().map_err(|source| BlobError::BadNode {
            hash: *hash,
            source,
        })?;
        if node.level != level || node_bytes != covered {
            return Err(BlobError::Corrupted {
                hash: *hash,
                reason: format!(
                    "node has level {} covering {node_bytes} bytes; expected level {level} covering {covered}",
                    node.level
                ),
            });
        }
        let mut start = base;
        for child in &node.children {
            let end = start.saturating_add(child.covered);
            if end > range.start && start < range.end {
                self.node(
                    &child.hash,
                    level.saturating_sub(1),
                    at_depth.saturating_add(1),
                    start,
                    child.covered,
                    encoding,
                    range,
                    sink,
                )?;
            }
            if end >= range.end {
                break;
            }
            start = end;
        }
        Ok(())
    }

    fn blob(
        &self,
        blob_ref: &BlobRef,
        range: Range<u64>,
        sink: &mut dyn Write,
    ) -> Result<(), BlobError> {
        match blob_ref {
            BlobRef::Small { hash, size } => {
                let size32 = u32::try_from(*size).map_err(|_| BlobError::Corrupted {
                    hash: *hash,
                    reason: "small blob larger than a chunk".into(),
                })?;
                let chunk = ChunkRef {
                    hash: *hash,
                    size: size32,
                    role: ChunkRole::Data,
                };
                self.chunks(&[chunk], 0, &range, ChunkPlace::Flat, sink)
            }
            BlobRef::Manifest {
                chunks, encoding, ..
            } => self.chunk_list(chunks, *encoding, 0, &range, ChunkPlace::Flat, sink),
            BlobRef::Tree {
                encoding,
                root_hash,
                total_size,
                depth,
            } => self.node(
                root_hash,
                depth.saturating_sub(1),
                0,
                0,
                *total_size,
                *encoding,
                &range,
                sink,
            ),
        }
    }

    /// Counts the chunk refs under node `hash` (reads and verifies nodes, not chunks). Each
    /// distinct node is read once (`counted` remembers its count), so a tree that lists one
    /// subtree many times costs its distinct nodes, not its logical size.
    fn count_chunks(
        &self,
        hash: &Hash,
        level: u8,
        at_depth: u8,
        counted: &mut HashMap<Hash, u64>,
    ) -> Result<u64, BlobError> {
        if let Some(count) = counted.get(hash) {
            return Ok(*count);
        }
        let (kind, what, id): NodeKindInfo = if level == 0 {
            (RecordKind::LeafNode, "leaf node", leaf_id)
        } else {
            (RecordKind::InternalNode, "internal node", internal_id)
        };
        let bytes = self.read_object(hash, kind, what)?;
        let actual = id(&bytes);
        if actual != *hash {
            return Err(BlobError::ChainMismatch {
                at_depth,
                parent_hash: *hash,
                child_hash: actual,
            });
        }
        let bad = |source| BlobError::BadNode {
            hash: *hash,
            source,
        };
        let count = if level == 0 {
            LeafNode::decode(&bytes).map_err(bad)?.chunks.len() as u64
        } else {
            let node = InternalNode::decode(&bytes).map_err(bad)?;
            node.children.iter().try_fold(0u64, |acc, c| {
                let below = self.count_chunks(
                    &c.hash,
                    level.saturating_sub(1),
                    at_depth.saturating_add(1),
                    counted,
                )?;
                Ok::<u64, BlobError>(acc.saturating_add(below))
            })?
        };
        counted.insert(*hash, count);
        Ok(count)
    }
}

/// Checks chunk bytes against their ref (hash, then size).
fn check_chunk(
    chunk: &ChunkRef,
    index: u64,
    place: ChunkPlace,
    data: Bytes,
) -> Result<Bytes, BlobError> {
    check_chunk_id(chunk, index, place, chunk_id(&data), &[&data])?;
    Ok(data)
}

/// Checks a chunk whose bytes are `parts` and hash to `actual` against its ref (hash, then
/// size).
fn check_chunk_id(
    chunk: &ChunkRef,
    index: u64,
    place: ChunkPlace,
    actual: Hash,
    parts: &[&[u8]],
) -> Result<(), BlobError> {
    if actual != chunk.hash {
        return Err(match place {
            ChunkPlace::Flat => BlobError::ChunkHashMismatch {
                index,
                expected: chunk.hash,
                actual,
            },
            ChunkPlace::InTree { leaf_depth } => BlobError::ChainMismatch {
                at_depth: leaf_depth.saturating_add(1),
                parent_hash: chunk.hash,
                child_hash: actual,
            },
        });
    }
    let len: u64 = parts.iter().map(|part| part.len() as u64).sum();
    if len != u64::from(chunk.size) {
        return Err(BlobError::Corrupted {
            hash: chunk.hash,
            reason: format!("chunk is {len} bytes, its ref says {}", chunk.size),
        });
    }
    Ok(())
}

impl Store {
    /// Reads the record of object `hash` at `loc`, the location an index snapshot gave. When
    /// compaction moved the object and removed that segment after the snapshot was taken
    /// (`UnknownSegment`), the object is looked up again in a fresh snapshot and read there —
    /// again as long as each lookup finds it somewhere new (a later compaction may have moved
    /// it once more); at the same place twice, the segment really is unknown. Not in the fresh
    /// snapshot at all, GC deleted it after the snapshot was taken (its blob was unpinned while
    /// it was read): [`BlobError::RemovedWhileRead`], not damage. Every read of an object the
    /// index places goes through here.
    pub(crate) fn read_record(
        &self,
        hash: &Hash,
        kind: RecordKind,
        what: &'static str,
        mut loc: RecordLoc,
    ) -> Result<Bytes, BlobError> {
        loop {
            match self.segments.read(loc, kind, hash) {
                Err(SegmentError::UnknownSegment(segment)) => {
                    let moved = self
                        .index
                        .reader()?
                        .object(hash)?
                        .ok_or(BlobError::RemovedWhileRead { hash: *hash, what })?;
                    if moved.loc == loc {
                        return Err(SegmentError::UnknownSegment(segment).into());
                    }
                    loc = moved.loc;
                }
                other => return Ok(other?),
            }
        }
    }

    /// The store as an object source over one index snapshot.
    pub(crate) fn source(&self) -> Result<StoreSource<'_>, BlobError> {
        Ok(StoreSource {
            store: self,
            index: self.index.reader()?,
        })
    }

    /// Streams the whole blob into `sink`, verified. Returns the bytes written.
    pub fn fetch(&self, blob_ref: &BlobRef, sink: &mut dyn Write) -> Result<u64, BlobError> {
        self.fetch_range(blob_ref, 0..blob_ref.size(), sink)
    }

    /// Streams bytes `range.start..range.end` of the blob into `sink`, reading only the nodes and
    /// chunks the range touches. Returns the bytes written.
    pub fn fetch_range(
        &self,
        blob_ref: &BlobRef,
        range: Range<u64>,
        sink: &mut dyn Write,
    ) -> Result<u64, BlobError> {
        fetch_range_from(&self.source()?, blob_ref, range, sink)
            .map_err(|e| self.lost_if_pinned(blob_ref, e))
    }

    /// `e`, a failed read of `blob_ref`, as [`BlobError::PinnedButLost`] when it found the
    /// blob absent ([`BlobError::NotInStore`]) yet a channel pins it: damage, not absence.
    pub(crate) fn lost_if_pinned(&self, blob_ref: &BlobRef, e: BlobError) -> BlobError {
        if !matches!(e, BlobError::NotInStore { .. }) {
            return e;
        }
        match self.channel_pinning(blob_ref) {
            Ok(channel) => e.lost_if_pinned(channel),
            Err(lookup) => lookup,
        }
    }

    /// The first channel (by name) that pins `blob_ref`'s blob, if any.
    pub fn channel_pinning(&self, blob_ref: &BlobRef) -> Result<Option<String>, BlobError> {
        Ok(self
            .index
            .reader()?
            .channel_pinning(&crate::index::blob_id(blob_ref))?)
    }

    /// Runs the verified read of `range` of the blob on this store without producing its
    /// bytes, handing `emit` every object the read asked for, in the order it asked, with what
    /// the store gave (bytes, or the error); a data chunk outside an erasure-coded stripe is
    /// handed on only once it verified (a chunk that fails ends the read before it is sent
    /// anywhere), and moved rather than copied. A remote reader that runs [`fetch_range_from`]
    /// over the same sequence asks for the same objects in the same order (the traversal
    /// depends only on the ref, the range and the answers), so a node can stream them to it.
    pub fn read_objects(
        &self,
        blob_ref: &BlobRef,
        range: Range<u64>,
        emit: &mut ObjectAnswer<'_>,
    ) -> Result<u64, BlobError> {
        let recording = Recording {
            inner: self.source()?,
            emit: std::cell::RefCell::new(emit),
        };
        fetch_range_from(&recording, blob_ref, range, &mut std::io::sink())
    }

    /// For a Small or Manifest blob, whose ref lists its chunks, fails with
    /// [`BlobError::NotInStore`] when none of them is in the store; a Tree's root is checked
    /// by reading it.
    pub(crate) fn check_chunks_present(&self, blob_ref: &BlobRef) -> Result<(), BlobError> {
        let index = self.index.reader()?;
        let present = match blob_ref {
            BlobRef::Small { hash, .. } => index.contains(hash)?,
            BlobRef::Manifest { chunks, .. } => {
                let mut any = false;
                for chunk in chunks {
                    if index.contains(&chunk.hash)? {
                        any = true;
                        break;
                    }
                }
                any
            }
            BlobRef::Tree { .. } => true,
        };
        if present {
            Ok(())
        } else {
            Err(BlobError::not_in_store(blob_ref))
        }
    }

    /// Kind, size, depth, chunk count and encoding of a blob (reads its nodes for a Tree);
    /// [`BlobError::NotInStore`] for a blob the store does not hold.
    pub fn stat(&self, blob_ref: &BlobRef) -> Result<BlobStat, BlobError> {
        self.stat_impl(blob_ref)
            .map_err(|e| self.lost_if_pinned(blob_ref, e))
    }

    fn stat_impl(&self, blob_ref: &BlobRef) -> Result<BlobStat, BlobError> {
        let (kind, chunks) = match blob_ref {
            BlobRef::Small { .. } => ("small", 1),
            BlobRef::Manifest { chunks, .. } => ("manifest", chunks.len() as u64),
            BlobRef::Tree {
                root_hash, depth, ..
            } => {
                let source = self.source()?;
                let reader = Reader::new(&source);
                let counted = reader
                    .count_chunks(root_hash, depth.saturating_sub(1), 0, &mut HashMap::new())
                    .map_err(|e| reader.absent_or(blob_ref, e))?;
                ("tree", counted)
            }
        };
        if !matches!(blob_ref, BlobRef::Tree { .. }) {
            self.check_chunks_present(blob_ref)?;
        }
        Ok(BlobStat {
            kind,
            size: blob_ref.size(),
            depth: blob_ref.depth(),
            chunks,
            encoding: blob_ref.encoding(),
        })
    }
}

/// Streams bytes `range.start..range.end` of the blob into `sink`, verified, reading the objects
/// from `source` (only those the range touches). Returns the bytes written.
pub fn fetch_range_from(
    source: &dyn ObjectSource,
    blob_ref: &BlobRef,
    range: Range<u64>,
    sink: &mut dyn Write,
) -> Result<u64, BlobError> {
    let size = blob_ref.size();
    if range.start > range.end || range.end > size {
        return Err(BlobError::InvalidRange {
            start: range.start,
            end: range.end,
            size,
        });
    }
    if range.is_empty() {
        return Ok(0);
    }
    let len = range.end - range.start;
    let reader = Reader::new(source);
    reader
        .blob(blob_ref, range, sink)
        .map_err(|e| reader.absent_or(blob_ref, e))?;
    Ok(len)
}

/// A source that reports every answer of another: a data chunk the read hands back once it
/// verified and used it (moved, not copied), anything else as it is read.
struct Recording<'a, 'e> {
    inner: StoreSource<'a>,
    emit: std::cell::RefCell<&'e mut ObjectAnswer<'e>>,
}

impl Recording<'_, '_> {
    /// Reports one answer; a receiver that stopped taking them stops the read.
    fn report(
        &self,
        hash: &Hash,
        kind: RecordKind,
        answer: Result<Bytes, &BlobError>,
    ) -> Result<(), BlobError> {
        let go_on = match self.emit.try_borrow_mut() {
            Ok(mut emit) => (*emit)(hash, kind, answer),
            Err(_) => false,
        };
        if go_on {
            Ok(())
        } else {
            Err(BlobError::Sink(std::io::Error::new(
                std::io::ErrorKind::Interrupted,
                "the read was stopped by its receiver",
            )))
        }
    }
}

impl ObjectSource for Recording<'_, '_> {
    fn object(
        &self,
        hash: &Hash,
        kind: RecordKind,
        what: &'static str,
    ) -> Result<Bytes, BlobError> {
        let answer = self.inner.object(hash, kind, what);
        let reported = match &answer {
            Ok(bytes) => Ok(bytes.clone()),
            Err(e) => Err(e),
        };
        self.report(hash, kind, reported)?;
        answer
    }

    fn chunk_to_use(&self, hash: &Hash) -> Result<ChunkParts, BlobError> {
        let answer = self.inner.object(hash, RecordKind::Chunk, "chunk");
        if let Err(e) = &answer {
            self.report(hash, RecordKind::Chunk, Err(e))?;
        }
        Ok(vec![answer?])
    }

    /// The store gave the chunk in one part; one given in several would be joined.
    fn chunk_used(&self, hash: &Hash, parts: ChunkParts) -> Result<(), BlobError> {
        self.report(hash, RecordKind::Chunk, Ok(joined(parts)))
    }
}
