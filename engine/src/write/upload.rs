//! [`Upload`]: the one write path every upload runs — chunker → dedup + segment append → tree
//! builder (through the stripe accumulator for erasure-coded blobs) — with the commit decision
//! left to a [`CommitPolicy`]. Plain uploads ([`crate::BlobWriter`]) commit when a batch is full;
//! resumable uploads (the staging crate) also attach a checkpoint to each commit.

use super::open_batch::OpenBatch;
use crate::chunking::{Chunker, ChunkingStrategy};
use crate::codec::{BlobRef, ChunkRef, Encoding, chunk_id};
use crate::erasure::RsParams;
use crate::error::StoreError;
use crate::store::Store;
use crate::tree::{TreeBuilder, TreeError, TreePolicy, TreeState};
use crate::write::parity::{MAX_IN_FLIGHT, StripeWriter};

/// Decides, after each chunk has joined the tree, whether the open batch is committed now.
pub trait CommitPolicy {
    /// What the policy's own failures are (it may refuse, e.g. a checkpoint conflict).
    type Error: From<StoreError>;

    fn after_chunk(
        &mut self,
        tree: &TreeBuilder,
        batch: &mut OpenBatch<'_>,
    ) -> Result<(), Self::Error>;
}

/// Commits whenever the batch holds `batch_bytes` of payload.
#[derive(Debug, Clone, Copy, Default)]
pub struct CommitWhenFull;

impl CommitPolicy for CommitWhenFull {
    type Error = StoreError;

    fn after_chunk(
        &mut self,
        _: &TreeBuilder,
        batch: &mut OpenBatch<'_>,
    ) -> Result<(), StoreError> {
        if batch.is_full() {
            batch.commit()?;
        }
        Ok(())
    }
}

pub(crate) fn tree_error(e: TreeError<StoreError>) -> StoreError {
    match e {
        TreeError::Sink(e) => e,
        TreeError::TooDeep => StoreError::TooLarge("tree depth"),
        TreeError::SizeOverflow => StoreError::TooLarge("blob size"),
    }
}

/// An upload in progress on the store's one write path.
pub struct Upload<'s> {
    chunker: Chunker,
    tree: TreeBuilder,
    batch: OpenBatch<'s>,
    /// Erasure coding: the stripes being filled and encoded (`None` for Plain blobs).
    stripes: Option<StripeWriter>,
}

impl std::fmt::Debug for Upload<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload")
            .field("bytes", &self.tree.total_bytes())
            .field("chunks", &self.tree.chunk_count())
            .field("batch", &self.batch)
            .finish()
    }
}

/// What [`Upload::finish`] built: the blob, its chunk count, and the batch holding its last
/// objects, which the caller completes (a pin, extension ops) and commits.
#[derive(Debug)]
pub struct FinishedUpload<'s> {
    pub blob_ref: BlobRef,
    pub chunks: u64,
    pub batch: OpenBatch<'s>,
}

