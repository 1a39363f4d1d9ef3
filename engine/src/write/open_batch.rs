//! [`OpenBatch`]: an upload's batch between two commits, and the holds that keep what it relies
//! on safe from GC (see `in_flight.rs`).

use std::collections::HashMap;
use std::fmt;

use net_mesh_segments::RecordKind;

use crate::codec::{
    BlobRef, ChunkRef, ChunkRole, Hash, InternalNode, LeafNode, chunk_id, chunk_id_parts,
};
use crate::error::StoreError;
use crate::in_flight::LookupState;
use crate::index::extension::ExtensionOp;
use crate::index::{Batch, CommitOutcome, DEFAULT_CHANNEL, IndexReader, NewObject, Pin, PinName};
use crate::store::{Store, now_ms};
use crate::tree::NodeSink;

impl fmt::Debug for OpenBatch<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenBatch")
            .field("objects", &self.batch.new_objects.len())
            .field("payload", &self.batch_payload)
            .field("held", &self.held.len())
            .finish()
    }
}

/// The index side of an upload: the batch not yet committed, what it already holds, and the
/// objects the upload relies on that no committed parent counts yet (held in the store's
/// in-flight set so GC keeps them; see `in_flight.rs`). A [`CommitPolicy`](super::CommitPolicy)
/// decides when it commits and may attach extension ops and a pin first.
pub struct OpenBatch<'s> {
    store: &'s Store,
    batch: Batch,
    /// Objects appended in the open batch (not yet visible through `reader`), with their kind.
    in_batch: HashMap<Hash, RecordKind>,
    batch_payload: u64,
    reader: IndexReader,
    /// The sweep generation `reader` was taken in.
    reader_generation: u64,
    /// This upload's holds in `store.in_flight`, with multiplicity.
    held: HashMap<Hash, u64>,
    /// Children of the nodes in the open batch: the commit anchors them, so their holds end.
    anchored_by_batch: Vec<Hash>,
    new_chunks: u64,
    new_bytes: u64,
}

impl<'s> OpenBatch<'s> {
    pub(crate) fn new(store: &'s Store) -> Result<OpenBatch<'s>, StoreError> {
        let reader_generation = store.in_flight.generation();
        Ok(OpenBatch {
            store,
            batch: Batch::default(),
            in_batch: HashMap::new(),
            batch_payload: 0,
            reader: store.reader()?,
            reader_generation,
            held: HashMap::new(),
            anchored_by_batch: Vec::new(),
            new_chunks: 0,
            new_bytes: 0,
        })
    }

    /// The store the batch commits to.
    pub fn store(&self) -> &'s Store {
        self.store
    }

    /// Whether the batch holds the store's `batch_bytes` of payload or more.
    pub fn is_full(&self) -> bool {
        self.batch_payload >= self.store.config.batch_bytes
    }

    /// Chunks this upload stored so far (the rest were already present).
    pub fn new_chunks(&self) -> u64 {
        self.new_chunks
    }

    /// Payload bytes of those chunks.
    pub fn new_bytes(&self) -> u64 {
        self.new_bytes
    }

    /// Adds an extension's change to the batch (applied in its commit's transaction).
    pub fn push_op(&mut self, op: Box<dyn ExtensionOp>) {
        self.batch.extension_ops.push(op);
    }

    /// Pins `blob_ref` under `name` in channel `default` when the batch commits
    /// ([`OpenBatch::pin_in`]).
    pub fn pin(&mut self, blob_ref: &BlobRef, name: &str) {
        self.pin_in(DEFAULT_CHANNEL, blob_ref, name);
    }

    /// Pins `blob_ref` under `name` in `channel` when the batch commits (a no-op if it is
    /// pinned there already). The name must pass
    /// [`check_pin_name`](crate::index::check_pin_name) and the channel
    /// [`check_channel_name`](crate::index::check_channel_name); a channel the store does not
    /// have refuses the whole commit ([`StoreError::NoSuchChannel`]).
    pub fn pin_in(&mut self, channel: &str, blob_ref: &BlobRef, name: &str) {
        self.batch.pins_add.push(Pin {
            channel: channel.to_string(),
            blob_ref: blob_ref.clone(),
            name: name.to_string(),
            created_unix_ms: now_ms(),
        });
    }

    /// [`OpenBatch::pin_in`] under `name`; a name the user gave also renames the blob's pin
    /// if `channel` pins it already ([`PinName`]).
    pub fn pin_named_in(&mut self, channel: &str, blob_ref: &BlobRef, name: &PinName) {
        self.pin_in(channel, blob_ref, &name.name);
        if name.given {
            self.batch.pins_rename.push(Pin {
                channel: channel.to_string(),
                blob_ref: blob_ref.clone(),
                name: name.name.clone(),
                created_unix_ms: now_ms(),
            });
        }
    }

    fn hold(&mut self, id: Hash) {
        self.store.in_flight.hold(id);
        let n = self.held.entry(id).or_insert(0);
        *n = n.saturating_add(1);
    }

