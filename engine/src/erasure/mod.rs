//! Reed–Solomon erasure-coding layout: stripes, padding, parity and reconstruction. Pure code:
//! no I/O (the writer and the reader feed it bytes they stored or read).
//!
//! Layout rules (docs/FORMAT.md §2.12):
//! - A blob encoded `ReedSolomon { data_shards: k, total_shards: n }` groups its data chunks, in
//!   blob order, into **stripes** of `k` data chunks; stripe `s` (counted from 0 over the whole
//!   blob) is followed in its chunk list by exactly `p = n − k` parity refs
//!   `ChunkRole::Parity { stripe_index: s }`.
//! - CDC chunks differ in size: every data chunk of a stripe is zero-padded (for coding only) to
//!   the stripe's largest data chunk, the **shard length**; every parity chunk is exactly one
//!   shard long. Chunk refs keep the true sizes; padding is never stored.
//! - **Short final stripe**: when the blob's chunk count is not a multiple of `k`, the last
//!   stripe has `k' < k` data chunks and still `p` parity chunks. It is coded with the same
//!   `RS(k, n)` code as a full stripe, data shards `k'..k` being *virtual*: shard-length runs
//!   of zeros, except the last column `k − 1`, all [`VIRTUAL_SHARD_BYTE`] (0xFF); never stored
//!   nor listed (every reader knows them). It tolerates the same `p` losses. (Neither the code
//!   `RS(k', k' + p)` nor all-zero virtual shards would do: for `k' = 1` the former is plain
//!   replication, and with the latter codes whose parity matrix has a row of ones (k = 3, 7,
//!   15, …) make a parity chunk equal to the data chunk — and dedup stores them as ONE record.)
//! - **Identical shards share fate**: chunks are content-addressed, so two shards of a stripe
//!   with equal bytes (e.g. two all-zero chunks) are one record, and losing it loses both
//!   positions. A stripe tolerates `p` lost positions; k = 1 is refused for writing since its
//!   parity always equals the data (`RsParams::for_writing`).
//! - Parity chunks are ordinary chunks: id = plain BLAKE3 of the parity bytes.
//! - The tree builder never splits a stripe across leaves (see `TreeBuilder::push_stripe`).
//!
//! Parity bytes are those of `reed-solomon-erasure` 6 (`galois_8`: GF(2^8) with polynomial
//! 0x11d, a systematic matrix built from a Vandermonde matrix); the golden vector in
//! FORMAT.md pins them.
#![deny(clippy::arithmetic_side_effects)]

pub mod stripe;

use std::ops::Range;

use reed_solomon_erasure::galois_8::{self, ReedSolomon};

use crate::codec::{ChunkRef, ChunkRole, Encoding, Hash, chunk_id};

/// Why an erasure-coding step failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErasureError {
    #[error(
        "invalid Reed-Solomon parameters k={k}, n={n}: need 1 <= k < n <= 255 (and k >= 2 to write)"
    )]
    InvalidParams { k: u8, n: u8 },
    #[error("bad stripe layout at chunk list entry {at}: {reason}")]
    BadLayout { at: usize, reason: String },
    #[error("stripe {stripe}: {lost} shards lost, at most {tolerated} can be rebuilt")]
    TooManyLost {
        stripe: u32,
        lost: usize,
        tolerated: usize,
    },
    #[error(
        "stripe {stripe}: rebuilt shard {position} hashes to {}, its ref says {}",
        crate::class::short_hex(actual),
        crate::class::short_hex(expected)
    )]
    RebuiltMismatch {
        stripe: u32,
        position: usize,
        expected: Hash,
        actual: Hash,
    },
    #[error("Reed-Solomon codec: {0}")]
    Codec(String),
}

impl crate::class::Classify for ErasureError {
    fn class(&self) -> crate::class::ErrorClass {
        use crate::class::ErrorClass;
        match self {
            ErasureError::InvalidParams { .. } | ErasureError::Codec(_) => ErrorClass::Usage,
            ErasureError::BadLayout { .. }
            | ErasureError::TooManyLost { .. }
            | ErasureError::RebuiltMismatch { .. } => ErrorClass::Integrity,
        }
    }
}

