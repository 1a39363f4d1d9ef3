//! The write path: bytes → chunks → segment records → one index commit per batch.
//!
//! Memory stays bounded whatever the blob size: the chunker holds at most one max-size chunk,
//! the tree builder one leaf plus one pending list per level, and a batch only the index entries
//! of the last `batch_bytes` written.

use std::collections::{HashMap, HashSet};
use std::io::Read;

use net_mesh_segments::RecordKind;

use crate::chunking::{BlockCutter, Chunker};
use crate::codec::{
    BlobRef, ChunkRef, ChunkRole, Encoding, Hash, InternalNode, LeafNode, chunk_id,
};
use crate::erasure::RsParams;
use crate::error::StoreError;
use crate::in_flight::LookupState;
use crate::index::{Batch, CommitOutcome, IndexReader, NewObject, Pin, blob_id, check_pin_name};
use crate::parity_pipeline::{MAX_IN_FLIGHT, StripeWriter};
use crate::store::{Store, now_ms};
use crate::tree::{NodeSink, TreeBuilder, TreeError};

/// What a finished upload produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutOutcome {
    pub blob_ref: BlobRef,
    /// Id of the pin taken on the blob.
    pub blob_id: Hash,
    /// Chunks in the blob, counting repeats.
    pub chunks: u64,
    /// Chunks this upload actually stored (the rest were already present).
    pub new_chunks: u64,
    /// Payload bytes of those new chunks.
    pub new_bytes: u64,
}

/// Index-side state of an upload: the open batch, what it already holds, and the objects it
/// relies on that no committed parent counts yet (held in the store's [`InFlight`] so GC keeps
/// them; see `in_flight.rs`).
pub(crate) struct Pending<'s> {
    pub(crate) store: &'s Store,
    pub(crate) batch: Batch,
    /// Objects appended in the open batch (not yet visible through `reader`).
    in_batch: HashSet<Hash>,
    batch_payload: u64,
    reader: IndexReader,
    /// The sweep generation `reader` was taken in.
    reader_generation: u64,
    /// This upload's holds in `store.in_flight`, with multiplicity.
    held: HashMap<Hash, u64>,
    /// Children of the nodes in the open batch: the commit anchors them, so their holds end.
    anchored_by_batch: Vec<Hash>,
    pub(crate) new_chunks: u64,
    pub(crate) new_bytes: u64,
}

