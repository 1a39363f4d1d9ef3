//! Which erasure-coding stripe each chunk of a chunk list belongs to. Pure code: no I/O.
//!
//! Convention (docs/FORMAT.md §2.5, shared with the Reed–Solomon writer): under
//! `Encoding::ReedSolomon { data_shards: k, .. }` the blob's Data chunks, numbered in blob order
//! from 0 across every list of the blob, form stripe `ordinal / k`; a Parity chunk names its
//! stripe in `stripe_index`. Under `Plain` no chunk is in a stripe.

use crate::codec::{ChunkRef, ChunkRole, Encoding};

/// Stripe of each chunk of `chunks` (None under Plain), given the number of Data chunks that
/// precede this list in the blob. Returns the assignments and the Data count after the list.
pub fn assign(
    chunks: &[ChunkRef],
    encoding: Encoding,
    data_before: u64,
) -> (Vec<Option<u32>>, u64) {
    let mut data_seen = data_before;
    let mut out = Vec::with_capacity(chunks.len());
    for chunk in chunks {
        let stripe = match (encoding, chunk.role) {
            (Encoding::Plain, ChunkRole::Data) => None,
            (Encoding::ReedSolomon { data_shards, .. }, ChunkRole::Data) => {
                let k = u64::from(data_shards.max(1));
                Some(u32::try_from(data_seen / k).unwrap_or(u32::MAX))
            }
            (_, ChunkRole::Parity { stripe_index }) => Some(stripe_index),
        };
        if chunk.role == ChunkRole::Data {
            data_seen = data_seen.saturating_add(1);
        }
        out.push(stripe);
    }
    (out, data_seen)
}

/// `"data"` or `"parity"`.
pub fn role_name(role: ChunkRole) -> &'static str {
    match role {
        ChunkRole::Data => "data",
        ChunkRole::Parity { .. } => "parity",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn data(b: u8) -> ChunkRef {
        ChunkRef {
            hash: [b; 32],
            size: 1,
            role: ChunkRole::Data,
        }
    }

    #[test]
    fn data_chunks_form_stripes_of_k_and_parity_names_its_stripe() {
        let enc = Encoding::ReedSolomon {
            data_shards: 2,
            total_shards: 3,
        };
        let parity = ChunkRef {
            hash: [9; 32],
            size: 1,
            role: ChunkRole::Parity { stripe_index: 0 },
        };
        let (s, after) = assign(&[data(1), data(2), parity, data(3)], enc, 0);
        assert_eq!(s, vec![Some(0), Some(0), Some(0), Some(1)]);
        assert_eq!(after, 3);
        let (s, _) = assign(&[data(4)], enc, after);
        assert_eq!(s, vec![Some(1)]);
        let (s, _) = assign(&[data(1)], Encoding::Plain, 5);
        assert_eq!(s, vec![None]);
    }
}