    fn release(&mut self, id: &Hash) {
        if let Some(n) = self.held.get_mut(id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.held.remove(id);
            }
            self.store.in_flight.release(id, 1);
        }
    }

    /// Whether the index already has `id`, looked up so that GC cannot delete it after we
    /// relied on it: the caller holds `id` first (see `in_flight.rs`).
    fn indexed(&mut self, id: &Hash) -> Result<bool, StoreError> {
        match self.store.in_flight.lookup_state(self.reader_generation) {
            LookupState::Current => {}
            LookupState::Stale(generation) => {
                self.reader = self.store.reader()?;
                self.reader_generation = generation;
            }
            LookupState::Sweeping => return Ok(false),
        }
        Ok(self.reader.contains(id)?)
    }

    /// Whether the store or this batch has `id`; if so the upload holds it (like an object it
    /// put) until a committed parent counts it. Unlike a put's dedup check, the answer must be
    /// exact, so while a GC delete transaction runs this waits for it to end (GC never waits
    /// for uploads; this waits at most one GC transaction).
    pub(crate) fn hold_if_present(&mut self, id: Hash) -> Result<bool, StoreError> {
        Ok(self.hold_present(id)?.is_some())
    }

    /// [`OpenBatch::hold_if_present`] that also says what the object is: its kind, `None`
    /// when neither the store nor this batch has it (then it is not held).
    pub(crate) fn hold_present(&mut self, id: Hash) -> Result<Option<RecordKind>, StoreError> {
        self.hold(id);
        if let Some(kind) = self.in_batch.get(&id) {
            return Ok(Some(*kind));
        }
        // What this upload holds outside the open batch is indexed (it found it there, or
        // committed it, and `reader` is never older than that).
        let entry = loop {
            match self.store.in_flight.lookup_state(self.reader_generation) {
                LookupState::Current => break self.reader.object(&id)?,
                LookupState::Stale(generation) => {
                    self.reader = self.store.reader()?;
                    self.reader_generation = generation;
                    break self.reader.object(&id)?;
                }
                LookupState::Sweeping => std::thread::sleep(std::time::Duration::from_millis(1)),
            }
        };
        if entry.is_none() {
            self.release(&id);
        }
        Ok(entry.map(|e| e.kind))
    }

    /// Appends the object (a chunk, or a node listing `children`) unless the store or this
    /// batch has it. Returns whether it was new. Either way the upload holds it until a
    /// committed parent counts it, and its holds on `children` end: a stored node already
    /// counts them, a new one will once the batch commits (until then they stay held).
    pub(crate) fn put_object(
        &mut self,
        kind: RecordKind,
        id: Hash,
        payload: &[&[u8]],
        children: Vec<Hash>,
    ) -> Result<bool, StoreError> {
        self.hold(id);
        if self.in_batch.contains_key(&id) || self.indexed(&id)? {
            for child in &children {
                self.release(child);
            }
            return Ok(false);
        }
        let loc = self.store.segments.append_parts(kind, &id, payload)?;
        net_mesh_segments::failpoint::hit("engine.after_segment_append");
        self.anchored_by_batch.extend_from_slice(&children);
        self.batch.new_objects.push(NewObject {
            hash: id,
            kind,
            loc,
            children,
        });
        self.in_batch.insert(id, kind);
        self.batch_payload = self.batch_payload.saturating_add(loc.payload_len.into());
        Ok(true)
    }

    pub(super) fn put_chunk(&mut self, data: &[u8]) -> Result<ChunkRef, StoreError> {
        self.put_chunk_with_id(chunk_id(data), &[data])
    }

    /// `put_chunk` of a chunk that is `parts` one after another (each read where it lies).
    pub(super) fn put_chunk_parts(&mut self, parts: &[&[u8]]) -> Result<ChunkRef, StoreError> {
        self.put_chunk_with_id(chunk_id_parts(parts), parts)
    }

    /// `put_chunk_parts` for bytes whose `chunk_id` is already known.
    pub(super) fn put_chunk_with_id(
        &mut self,
        hash: Hash,
        parts: &[&[u8]],
    ) -> Result<ChunkRef, StoreError> {
        let len = parts
            .iter()
            .fold(0usize, |sum, part| sum.saturating_add(part.len()));
        let size = u32::try_from(len).map_err(|_| StoreError::TooLarge("chunk size"))?;
        if self.put_object(RecordKind::Chunk, hash, parts, Vec::new())? {
            self.new_chunks = self.new_chunks.saturating_add(1);
            self.new_bytes = self.new_bytes.saturating_add(u64::from(size));
        }
        Ok(ChunkRef {
            hash,
            size,
            role: ChunkRole::Data,
        })
    }

    /// Commits the batch (fdatasync, then one index transaction) and starts a new one. A
    /// refusal (an extension op refusing, a pin of missing objects) leaves the store usable;
    /// the upload itself should then be given up.
    pub fn commit(&mut self) -> Result<CommitOutcome, StoreError> {
        let batch = std::mem::take(&mut self.batch);
        self.in_batch.clear();
        self.batch_payload = 0;
        let anchored = std::mem::take(&mut self.anchored_by_batch);
        let outcome = self.store.commit_batch(batch)?;
        for child in &anchored {
            self.release(child);
        }
        self.reader_generation = self.store.in_flight.generation();
        self.reader = self.store.reader()?;
        Ok(outcome)
    }
}

impl Drop for OpenBatch<'_> {
    fn drop(&mut self) {
        // Records of a batch never committed are given up (dead bytes past nothing).
        self.store.segments.settle(&self.batch.appended_records());
        for (id, n) in self.held.drain() {
            self.store.in_flight.release(&id, n);
        }
    }
}

impl NodeSink for OpenBatch<'_> {
    type Error = StoreError;

    fn put_leaf(&mut self, leaf: &LeafNode) -> Result<Hash, StoreError> {
        let encoded = leaf.encode();
        let id = crate::codec::leaf_id(&encoded);
        let children = leaf.chunks.iter().map(|c| c.hash).collect();
        self.put_object(RecordKind::LeafNode, id, &[&encoded], children)?;
        Ok(id)
    }

    fn put_internal(&mut self, node: &InternalNode) -> Result<Hash, StoreError> {
        let encoded = node.encode();
        let id = crate::codec::internal_id(&encoded);
        let children = node.children.iter().map(|c| c.hash).collect();
        self.put_object(RecordKind::InternalNode, id, &[&encoded], children)?;
        Ok(id)
    }
}