impl<'s> Pending<'s> {
    pub(crate) fn new(store: &'s Store) -> Result<Pending<'s>, StoreError> {
        let reader_generation = store.in_flight.generation();
        Ok(Pending {
            store,
            batch: Batch::default(),
            in_batch: HashSet::new(),
            batch_payload: 0,
            reader: store.reader()?,
            reader_generation,
            held: HashMap::new(),
            anchored_by_batch: Vec::new(),
            new_chunks: 0,
            new_bytes: 0,
        })
    }

    /// Whether the open batch holds `batch_bytes` of payload or more.
    pub(crate) fn batch_full(&self) -> bool {
        self.batch_payload >= self.store.config.batch_bytes
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

    /// Appends the object (a chunk, or a node listing `children`) unless the store or this
    /// batch has it. Returns whether it was new. Either way the upload holds it until a
    /// committed parent counts it, and its holds on `children` end: a stored node already
    /// counts them, a new one will once the batch commits (until then they stay held).
    fn put_object(
        &mut self,
        kind: RecordKind,
        id: Hash,
        payload: &[u8],
        children: Vec<Hash>,
    ) -> Result<bool, StoreError> {
        self.hold(id);
        if self.in_batch.contains(&id) || self.indexed(&id)? {
            for child in &children {
                self.release(child);
            }
            return Ok(false);
        }
        let loc = self.store.segments.append(kind, &id, payload)?;
        net_mesh_segments::failpoint::hit("engine.after_segment_append");
        self.anchored_by_batch.extend_from_slice(&children);
        self.batch.new_objects.push(NewObject {
            hash: id,
            kind,
            loc,
            children,
        });
        self.in_batch.insert(id);
        self.batch_payload = self.batch_payload.saturating_add(loc.payload_len.into());
        Ok(true)
    }

    fn put_chunk(&mut self, data: &[u8]) -> Result<ChunkRef, StoreError> {
        self.put_chunk_with_id(chunk_id(data), data)
    }

    /// `put_chunk` for bytes whose `chunk_id` is already known.
    fn put_chunk_with_id(&mut self, hash: Hash, data: &[u8]) -> Result<ChunkRef, StoreError> {
        let size = u32::try_from(data.len()).map_err(|_| StoreError::TooLarge("chunk size"))?;
        if self.put_object(RecordKind::Chunk, hash, data, Vec::new())? {
            self.new_chunks = self.new_chunks.saturating_add(1);
            self.new_bytes = self.new_bytes.saturating_add(data.len() as u64);
        }
        Ok(ChunkRef {
            hash,
            size,
            role: ChunkRole::Data,
        })
    }

    /// Commits the open batch (fdatasync, then one index transaction) and starts a new one.
    pub(crate) fn commit(&mut self) -> Result<CommitOutcome, StoreError> {
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

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        // Records of a batch never committed are given up (dead bytes past nothing).
        self.store.segments.settle(&self.batch.appended_records());
        for (id, n) in self.held.drain() {
            self.store.in_flight.release(&id, n);
        }
    }
}

impl NodeSink for Pending<'_> {
    type Error = StoreError;

    fn put_leaf(&mut self, leaf: &LeafNode) -> Result<Hash, StoreError> {
        let encoded = leaf.encode();
        let id = crate::codec::leaf_id(&encoded);
        let children = leaf.chunks.iter().map(|c| c.hash).collect();
        self.put_object(RecordKind::LeafNode, id, &encoded, children)?;
        Ok(id)
    }

    fn put_internal(&mut self, node: &InternalNode) -> Result<Hash, StoreError> {
        let encoded = node.encode();
        let id = crate::codec::internal_id(&encoded);
        let children = node.children.iter().map(|c| c.hash).collect();
        self.put_object(RecordKind::InternalNode, id, &encoded, children)?;
        Ok(id)
    }
}

pub(crate) fn tree_error(e: TreeError<StoreError>) -> StoreError {
    match e {
        TreeError::Sink(e) => e,
        TreeError::TooDeep => StoreError::TooLarge("tree depth"),
        TreeError::SizeOverflow => StoreError::TooLarge("blob size"),
    }
}

/// Decides, after each chunk has joined the tree, whether the open batch is committed now.
/// Plain uploads commit when the batch is full; resumable uploads also attach a checkpoint.
pub(crate) trait CommitPolicy {
    fn after_chunk(
        &mut self,
        tree: &TreeBuilder,
        pending: &mut Pending<'_>,
    ) -> Result<(), StoreError>;
}

/// Plain uploads: commit whenever the batch holds `batch_bytes` of payload.
struct CommitWhenFull;

impl CommitPolicy for CommitWhenFull {
    fn after_chunk(
        &mut self,
        _: &TreeBuilder,
        pending: &mut Pending<'_>,
    ) -> Result<(), StoreError> {
        if pending.batch_full() {
            pending.commit()?;
        }
        Ok(())
    }
}

/// The one write path shared by plain and resumable uploads: chunker → dedup + segment append
/// → tree builder (through the stripe accumulator for erasure-coded blobs), with the commit
/// decision left to a [`CommitPolicy`].
pub(crate) struct WritePath<'s> {
    pub(crate) chunker: Chunker,
    pub(crate) tree: TreeBuilder,
    pub(crate) pending: Pending<'s>,
    /// Erasure coding: the stripes being filled and encoded (`None` for Plain blobs).
    pub(crate) stripes: Option<StripeWriter>,
}

impl<'s> WritePath<'s> {
    /// Adds the next bytes of the blob.
    pub(crate) fn write(
        &mut self,
        data: &[u8],
        policy: &mut impl CommitPolicy,
    ) -> Result<(), StoreError> {
        let Self {
            chunker,
            tree,
            pending,
            stripes,
        } = self;
        chunker.push(data, |chunk| {
            let chunk_ref = pending.put_chunk(chunk)?;
            push_chunk(tree, pending, stripes, chunk_ref, chunk)?;
            policy.after_chunk(tree, pending)
        })
    }

