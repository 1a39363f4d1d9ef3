//! Which erasure-coding stripe each chunk of a chunk list belongs to. Pure code: no I/O.
//!
//! Convention (docs/FORMAT.md §3.9, matching the Reed–Solomon writer's layout): under
//! `Encoding::ReedSolomon { data_shards: k, .. }` a stripe is a run of Data refs followed by its
//! `n − k` Parity refs, each naming the stripe in `stripe_index`; stripes never span lists. A
//! Data ref therefore belongs to the stripe of the first Parity ref after it in its list. (A
//! malformed list with Data refs after the last Parity ref falls back to `data ordinal / k`,
//! counting the blob's Data refs from 0 — the same answer for well-formed blobs, whose stripes
//! hold k data refs except the last.) Under `Plain` no chunk is in a stripe.

use crate::codec::{ChunkRef, ChunkRole, Encoding};

/// Stripe of each chunk of `chunks` (None under Plain), given the number of Data chunks that
/// precede this list in the blob. Returns the assignments and the Data count after the list.
pub fn assign(
    chunks: &[ChunkRef],
    encoding: Encoding,
    data_before: u64,
) -> (Vec<Option<u32>>, u64) {
    let data_in_list = chunks.iter().filter(|c| c.role == ChunkRole::Data).count() as u64;
    let data_after = data_before.saturating_add(data_in_list);
    let Encoding::ReedSolomon { data_shards, .. } = encoding else {
        return (vec![None; chunks.len()], data_after);
    };
    let k = u64::from(data_shards.max(1));
    let mut out = vec![None; chunks.len()];
    // Walk backwards so each Data ref sees the next Parity ref's stripe.
    let mut next_parity: Option<u32> = None;
    let mut ordinal = data_after;
    for (slot, chunk) in out.iter_mut().zip(chunks).rev() {
        *slot = match chunk.role {
            ChunkRole::Parity { stripe_index } => {
                next_parity = Some(stripe_index);
                Some(stripe_index)
            }
            ChunkRole::Data => {
                ordinal = ordinal.saturating_sub(1);
                Some(next_parity.unwrap_or(
                    u32::try_from(ordinal.checked_div(k).unwrap_or(0)).unwrap_or(u32::MAX),
                ))
            }
        };
    }
    (out, data_after)
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
    fn data_refs_take_the_stripe_of_the_parity_after_them() {
        let enc = Encoding::ReedSolomon {
            data_shards: 2,
            total_shards: 3,
        };
        let parity = |s: u32| ChunkRef {
            hash: [9; 32],
            size: 1,
            role: ChunkRole::Parity { stripe_index: s },
        };
        // Stripe 4 (full), then a short final stripe 5 of one data ref.
        let (s, after) = assign(&[data(1), data(2), parity(4), data(3), parity(5)], enc, 8);
        assert_eq!(s, vec![Some(4), Some(4), Some(4), Some(5), Some(5)]);
        assert_eq!(after, 11);
        // Malformed: trailing data without parity falls back to ordinal / k.
        let (s, _) = assign(&[data(4)], enc, 6);
        assert_eq!(s, vec![Some(3)]);
        let (s, after) = assign(&[data(1), data(2)], Encoding::Plain, 5);
        assert_eq!(s, vec![None, None]);
        assert_eq!(after, 7);
    }
}
