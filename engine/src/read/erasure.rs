//! The read path of erasure-coded chunk lists: whole and range reads that tolerate up
//! to n − k missing or corrupt chunks per stripe.
//!
//! A range read touching a stripe reads only the data chunks it needs, one at a time (each
//! verified, written and dropped: a read holds one chunk, not a stripe); when one of them is
//! missing or fails its hash (an erasure), it reads the stripe's other shards — data chunks
//! first, then parity — until it holds as many verified shards as the stripe has data chunks,
//! rebuilds the lost data chunks, checks each against its hash, and writes the rest of the
//! range from them. Stripes never straddle leaves (`TreeBuilder::push_stripe`), so every shard
//! of a stripe is in the chunk list at hand.

use std::io::Write;
use std::ops::Range;

use crate::codec::{ChunkRef, Encoding};
use crate::erasure::{RsParams, StripeCodec, StripeSpan, stripes};
use crate::error::BlobError;
use crate::read::{ChunkPlace, Reader};

/// Whether a failed chunk read counts as an erasure (the chunk is lost; parity may rebuild it)
/// rather than a failure of the read itself (index database error, output error).
pub(crate) fn is_erasure(e: &BlobError) -> bool {
    e.is_integrity() || matches!(e, BlobError::Segments(_))
}

/// Total data bytes of a stripe's data refs.
fn stripe_bytes(refs: &[ChunkRef]) -> u64 {
    refs.iter()
        .fold(0u64, |acc, c| acc.saturating_add(c.data_size()))
}

impl Reader<'_> {
    /// Writes the part of `range` that falls in chunk list `chunks` (first data byte at blob
    /// offset `base`), decoding it by `encoding`.
    pub(crate) fn chunk_list(
        &self,
        chunks: &[ChunkRef],
        encoding: Encoding,
        base: u64,
        range: &Range<u64>,
        place: ChunkPlace,
        sink: &mut dyn Write,
    ) -> Result<(), BlobError> {
        let Some(params) = RsParams::from_encoding(encoding)? else {
            return self.chunks(chunks, base, range, place, sink);
        };
        let codec = StripeCodec::new(params)?;
        let mut start = base;
        for span in stripes(params, chunks)? {
            let refs = chunks.get(span.all_range()).unwrap_or_default();
            let data_refs = refs.get(..span.data_count).unwrap_or_default();
            let end = start.saturating_add(stripe_bytes(data_refs));
            if end > range.start && start < range.end {
                self.stripe_range(&codec, &span, refs, start, range, place, sink)?;
            }
            if end >= range.end {
                break;
            }
            start = end;
        }
        Ok(())
    }

    /// Reads one shard, mapping a lost one to `None` (and propagating non-erasure failures).
    pub(crate) fn shard(
        &self,
        chunk: &ChunkRef,
        position: usize,
        place: ChunkPlace,
    ) -> Result<Option<Vec<u8>>, BlobError> {
        match self.chunk(chunk, position as u64, place) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if is_erasure(&e) => {
                tracing::warn!(error = %e, "erasure-coded chunk lost; reading parity");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Writes the part of `range` in one stripe, starting at blob offset `base`: each data
    /// chunk it touches is read, verified, written and dropped in turn (a stripe's chunks are
    /// never all held); the first one lost makes it gather the stripe and rebuild it, and
    /// the rest is written from the rebuilt stripe.
    #[allow(clippy::too_many_arguments)]
    fn stripe_range(
        &self,
        codec: &StripeCodec,
        span: &StripeSpan,
        refs: &[ChunkRef],
        base: u64,
        range: &Range<u64>,
        place: ChunkPlace,
        sink: &mut dyn Write,
    ) -> Result<(), BlobError> {
        // Data positions the range touches, with each chunk's blob offset.
        let mut wanted: Vec<(usize, u64)> = Vec::new();
        let mut start = base;
        for (i, chunk) in refs.iter().take(span.data_count).enumerate() {
            let end = start.saturating_add(chunk.data_size());
            if end > range.start && start < range.end {
                wanted.push((i, start));
            }
            start = end;
        }
        for (n, &(i, chunk_start)) in wanted.iter().enumerate() {
            let Some(chunk) = refs.get(i) else {
                continue;
            };
            match self.shard(chunk, i, place)? {
                Some(data) => write_part(chunk, chunk_start, &data, range, sink)?,
                None => {
                    let shards = self.rebuild(codec, span, refs, i, place)?;
                    for &(i, chunk_start) in wanted.get(n..).unwrap_or_default() {
                        let (Some(chunk), Some(Some(data))) = (refs.get(i), shards.get(i)) else {
                            return Err(BlobError::Unrecoverable {
                                stripe: span.stripe_index,
                                lost: 1,
                                tolerated: span.parity_count,
                            });
                        };
                        write_part(chunk, chunk_start, data, range, sink)?;
                    }
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// The stripe's data shards, the lost ones rebuilt: reads its shards other than `lost`
    /// (data first, then parity) until as many are verified as it has data chunks.
    fn rebuild(
        &self,
        codec: &StripeCodec,
        span: &StripeSpan,
        refs: &[ChunkRef],
        lost: usize,
        place: ChunkPlace,
    ) -> Result<Vec<Option<Vec<u8>>>, BlobError> {
        let mut shards: Vec<Option<Vec<u8>>> = vec![None; refs.len()];
        let mut present = 0usize;
        for (i, chunk) in refs.iter().enumerate() {
            if present >= span.data_count {
                break;
            }
            let Some(slot) = shards.get_mut(i) else {
                continue;
            };
            if i == lost {
                continue;
            }
            *slot = self.shard(chunk, i, place)?;
            present = present.saturating_add(usize::from(slot.is_some()));
        }
        codec.reconstruct(span, refs, &mut shards, false)?;
        Ok(shards)
    }
}

/// Writes the part of `range` in one data chunk (verified bytes `data`, first byte at blob
/// offset `chunk_start`).
fn write_part(
    chunk: &ChunkRef,
    chunk_start: u64,
    data: &[u8],
    range: &Range<u64>,
    sink: &mut dyn Write,
) -> Result<(), BlobError> {
    let end = chunk_start.saturating_add(chunk.data_size());
    let from = usize::try_from(range.start.saturating_sub(chunk_start)).unwrap_or(usize::MAX);
    let to = usize::try_from(range.end.min(end).saturating_sub(chunk_start)).unwrap_or(0);
    let slice = data.get(from..to).ok_or(BlobError::Corrupted {
        hash: chunk.hash,
        reason: "chunk shorter than its ref".into(),
    })?;
    sink.write_all(slice).map_err(BlobError::Sink)
}