    /// Adds one already-cut chunk (the caller cut it with the store's strategy).
    pub(crate) fn write_chunk(
        &mut self,
        chunk: &[u8],
        policy: &mut impl CommitPolicy,
    ) -> Result<(), StoreError> {
        let chunk_ref = self.pending.put_chunk(chunk)?;
        push_chunk(
            &mut self.tree,
            &mut self.pending,
            &mut self.stripes,
            chunk_ref,
            chunk,
        )?;
        policy.after_chunk(&self.tree, &mut self.pending)
    }

    /// Cuts the last chunks and emits the remaining nodes. Returns the blob's ref, its chunk
    /// count and the pending batch, which the caller completes (pin, checkpoint) and commits.
    pub(crate) fn finish_tree(
        self,
        policy: &mut impl CommitPolicy,
    ) -> Result<(BlobRef, u64, Pending<'s>), StoreError> {
        let Self {
            chunker,
            mut tree,
            mut pending,
            mut stripes,
        } = self;
        chunker.finish(|chunk| {
            let chunk_ref = pending.put_chunk(chunk)?;
            push_chunk(&mut tree, &mut pending, &mut stripes, chunk_ref, chunk)?;
            policy.after_chunk(&tree, &mut pending)
        })?;
        if let Some(sw) = stripes.as_mut() {
            sw.submit()?;
            emit_stripes(&mut tree, &mut pending, sw, 0)?;
        }
        // An empty erasure-coded blob has nothing to protect: it is the empty Small blob.
        let empty_rs = stripes.is_some() && tree.chunk_count() == 0;
        if tree.chunk_count() == 0 {
            let chunk_ref = pending.put_chunk(&[])?;
            if !empty_rs {
                tree.push(chunk_ref, &mut pending).map_err(tree_error)?;
            }
        }
        let chunks = tree.chunk_count().max(u64::from(empty_rs));
        let blob_ref = if empty_rs {
            BlobRef::Small {
                hash: chunk_id(&[]),
                size: 0,
            }
        } else {
            tree.finish(&mut pending).map_err(tree_error)?
        };
        Ok((blob_ref, chunks, pending))
    }
}

/// An upload in progress: `write` any number of times, then `finish`.
pub struct BlobWriter<'s> {
    path: WritePath<'s>,
}

impl std::fmt::Debug for BlobWriter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobWriter")
            .field("bytes", &self.path.tree.total_bytes())
            .field("chunks", &self.path.tree.chunk_count())
            .finish()
    }
}

impl<'s> BlobWriter<'s> {
    /// Adds the next bytes of the blob.
    pub fn write(&mut self, data: &[u8]) -> Result<(), StoreError> {
        self.path.write(data, &mut CommitWhenFull)
    }

    /// Adds one already-cut chunk (see `Store::store_stream`).
    fn write_chunk(&mut self, chunk: &[u8]) -> Result<(), StoreError> {
        self.path.write_chunk(chunk, &mut CommitWhenFull)
    }

    /// Bytes written so far that are already cut into chunks.
    pub fn chunked_bytes(&self) -> u64 {
        self.path.tree.total_bytes()
    }

    /// Ends the blob, commits everything and pins the blob under `pin_name`. A name longer
    /// than [`MAX_PIN_NAME`](crate::index::MAX_PIN_NAME) bytes is refused before the last
    /// chunks, the nodes or the pin are written (chunks already written are unreferenced and
    /// left to GC); check it with [`check_pin_name`] before the upload to waste nothing.
    pub fn finish(self, pin_name: &str) -> Result<PutOutcome, StoreError> {
        check_pin_name(pin_name)?;
        let (blob_ref, chunks, mut pending) = self.path.finish_tree(&mut CommitWhenFull)?;
        pending.batch.pins_add.push(Pin {
            blob_ref: blob_ref.clone(),
            name: pin_name.to_string(),
            created_unix_ms: now_ms(),
        });
        pending.commit()?;
        Ok(PutOutcome {
            blob_id: blob_id(&blob_ref),
            blob_ref,
            chunks,
            new_chunks: pending.new_chunks,
            new_bytes: pending.new_bytes,
        })
    }
}