impl<'s> Upload<'s> {
    /// Starts an upload of a new blob.
    pub fn new(
        store: &'s Store,
        chunking: ChunkingStrategy,
        tree: TreePolicy,
        encoding: Encoding,
    ) -> Result<Upload<'s>, StoreError> {
        store.check_writable()?;
        let stripes = RsParams::from_encoding(encoding)?
            .map(RsParams::writable)
            .transpose()?
            .map(StripeWriter::new)
            .transpose()?;
        Ok(Upload {
            chunker: Chunker::new(chunking)?,
            tree: TreeBuilder::new(tree, encoding)?,
            batch: OpenBatch::new(store)?,
            stripes,
        })
    }

    /// Continues a plain upload from a tree state exported earlier
    /// ([`TreeBuilder::export_state`]); chunking restarts at the state's last chunk boundary.
    pub fn resume(
        store: &'s Store,
        chunking: ChunkingStrategy,
        state: TreeState,
    ) -> Result<Upload<'s>, StoreError> {
        store.check_writable()?;
        Ok(Upload {
            chunker: Chunker::new(chunking)?,
            tree: TreeBuilder::from_state(state)?,
            batch: OpenBatch::new(store)?,
            stripes: None,
        })
    }

    /// The store the upload writes to.
    pub fn store(&self) -> &'s Store {
        self.batch.store()
    }

    /// The tree built so far.
    pub fn tree(&self) -> &TreeBuilder {
        &self.tree
    }

    /// The batch not yet committed (to commit it now, e.g. a checkpoint on request).
    pub fn batch(&mut self) -> &mut OpenBatch<'s> {
        &mut self.batch
    }

    /// The tree and the batch at once (a policy committing outside `write`).
    pub fn parts(&mut self) -> (&TreeBuilder, &mut OpenBatch<'s>) {
        (&self.tree, &mut self.batch)
    }

    /// Adds the next bytes of the blob.
    pub fn write<P: CommitPolicy>(&mut self, data: &[u8], policy: &mut P) -> Result<(), P::Error> {
        let Self {
            chunker,
            tree,
            batch,
            stripes,
        } = self;
        chunker.push(data, |chunk| {
            let chunk_ref = batch.put_chunk(chunk)?;
            push_chunk(tree, batch, stripes, chunk_ref, chunk)?;
            policy.after_chunk(tree, batch)
        })
    }

    /// Bytes given to [`Upload::write`] that its chunker has not cut into a chunk yet.
    pub fn unchunked_bytes(&self) -> usize {
        self.chunker.pending()
    }

    /// Adds one already-cut chunk: the caller cut the input with this upload's strategy, on
    /// its own (e.g. on another thread), and gave no bytes to [`Upload::write`] that are still
    /// uncut ([`Upload::unchunked_bytes`] is 0).
    pub fn write_chunk<P: CommitPolicy>(
        &mut self,
        chunk: &[u8],
        policy: &mut P,
    ) -> Result<(), P::Error> {
        self.write_chunk_parts(&[chunk], policy)
    }

    /// [`Upload::write_chunk`] of a chunk that is `parts` one after another: hashed and
    /// written where the parts lie (an erasure-coded blob's stripe takes a joined copy).
    pub fn write_chunk_parts<P: CommitPolicy>(
        &mut self,
        parts: &[&[u8]],
        policy: &mut P,
    ) -> Result<(), P::Error> {
        let chunk_ref = self.batch.put_chunk_parts(parts)?;
        let joined;
        let bytes: &[u8] = match parts {
            [one] => one,
            _ if self.stripes.is_none() => &[],
            _ => {
                joined = parts.concat();
                &joined
            }
        };
        push_chunk(
            &mut self.tree,
            &mut self.batch,
            &mut self.stripes,
            chunk_ref,
            bytes,
        )?;
        policy.after_chunk(&self.tree, &mut self.batch)
    }

    /// Cuts the last chunks and emits the remaining nodes.
    pub fn finish<P: CommitPolicy>(self, policy: &mut P) -> Result<FinishedUpload<'s>, P::Error> {
        let Self {
            chunker,
            mut tree,
            mut batch,
            mut stripes,
        } = self;
        chunker.finish(|chunk| {
            let chunk_ref = batch.put_chunk(chunk)?;
            push_chunk(&mut tree, &mut batch, &mut stripes, chunk_ref, chunk)?;
            policy.after_chunk(&tree, &mut batch)
        })?;
        if let Some(sw) = stripes.as_mut() {
            sw.submit().map_err(StoreError::from)?;
            emit_stripes(&mut tree, &mut batch, sw, 0)?;
        }
        // An empty erasure-coded blob has nothing to protect: it is the empty Small blob.
        let empty_rs = stripes.is_some() && tree.chunk_count() == 0;
        if tree.chunk_count() == 0 {
            let chunk_ref = batch.put_chunk(&[])?;
            if !empty_rs {
                tree.push(chunk_ref, &mut batch).map_err(tree_error)?;
            }
        }
        let chunks = tree.chunk_count().max(u64::from(empty_rs));
        let blob_ref = if empty_rs {
            BlobRef::Small {
                hash: chunk_id(&[]),
                size: 0,
            }
        } else {
            tree.finish(&mut batch).map_err(tree_error)?
        };
        Ok(FinishedUpload {
            blob_ref,
            chunks,
            batch,
        })
    }
}

/// Hands a stored data chunk to the tree, or to the stripe being filled for RS blobs.
fn push_chunk(
    tree: &mut TreeBuilder,
    pending: &mut OpenBatch<'_>,
    stripes: &mut Option<StripeWriter>,
    chunk_ref: ChunkRef,
    bytes: &[u8],
) -> Result<(), StoreError> {
    match stripes {
        None => tree.push(chunk_ref, pending).map_err(tree_error),
        Some(sw) => {
            if sw.push(chunk_ref, bytes)? {
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
    pending: &mut OpenBatch<'_>,
    sw: &mut StripeWriter,
    keep: usize,
) -> Result<(), StoreError> {
    while let Some(stripe) = sw.next_done(keep)? {
        let mut refs = stripe.data;
        for (parity, id) in stripe.parity.iter().zip(&stripe.parity_ids) {
            let stored = pending.put_chunk_with_id(*id, &[parity])?;
            refs.push(crate::erasure::parity_ref(
                stored.hash,
                stored.size,
                stripe.stripe_index,
            ));
        }
        tree.push_stripe(&refs, pending).map_err(tree_error)?;
        sw.recycle(stripe.parity);
    }
    Ok(())
}