fn codec_error(e: reed_solomon_erasure::Error) -> ErasureError {
    ErasureError::Codec(e.to_string())
}

/// Valid Reed–Solomon parameters: `k` data shards out of `n` total per stripe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RsParams {
    data_shards: u8,
    total_shards: u8,
}

impl RsParams {
    /// `1 <= k < n <= 255`.
    pub fn new(k: u8, n: u8) -> Result<RsParams, ErasureError> {
        if k == 0 || k >= n {
            return Err(ErasureError::InvalidParams { k, n });
        }
        Ok(RsParams {
            data_shards: k,
            total_shards: n,
        })
    }

    /// Parameters a new blob may be written with: as [`RsParams::new`], and `k >= 2` (with
    /// `k = 1` every parity chunk equals the data chunk, so dedup would store one record and
    /// the "parity" would protect nothing).
    pub fn for_writing(k: u8, n: u8) -> Result<RsParams, ErasureError> {
        RsParams::new(k, n)?.writable()
    }

    /// These parameters, when a new blob may be written with them (see [`RsParams::for_writing`]).
    pub fn writable(self) -> Result<RsParams, ErasureError> {
        if self.data_shards < 2 {
            return Err(ErasureError::InvalidParams {
                k: self.data_shards,
                n: self.total_shards,
            });
        }
        Ok(self)
    }

    /// The parameters of an RS encoding; `None` for Plain.
    pub fn from_encoding(encoding: Encoding) -> Result<Option<RsParams>, ErasureError> {
        match encoding {
            Encoding::Plain => Ok(None),
            Encoding::ReedSolomon {
                data_shards,
                total_shards,
            } => RsParams::new(data_shards, total_shards).map(Some),
        }
    }

    pub fn encoding(self) -> Encoding {
        Encoding::ReedSolomon {
            data_shards: self.data_shards,
            total_shards: self.total_shards,
        }
    }

    /// k.
    pub fn data_shards(self) -> usize {
        usize::from(self.data_shards)
    }

    /// n − k: parity chunks per stripe, and the losses a stripe tolerates.
    pub fn parity_shards(self) -> usize {
        usize::from(self.total_shards.saturating_sub(self.data_shards))
    }
}

/// Where one stripe sits in a chunk list (a Manifest's or a leaf's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StripeSpan {
    pub stripe_index: u32,
    /// List position of the stripe's first data ref.
    pub start: usize,
    /// Data refs (`1..=k`; fewer than k only in a short stripe).
    pub data_count: usize,
    /// Parity refs (always n − k).
    pub parity_count: usize,
    /// Padded length every shard is coded at: the largest data chunk = every parity chunk's size.
    pub shard_len: u32,
}

impl StripeSpan {
    /// List positions of the data refs.
    pub fn data_range(&self) -> Range<usize> {
        self.start..self.start.saturating_add(self.data_count)
    }

    /// List positions of every ref of the stripe (data then parity).
    pub fn all_range(&self) -> Range<usize> {
        self.start
            ..self
                .start
                .saturating_add(self.data_count)
                .saturating_add(self.parity_count)
    }

    /// Shards of the stripe (data + parity).
    pub fn total(&self) -> usize {
        self.data_count.saturating_add(self.parity_count)
    }
}

