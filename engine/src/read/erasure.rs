//! The read path of erasure-coded chunk lists: whole and range reads that tolerate up
//! to n − k missing or corrupt chunks per stripe.
//!
//! A range read touching a stripe reads only the data chunks it needs; when one of them is
//! missing or fails its hash (an erasure), it reads the stripe's other shards — remaining data
//! chunks first, then parity — until it holds as many verified shards as the stripe has data
//! chunks, rebuilds the lost data chunks, checks each against its hash, and only then writes a
//! byte. Stripes never straddle leaves (`TreeBuilder::push_stripe`), so every shard of a stripe
//! is in the chunk list at hand.

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

    /// Writes the part of `range` in one stripe, starting at blob offset `base`.
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
        let mut shards: Vec<Option<Vec<u8>>> = vec![None; refs.len()];
        let mut tried = vec![false; refs.len()];
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
        let mut lost = false;
        for &(i, _) in &wanted {
            let (Some(chunk), Some(slot), Some(t)) =
                (refs.get(i), shards.get_mut(i), tried.get_mut(i))
            else {
                continue;
            };
            *t = true;
            *slot = self.shard(chunk, i, place)?;
            lost |= slot.is_none();
        }
        if lost {
            // Gather the stripe's other shards, data first, until enough are verified.
            let mut present = shards.iter().filter(|s| s.is_some()).count();
            for (i, chunk) in refs.iter().enumerate() {
                if present >= span.data_count {
                    break;
                }
                let (Some(slot), Some(t)) = (shards.get_mut(i), tried.get_mut(i)) else {
                    continue;
                };
                if *t {
                    continue;
                }
                *t = true;
                *slot = self.shard(chunk, i, place)?;
                present = present.saturating_add(usize::from(slot.is_some()));
            }
            codec.reconstruct(span, refs, &mut shards, false)?;
        }
        for (i, chunk_start) in wanted {
            let (Some(chunk), Some(Some(data))) = (refs.get(i), shards.get(i)) else {
                return Err(BlobError::Unrecoverable {
                    stripe: span.stripe_index,
                    lost: 1,
                    tolerated: span.parity_count,
                });
            };
            let end = chunk_start.saturating_add(chunk.data_size());
            let from =
                usize::try_from(range.start.saturating_sub(chunk_start)).unwrap_or(usize::MAX);
            let to = usize::try_from(range.end.min(end).saturating_sub(chunk_start)).unwrap_or(0);
            let slice = data.get(from..to).ok_or(BlobError::Corrupted {
                hash: chunk.hash,
                reason: "chunk shorter than its ref".into(),
            })?;
            sink.write_all(slice).map_err(BlobError::Sink)?;
        }
        Ok(())
    }
}
