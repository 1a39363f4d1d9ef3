//! The write path: bytes → chunks → segment records → one index commit per batch.
//!
//! Memory stays bounded whatever the blob size: the chunker holds at most one max-size chunk,
//! the tree builder one leaf plus one pending list per level, and a batch only the index entries
//! of the last `batch_bytes` written.
//!
//! [`Upload`] is the one write path; [`BlobWriter`] is a plain upload on it, and crates built on
//! the engine run their own [`CommitPolicy`] on it (the staging crate's resumable uploads).
//! Uploads and GC never wait for each other: see `in_flight.rs`.

mod import;
mod open_batch;
mod parity;
mod stream;
mod upload;

pub use import::{ImportError, Importer, Object, Shape, Verified, children_of};
pub use open_batch::OpenBatch;
pub use parity::erasure_put_bytes;
pub use stream::PIPELINE_BLOCKS;
pub use upload::{CommitPolicy, CommitWhenFull, FinishedUpload, Upload};

use std::io::Read;

use crate::codec::{BlobRef, Encoding, Hash};
use crate::erasure::RsParams;
use crate::error::StoreError;
use crate::index::extension::ExtensionOp;
use crate::index::{DEFAULT_CHANNEL, PinName, blob_id, check_channel_name, check_pin_name};
use crate::store::Store;

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

/// A plain upload in progress: `write` any number of times, then `finish`. It holds a shared
/// borrow of the store; many may run at once, beside reads and GC.
#[derive(Debug)]
pub struct BlobWriter<'s> {
    upload: Upload<'s>,
}

impl<'s> BlobWriter<'s> {
    /// Adds the next bytes of the blob.
    pub fn write(&mut self, data: &[u8]) -> Result<(), StoreError> {
        self.upload.write(data, &mut CommitWhenFull)
    }

    /// Adds one already-cut chunk (see `Store::store_stream`).
    fn write_chunk(&mut self, chunk: &[u8]) -> Result<(), StoreError> {
        self.upload.write_chunk(chunk, &mut CommitWhenFull)
    }

    /// Bytes written so far that are already cut into chunks.
    pub fn chunked_bytes(&self) -> u64 {
        self.upload.tree().total_bytes()
    }

    /// Ends the blob, commits everything and pins the blob under `pin_name`. A name longer
    /// than [`MAX_PIN_NAME`](crate::index::MAX_PIN_NAME) bytes is refused before the last
    /// chunks, the nodes or the pin are written (chunks already written are unreferenced and
    /// left to GC); check it with [`check_pin_name`] before the upload to waste nothing.
    pub fn finish(self, pin_name: &str) -> Result<PutOutcome, StoreError> {
        self.finish_in(DEFAULT_CHANNEL, pin_name)
    }

    /// [`BlobWriter::finish`], pinning into `channel`. A bad channel name is refused before
    /// the last chunks are written; a channel the store does not have refuses the last commit
    /// (nothing of it is written; what earlier commits stored is unreferenced and left to GC).
    pub fn finish_in(self, channel: &str, pin_name: &str) -> Result<PutOutcome, StoreError> {
        self.finish_named_in(channel, &PinName::default_name(pin_name))
    }

    /// [`BlobWriter::finish_in`] under `name`: a name the user gave also renames the blob's
    /// pin if `channel` pins it already ([`PinName`]).
    pub fn finish_named_in(self, channel: &str, name: &PinName) -> Result<PutOutcome, StoreError> {
        check_channel_name(channel)?;
        check_pin_name(&name.name)?;
        self.finish_keeping(|batch, blob_ref| batch.pin_named_in(channel, blob_ref, name))
    }

    /// Ends the blob and commits everything, pinning nothing: `hold(blob_ref)` gives the
    /// extension op that keeps the blob's objects instead (a replicated channel's hold until
    /// its pin is applied), committed in the blob's last transaction.
    pub fn finish_held(
        self,
        hold: impl FnOnce(&BlobRef) -> Box<dyn ExtensionOp>,
    ) -> Result<PutOutcome, StoreError> {
        self.finish_keeping(|batch, blob_ref| batch.push_op(hold(blob_ref)))
    }

    /// Ends the blob; `keep` adds what keeps it (a pin, a hold) to the last commit.
    fn finish_keeping(
        self,
        keep: impl FnOnce(&mut OpenBatch<'_>, &BlobRef),
    ) -> Result<PutOutcome, StoreError> {
        let FinishedUpload {
            blob_ref,
            chunks,
            mut batch,
        } = self.upload.finish(&mut CommitWhenFull)?;
        keep(&mut batch, &blob_ref);
        batch.commit()?;
        Ok(PutOutcome {
            blob_id: blob_id(&blob_ref),
            blob_ref,
            chunks,
            new_chunks: batch.new_chunks(),
            new_bytes: batch.new_bytes(),
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
        Ok(BlobWriter {
            upload: Upload::new(self, self.config.chunking, self.config.tree, encoding)?,
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
        self.store_stream_in(DEFAULT_CHANNEL, input, pin_name)
    }

    /// [`Store::store_stream`], pinning into `channel` (a bad name is refused before anything
    /// is written; a channel the store does not have refuses the last commit).
    pub fn store_stream_in(
        &self,
        channel: &str,
        input: impl Read + Send,
        pin_name: &str,
    ) -> Result<PutOutcome, StoreError> {
        self.store_stream_named_in(channel, input, &PinName::default_name(pin_name))
    }

    /// [`Store::store_stream_in`] under `name`: a name the user gave also renames the blob's
    /// pin if `channel` pins it already ([`PinName`]).
    pub fn store_stream_named_in(
        &self,
        channel: &str,
        input: impl Read + Send,
        name: &PinName,
    ) -> Result<PutOutcome, StoreError> {
        check_channel_name(channel)?;
        check_pin_name(&name.name)?;
        stream::stream_into(self.writer()?, self.config.chunking, input, channel, name)
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
        self.store_stream_with_rs_in(DEFAULT_CHANNEL, input, k, n, pin_name)
    }

    /// [`Store::store_stream_with_rs`], pinning into `channel` (as [`Store::store_stream_in`]).
    pub fn store_stream_with_rs_in(
        &self,
        channel: &str,
        input: impl Read + Send,
        k: u8,
        n: u8,
        pin_name: &str,
    ) -> Result<PutOutcome, StoreError> {
        self.store_stream_with_rs_named_in(channel, input, k, n, &PinName::default_name(pin_name))
    }

    /// [`Store::store_stream_with_rs_in`] under `name` (as [`Store::store_stream_named_in`]).
    pub fn store_stream_with_rs_named_in(
        &self,
        channel: &str,
        input: impl Read + Send,
        k: u8,
        n: u8,
        name: &PinName,
    ) -> Result<PutOutcome, StoreError> {
        check_channel_name(channel)?;
        check_pin_name(&name.name)?;
        let encoding = RsParams::for_writing(k, n)?.encoding();
        stream::stream_into(
            self.writer_with(encoding)?,
            self.config.chunking,
            input,
            channel,
            name,
        )
    }
}