/// Splits an RS chunk list into its stripes and checks the layout: each stripe is a run of
/// `1..=k` Data refs followed by exactly `n − k` Parity refs that all name the same stripe,
/// stripe indexes increase by one along the list, the list ends with a parity ref, and every
/// parity ref's size equals the stripe's largest data chunk.
pub fn stripes(params: RsParams, chunks: &[ChunkRef]) -> Result<Vec<StripeSpan>, ErasureError> {
    let bad = |at: usize, reason: String| ErasureError::BadLayout { at, reason };
    let k = params.data_shards();
    let p = params.parity_shards();
    let mut out: Vec<StripeSpan> = Vec::new();
    let mut at = 0usize;
    while at < chunks.len() {
        let start = at;
        let mut shard_len = 0u32;
        while let Some(c) = chunks.get(at).filter(|c| c.role == ChunkRole::Data) {
            shard_len = shard_len.max(c.size);
            at = at.saturating_add(1);
        }
        let data_count = at.saturating_sub(start);
        if data_count == 0 {
            return Err(bad(start, "parity ref without data refs before it".into()));
        }
        if data_count > k {
            return Err(bad(
                start,
                format!("{data_count} data refs in a stripe of k = {k}"),
            ));
        }
        let expected_index = match out.last() {
            Some(prev) => prev.stripe_index.checked_add(1),
            None => None,
        };
        let mut stripe_index = None;
        for _ in 0..p {
            let Some(c) = chunks.get(at) else {
                return Err(bad(at, format!("stripe ends before its {p} parity refs")));
            };
            let ChunkRole::Parity { stripe_index: s } = c.role else {
                return Err(bad(at, format!("data ref where parity {p} refs are due")));
            };
            if *stripe_index.get_or_insert(s) != s {
                return Err(bad(at, "parity refs of one stripe name two stripes".into()));
            }
            if c.size != shard_len {
                return Err(bad(
                    at,
                    format!("parity size {} != shard length {shard_len}", c.size),
                ));
            }
            at = at.saturating_add(1);
        }
        let stripe_index = stripe_index.unwrap_or_default();
        if let Some(expected) = expected_index
            && expected != stripe_index
        {
            return Err(bad(
                start,
                format!("stripe index {stripe_index} follows stripe index {expected} - 1"),
            ));
        }
        if let Some(c) = chunks.get(at)
            && matches!(c.role, ChunkRole::Parity { .. })
        {
            return Err(bad(at, format!("more than {p} parity refs in a stripe")));
        }
        out.push(StripeSpan {
            stripe_index,
            start,
            data_count,
            parity_count: p,
            shard_len,
        });
    }
    Ok(out)
}

/// Byte the LAST data column's virtual shard of a short stripe is filled with (the other
/// virtual shards are zero). With all-zero virtual shards, a one-chunk stripe's parity would
/// be `c · data`, and for codes whose parity matrix has a row of ones (k = 3, 7, 15, …: the
/// first parity row is the XOR of the data) that parity chunk would equal the data chunk byte
/// for byte — one deduplicated record, no protection. (Filling every virtual shard does not
/// help: an even number of equal shards cancels under XOR.) With exactly one non-zero virtual
/// shard, every parity chunk is `c · data ⊕ e` with `e = c' · 0xFF ≠ 0` (every coefficient of
/// an MDS code's parity rows is non-zero), never a copy of the data.
pub const VIRTUAL_SHARD_BYTE: u8 = 0xFF;

/// Bytes of every shard coded per call into the codec (see `StripeCodec::encode`).
const CODING_BLOCK: usize = 32 * 1024;

/// The `RS(k, n)` codec of a blob, for full and short stripes alike.
#[derive(Debug)]
pub struct StripeCodec {
    params: RsParams,
    full: ReedSolomon,
    /// The code's parity rows, `p × k` row-major: parity i = Σ_j c[i][j] · data column j.
    coefficients: Vec<u8>,
}

impl StripeCodec {
    pub fn new(params: RsParams) -> Result<StripeCodec, ErasureError> {
        let (k, p) = (params.data_shards(), params.parity_shards());
        let full = ReedSolomon::new(k, p).map_err(codec_error)?;
        // Read the parity rows off the codec: encode each unit vector (1-byte shards).
        let mut columns = Vec::with_capacity(k);
        for j in 0..k {
            let unit: Vec<[u8; 1]> = (0..k).map(|c| [u8::from(c == j)]).collect();
            let mut out = vec![[0u8; 1]; p];
            full.encode_sep(&unit, &mut out).map_err(codec_error)?;
            columns.push(out);
        }
        let coefficients = (0..p)
            .flat_map(|i| {
                columns
                    .iter()
                    .map(move |col| col.get(i).map_or(0, |c| c[0]))
            })
            .collect();
        Ok(StripeCodec {
            params,
            full,
            coefficients,
        })
    }

