//! The read path of erasure-coded chunk lists: whole and range reads that tolerate up
//! to n − k missing or corrupt chunks per stripe.
//!
//! A range read touching a stripe reads only the data chunks it needs, one at a time (each
//! verified, written and dropped: a read holds one chunk, not a stripe); when one of them is
//! missing or fails its hash (an erasure), it reads the stripe's other shards — data chunks
//! first, then parity — one at a time, adding each into the lost ones (`Rebuild`: a lost
//! shard is a fixed combination of any k others) until it has added as many verified shards
//! as the stripe has data chunks; checks each rebuilt chunk against its hash and writes the
//! rest of the range from those and from the others, read again. It holds the lost chunks and
//! one shard, never the stripe. Stripes never straddle leaves (`TreeBuilder::push_stripe`), so
//! every shard of a stripe is in the chunk list at hand.

use std::io::Write;
use std::ops::Range;

use bytes::Bytes;

use crate::codec::{ChunkRef, Encoding};
use crate::erasure::{ErasureError, RebuiltShards, RsParams, StripeCodec, StripeSpan, stripes};
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
    ) -> Result<Option<Bytes>, BlobError> {
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
    /// never all held); the first one lost makes it rebuild the stripe's lost data chunks
    /// ([`Reader::rebuild`]), and the rest of the range is written from those and from the
    /// others read again.
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
        let mut rebuilt: RebuiltShards = Vec::new();
        for &(i, chunk_start) in &wanted {
            let Some(chunk) = refs.get(i) else {
                continue;
            };
            if let Some(at) = rebuilt.iter().position(|(p, _)| *p == i) {
                let (_, data) = rebuilt.swap_remove(at);
                write_part(chunk, chunk_start, &data, range, sink)?;
                continue;
            }
            match self.shard(chunk, i, place)? {
                Some(data) => write_part(chunk, chunk_start, &data, range, sink)?,
                None => {
                    // Lost (also one read whole moments ago, for the last rebuild).
                    let wanted_positions: Vec<usize> = wanted.iter().map(|(p, _)| *p).collect();
                    rebuilt = self.rebuild(codec, span, refs, i, &wanted_positions, place)?;
                    let at = rebuilt.iter().position(|(p, _)| *p == i).ok_or(
                        BlobError::Unrecoverable {
                            stripe: span.stripe_index,
                            lost: 1,
                            tolerated: span.parity_count,
                        },
                    )?;
                    let (_, data) = rebuilt.swap_remove(at);
                    write_part(chunk, chunk_start, &data, range, sink)?;
                }
            }
        }
        Ok(())
    }

    /// Rebuilds the stripe's lost data chunks at positions in `wanted`, `first_lost` among
    /// them: reads the shards a rebuild plan uses (the data chunks not known lost, then
    /// parity) one at a time, each verified, added into the lost ones and dropped; a shard
    /// found lost too is left out and the plan starts over without it (at most n − k times).
    /// Holds the rebuilt chunks and one shard, never the stripe. Returns the rebuilt chunks
    /// (each checked against its hash) with their stripe positions.
    fn rebuild(
        &self,
        codec: &StripeCodec,
        span: &StripeSpan,
        refs: &[ChunkRef],
        first_lost: usize,
        wanted: &[usize],
        place: ChunkPlace,
    ) -> Result<RebuiltShards, BlobError> {
        let mut lost = vec![first_lost];
        'plan: loop {
            if lost.len() > span.parity_count {
                return Err(ErasureError::TooManyLost {
                    stripe: span.stripe_index,
                    lost: lost.len(),
                    tolerated: span.parity_count,
                }
                .into());
            }
            let used: Vec<usize> = (0..span.total())
                .filter(|p| !lost.contains(p))
                .take(span.data_count)
                .collect();
            let lost_data: Vec<usize> = lost
                .iter()
                .copied()
                .filter(|p| *p < span.data_count && wanted.contains(p))
                .collect();
            let mut plan = codec.plan_rebuild(span, &lost_data, &used)?;
            for (index, &position) in used.iter().enumerate() {
                let Some(chunk) = refs.get(position) else {
                    lost.push(position);
                    continue 'plan;
                };
                match self.shard(chunk, position, place)? {
                    Some(bytes) => plan.add(index, &bytes)?,
                    None => {
                        lost.push(position);
                        continue 'plan;
                    }
                }
            }
            return Ok(plan.finish(refs)?);
        }
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