impl Store {
    /// Starts an upload with the store's chunking and tree policy.
    pub fn writer(&self) -> Result<BlobWriter<'_>, StoreError> {
        self.writer_with(Encoding::Plain)
    }

    /// Starts an upload with the store's chunking and tree policy and `encoding`
    /// (`Encoding::ReedSolomon` adds parity chunks per stripe; docs/FORMAT.md §2.12).
    pub fn writer_with(&self, encoding: Encoding) -> Result<BlobWriter<'_>, StoreError> {
        self.check_writable()?;
        let stripes = RsParams::from_encoding(encoding)?
            .map(RsParams::writable)
            .transpose()?
            .map(StripeWriter::new)
            .transpose()?;
        Ok(BlobWriter {
            path: WritePath {
                chunker: Chunker::new(self.config.chunking)?,
                tree: TreeBuilder::new(self.config.tree, encoding)?,
                pending: Pending::new(self)?,
                stripes,
            },
        })
    }

    /// Stores `bytes` as one blob and pins it (unnamed).
    pub fn store(&self, bytes: &[u8]) -> Result<PutOutcome, StoreError> {
        let mut writer = self.writer()?;
        writer.write(bytes)?;
        writer.finish("")
    }

    /// Stores everything `input` yields as one blob, in bounded memory, and pins it under
    /// `pin_name` (refused before anything is written when longer than
    /// [`MAX_PIN_NAME`](crate::index::MAX_PIN_NAME) bytes).
    ///
    /// Two threads share the work: one reads and cuts blocks of input, the caller's thread
    /// hashes, deduplicates, appends and builds the tree. [`PIPELINE_BLOCKS`] block buffers
    /// circulate between them, so memory stays bounded.
    pub fn store_stream(
        &self,
        input: impl Read + Send,
        pin_name: &str,
    ) -> Result<PutOutcome, StoreError> {
        check_pin_name(pin_name)?;
        stream_into(self.writer()?, self.config.chunking, input, pin_name)
    }

    /// Like [`Store::store_stream`], erasure-coded: every stripe of `k` data chunks gets
    /// `n - k` parity chunks (docs/FORMAT.md §2.12).
    pub fn store_stream_with_rs(
        &self,
        input: impl Read + Send,
        k: u8,
        n: u8,
        pin_name: &str,
    ) -> Result<PutOutcome, StoreError> {
        check_pin_name(pin_name)?;
        let encoding = RsParams::for_writing(k, n)?.encoding();
        stream_into(
            self.writer_with(encoding)?,
            self.config.chunking,
            input,
            pin_name,
        )
    }
}

/// Feeds everything `input` yields to `writer` and finishes it. Two threads share the work: one
/// reads and cuts blocks of input, the caller's thread hashes, deduplicates, appends and builds
/// the tree, reading each chunk straight out of its block. [`PIPELINE_BLOCKS`] block buffers
/// circulate between them, so memory stays bounded and no chunk is copied on the way.
fn stream_into(
    mut writer: BlobWriter<'_>,
    chunking: crate::chunking::ChunkingStrategy,
    input: impl Read + Send,
    pin_name: &str,
) -> Result<PutOutcome, StoreError> {
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<CutBlock>(PIPELINE_BLOCKS);
        // Emptied blocks go back to the cutter, which allocates at most PIPELINE_BLOCKS.
        let (recycle_tx, recycle_rx) = std::sync::mpsc::channel::<Vec<u8>>();
        let cutter = scope.spawn(move || cut_stream(input, chunking, &tx, &recycle_rx));
        for cut in &rx {
            let mut start = 0;
            for &end in &cut.ends {
                writer.write_chunk(cut.block.get(start..end).unwrap_or_default())?;
                start = end;
            }
            let _ = recycle_tx.send(cut.block);
        }
        match cutter.join() {
            Ok(result) => result?,
            Err(panic) => std::panic::resume_unwind(panic),
        }
        writer.finish(pin_name)
    })
}

/// Block buffers of `store_stream`: one being read and cut, the others waiting to be stored.
pub const PIPELINE_BLOCKS: usize = 2;

/// A block of input and the ends of the chunks cut from it (the first starts at 0).
struct CutBlock {
    block: Vec<u8>,
    ends: Vec<usize>,
}