    pub fn params(&self) -> RsParams {
        self.params
    }

    /// Computes the parity shards of one stripe from its data chunks (`1..=k`, non-empty):
    /// `n − k` parity shards as long as the largest chunk (the others count as zero-padded;
    /// the chunks are left as they are).
    pub fn encode(&self, data: &mut [Vec<u8>]) -> Result<Vec<Vec<u8>>, ErasureError> {
        self.encode_with(data, Vec::new())
    }

    /// [`StripeCodec::encode`], writing the parity into `spare` buffers when given (reused
    /// allocations: no fresh pages to fault in per stripe).
    pub fn encode_with(
        &self,
        data: &mut [Vec<u8>],
        mut spare: Vec<Vec<u8>>,
    ) -> Result<Vec<Vec<u8>>, ErasureError> {
        if data.is_empty() || data.len() > self.params.data_shards() {
            return Err(ErasureError::Codec(format!(
                "{} data shards for k = {}",
                data.len(),
                self.params.data_shards()
            )));
        }
        if data.iter().all(Vec::is_empty) {
            return Err(ErasureError::Codec("empty stripe".into()));
        }
        let mut parity: Vec<Vec<u8>> = (0..self.params.parity_shards())
            .map(|_| {
                let mut buf = spare.pop().unwrap_or_default();
                buf.clear();
                buf
            })
            .collect();
        for (column, shard) in data.iter().enumerate() {
            self.accumulate(&mut parity, column, shard)?;
        }
        self.finish_parity(&mut parity, data.len());
        Ok(parity)
    }

    /// Adds data column `column` (a data chunk of the stripe, at its true length) into the
    /// stripe's `parity`, one buffer per parity shard, empty before the first column:
    /// `parity[i] ^= c[i][column] · data`. The buffers grow with zeros to the longest column
    /// so far (the zero padding of a shorter column contributes nothing, so it is never
    /// coded). A writer adds each chunk as it comes and keeps only the parity, never the
    /// stripe's data; [`StripeCodec::finish_parity`] completes it.
    pub fn accumulate(
        &self,
        parity: &mut [Vec<u8>],
        column: usize,
        data: &[u8],
    ) -> Result<(), ErasureError> {
        if parity.len() != self.params.parity_shards() || column >= self.params.data_shards() {
            return Err(ErasureError::Codec(format!(
                "column {column} into {} parity buffers for k = {}, p = {}",
                parity.len(),
                self.params.data_shards(),
                self.params.parity_shards()
            )));
        }
        for buf in parity.iter_mut() {
            if buf.len() < data.len() {
                buf.resize(data.len(), 0);
            }
        }
        // Block by block, so the data block stays in cache while every parity row takes it.
        for (at, input) in data.chunks(CODING_BLOCK).enumerate() {
            let offset = at.saturating_mul(CODING_BLOCK);
            let end = offset.saturating_add(input.len());
            for (i, out) in parity.iter_mut().enumerate() {
                if let Some(output) = out.get_mut(offset..end) {
                    galois_8::mul_slice_xor(self.coefficient(i, column), input, output);
                }
            }
        }
        Ok(())
    }

    /// Completes the parity of a stripe of `data_count` columns, each added with
    /// [`StripeCodec::accumulate`]: a short stripe's virtual shards (see the module docs) add
    /// the constant `c[i][k-1] · 0xFF` (their last column's) to every byte of parity `i`; the
    /// zero ones add nothing.
    pub fn finish_parity(&self, parity: &mut [Vec<u8>], data_count: usize) {
        let k = self.params.data_shards();
        if data_count >= k {
            return;
        }
        for (i, buf) in parity.iter_mut().enumerate() {
            let fill = galois_8::mul(self.coefficient(i, k.saturating_sub(1)), VIRTUAL_SHARD_BYTE);
            for byte in buf.iter_mut() {
                *byte ^= fill;
            }
        }
    }

    /// Parity-matrix coefficient of parity row `i`, data column `j`.
    fn coefficient(&self, i: usize, j: usize) -> u8 {
        i.checked_mul(self.params.data_shards())
            .and_then(|at| at.checked_add(j))
            .and_then(|at| self.coefficients.get(at))
            .copied()
            .unwrap_or(0)
    }
}

impl StripeCodec {
    /// Plans rebuilding the shards at stripe positions `lost` (positions as in the stripe's
    /// refs: data, then parity; reads rebuild data, a repair parity too) from the shards at
    /// positions `used`: as many as the stripe has data shards, none of them lost. See
    /// [`Rebuild`].
    pub fn plan_rebuild(
        &self,
        span: &StripeSpan,
        lost: &[usize],
        used: &[usize],
    ) -> Result<Rebuild, ErasureError> {
        let (k, p) = (self.params.data_shards(), self.params.parity_shards());
        let bad = |why: String| ErasureError::Codec(format!("stripe {}: {why}", span.stripe_index));
        if span.data_count == 0 || span.data_count > k || span.parity_count != p {
            return Err(bad(format!(
                "{} data and {} parity shards for RS({k}, {})",
                span.data_count,
                span.parity_count,
                k.saturating_add(p)
            )));
        }
        if used.len() != span.data_count
            || lost.iter().any(|l| *l >= span.total() || used.contains(l))
            || used.iter().any(|u| *u >= span.total())
        {
            return Err(bad(format!(
                "cannot rebuild shards {lost:?} from shards {used:?}"
            )));
        }
        // Code columns: the stripe's data in 0..data_count, its virtual shards (known, never
        // lost) in data_count..k, parity in k..k + p.
        let column = |position: usize| {
            if position < span.data_count {
                position
            } else {
                k.saturating_add(position.saturating_sub(span.data_count))
            }
        };
        let mut present = vec![false; k.saturating_add(p)];
        for position in used {
            if let Some(slot) = present.get_mut(column(*position)) {
                *slot = true;
            }
        }
        for slot in present.iter_mut().take(k).skip(span.data_count) {
            *slot = true;
        }
        // Each present column's coefficient in each lost one: rebuild from a unit vector
        // (1-byte shards: 1 in that column, 0 in the other present ones).
        let coefficient_of = |unit: usize| -> Result<Vec<u8>, ErasureError> {
            let mut bytes: Vec<[u8; 1]> =
                (0..present.len()).map(|c| [u8::from(c == unit)]).collect();
            let mut shards: Vec<(&mut [u8], bool)> = bytes
                .iter_mut()
                .zip(&present)
                .map(|(b, &p)| (b.as_mut_slice(), p))
                .collect();
            if lost.iter().all(|l| *l < span.data_count) {
                self.full.reconstruct_data(&mut shards)
            } else {
                self.full.reconstruct(&mut shards)
            }
            .map_err(codec_error)?;
            Ok(lost
                .iter()
                .map(|l| bytes.get(column(*l)).map_or(0, |b| b[0]))
                .collect())
        };
        let mut coefficients = vec![Vec::with_capacity(used.len()); lost.len()];
        for position in used {
            for (row, c) in coefficients
                .iter_mut()
                .zip(coefficient_of(column(*position))?)
            {
                row.push(c);
            }
        }
        // The virtual shards add a constant: only the last data column's is non-zero.
        let fill: Vec<u8> = if span.data_count < k {
            coefficient_of(k.saturating_sub(1))?
                .into_iter()
                .map(|c| galois_8::mul(c, VIRTUAL_SHARD_BYTE))
                .collect()
        } else {
            vec![0; lost.len()]
        };
        let shard_len = usize::try_from(span.shard_len).unwrap_or(usize::MAX);
        Ok(Rebuild {
            stripe_index: span.stripe_index,
            lost: lost.to_vec(),
            used: used.to_vec(),
            coefficients,
            added: vec![false; used.len()],
            rebuilt: fill.into_iter().map(|f| vec![f; shard_len]).collect(),
            shard_len,
        })
    }
}

/// Rebuilt shards with their stripe positions ([`Rebuild::finish`]).
pub type RebuiltShards = Vec<(usize, Vec<u8>)>;