/// Reads `input` to its end and sends its blocks, cut, in order. Stops quietly when the
/// receiver is gone (the storing side failed and reports its own error).
fn cut_stream(
    mut input: impl Read,
    chunking: crate::chunking::ChunkingStrategy,
    tx: &std::sync::mpsc::SyncSender<CutBlock>,
    recycled: &std::sync::mpsc::Receiver<Vec<u8>>,
) -> Result<(), StoreError> {
    let cutter = BlockCutter::new(chunking)?;
    // A block holds the bytes carried over from the previous one (less than a chunk can grow
    // to) plus fresh input; it is cut on two threads.
    let block_len = CUT_BLOCK.max(cutter.max_chunk().saturating_mul(4));
    let mut allocated = 1;
    let mut block = vec![0u8; block_len];
    let mut filled = 0;
    loop {
        let eof = fill(&mut input, &mut block, &mut filled)?;
        let ends = cutter.cut_block(block.get(..filled).unwrap_or_default(), eof);
        if eof {
            if !ends.is_empty() {
                let _ = tx.send(CutBlock { block, ends });
            }
            return Ok(());
        }
        // Not the end, so the block is full; holding at least four maximum chunks, it always
        // has a chunk whose end is certain. The bytes after the last one start the next block.
        let mut next = if allocated < PIPELINE_BLOCKS {
            allocated += 1;
            vec![0u8; block_len]
        } else {
            match recycled.recv() {
                Ok(next) => next,
                // The storing side is gone; it reports its own error.
                Err(_) => return Ok(()),
            }
        };
        let carry = block
            .get(ends.last().copied().unwrap_or(0)..filled)
            .unwrap_or_default();
        if let Some(head) = next.get_mut(..carry.len()) {
            head.copy_from_slice(carry);
        }
        filled = carry.len();
        if tx.send(CutBlock { block, ends }).is_err() {
            return Ok(());
        }
        block = next;
    }
}

/// Bytes of input cut per block by `store_stream`'s cutter (two threads per block).
const CUT_BLOCK: usize = 16 * 1024 * 1024;

/// Reads into `block[*filled..]` until it is full or the input ends. Returns whether it ended.
fn fill(input: &mut impl Read, block: &mut [u8], filled: &mut usize) -> Result<bool, StoreError> {
    loop {
        let Some(space) = block.get_mut(*filled..).filter(|s| !s.is_empty()) else {
            return Ok(false);
        };
        match input.read(space) {
            Ok(0) => return Ok(true),
            Ok(n) => *filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(StoreError::Input(e)),
        }
    }
}

// --- erasure coding hook (issue 4): the one write path, with a stripe accumulator ---------

/// Hands a stored data chunk to the tree, or to the stripe being filled for RS blobs.
fn push_chunk(
    tree: &mut TreeBuilder,
    pending: &mut Pending<'_>,
    stripes: &mut Option<StripeWriter>,
    chunk_ref: ChunkRef,
    bytes: &[u8],
) -> Result<(), StoreError> {
    match stripes {
        None => tree.push(chunk_ref, pending).map_err(tree_error),
        Some(sw) => {
            if sw.push(chunk_ref, bytes) {
                sw.submit()?;
                emit_stripes(tree, pending, sw, MAX_IN_FLIGHT)?;
            }
            Ok(())
        }
    }
}

/// Takes back encoded stripes (oldest first) until at most `keep` are in flight: stores each
/// one's parity chunks (after its data chunks) and hands the whole stripe (data refs, then
/// parity refs) to the tree builder.
fn emit_stripes(
    tree: &mut TreeBuilder,
    pending: &mut Pending<'_>,
    sw: &mut StripeWriter,
    keep: usize,
) -> Result<(), StoreError> {
    while let Some(stripe) = sw.next_done(keep)? {
        let mut refs = stripe.data;
        for (parity, id) in stripe.parity.iter().zip(&stripe.parity_ids) {
            let stored = pending.put_chunk_with_id(*id, parity)?;
            refs.push(crate::erasure::parity_ref(
                stored.hash,
                stored.size,
                stripe.stripe_index,
            ));
        }
        tree.push_stripe(&refs, pending).map_err(tree_error)?;
        sw.recycle(stripe.parity);
        sw.recycle(stripe.data_bytes);
    }
    Ok(())
}