/// A rebuild of some of a stripe's lost shards that takes the shards it reads one at a time:
/// each lost shard is a fixed combination of the `k` shards used (virtual ones included: a
/// constant), so every shard read is added into each lost one ([`Rebuild::add`]) and can be
/// dropped. It holds the lost shards, never the stripe.
#[derive(Debug)]
pub struct Rebuild {
    stripe_index: u32,
    /// Stripe positions of the shards rebuilt.
    lost: Vec<usize>,
    /// Stripe positions of the shards to add, in order.
    used: Vec<usize>,
    /// `coefficients[l][u]`: used shard `u`'s coefficient in lost shard `l`.
    coefficients: Vec<Vec<u8>>,
    added: Vec<bool>,
    /// One buffer per lost shard, at the stripe's shard length.
    rebuilt: Vec<Vec<u8>>,
    shard_len: usize,
}

impl Rebuild {
    /// Stripe positions of the shards to add, in the order [`Rebuild::add`] numbers them.
    pub fn used(&self) -> &[usize] {
        &self.used
    }

    /// Adds used shard `index` (`used()[index]`): its verified bytes at their true size.
    pub fn add(&mut self, index: usize, bytes: &[u8]) -> Result<(), ErasureError> {
        let shard_len = self.shard_len;
        let fresh = self
            .added
            .get_mut(index)
            .is_some_and(|a| !std::mem::replace(a, true));
        if !fresh || bytes.len() > shard_len {
            return Err(ErasureError::Codec(format!(
                "stripe {}: shard {index} of {} bytes added twice, unplanned or past the shard \
                 length {shard_len}",
                self.stripe_index,
                bytes.len()
            )));
        }
        // Block by block, so the input block stays in cache while every lost shard takes it.
        for (at, input) in bytes.chunks(CODING_BLOCK).enumerate() {
            let offset = at.saturating_mul(CODING_BLOCK);
            let end = offset.saturating_add(input.len());
            for (row, out) in self.coefficients.iter().zip(self.rebuilt.iter_mut()) {
                if let (Some(c), Some(output)) = (row.get(index), out.get_mut(offset..end)) {
                    galois_8::mul_slice_xor(*c, input, output);
                }
            }
        }
        Ok(())
    }

    /// The rebuilt shards with their stripe positions, each cut to its ref's size and checked
    /// against its hash (`refs`: the stripe's refs).
    pub fn finish(self, refs: &[ChunkRef]) -> Result<RebuiltShards, ErasureError> {
        if self.added.iter().any(|a| !a) {
            return Err(ErasureError::Codec(format!(
                "stripe {}: a rebuild finished before every shard was added",
                self.stripe_index
            )));
        }
        let mut out = Vec::with_capacity(self.lost.len());
        for (position, mut bytes) in self.lost.into_iter().zip(self.rebuilt) {
            let Some(r) = refs.get(position) else {
                return Err(ErasureError::Codec(format!(
                    "stripe {}: no ref at position {position}",
                    self.stripe_index
                )));
            };
            bytes.truncate(usize::try_from(r.size).unwrap_or(usize::MAX));
            let actual = chunk_id(&bytes);
            if actual != r.hash {
                return Err(ErasureError::RebuiltMismatch {
                    stripe: self.stripe_index,
                    position,
                    expected: r.hash,
                    actual,
                });
            }
            out.push((position, bytes));
        }
        Ok(out)
    }
}

/// A stripe ready to be stored: its data refs and the parity chunks to store after them.
#[derive(Debug)]
pub struct EncodedStripe {
    pub stripe_index: u32,
    pub data: Vec<ChunkRef>,
    pub parity: Vec<Vec<u8>>,
    /// `chunk_id` of each parity chunk.
    pub parity_ids: Vec<Hash>,
}

/// Builds the parity refs for an encoded stripe given each parity chunk's id.
pub fn parity_ref(hash: Hash, size: u32, stripe_index: u32) -> ChunkRef {
    ChunkRef {
        hash,
        size,
        role: ChunkRole::Parity { stripe_index },
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::panic
)]
mod tests;
