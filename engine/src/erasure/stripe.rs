//! Which erasure-coding stripe each chunk of a chunk list belongs to. Pure code: no I/O.
//!
//! There is one stripe-membership rule, [`super::stripes`] (docs/FORMAT.md §2.12), the one
//! reads and repair decode by: under `Encoding::ReedSolomon { data_shards: k, .. }` a list is a
//! sequence of stripes, each a run of `1..=k` Data refs followed by its `n − k` Parity refs,
//! which name the stripe in `stripe_index`; stripes never span lists. [`assign`] derives each
//! chunk's stripe from it, for `blob chunks` and GC's stripe guard, so what they call a stripe
//! is exactly what a read would rebuild. A list that does not split into stripes is refused:
//! no read or repair can use it, so no chunk of it is in a stripe. Under `Plain` no chunk is
//! in a stripe.

use super::{ErasureError, RsParams, stripes};
use crate::codec::{ChunkRef, ChunkRole, Encoding};

/// Stripe of each chunk of `chunks` (all `None` under Plain), by the layout rule of
/// [`super::stripes`]; its error when the list does not split into stripes.
pub fn assign(chunks: &[ChunkRef], encoding: Encoding) -> Result<Vec<Option<u32>>, ErasureError> {
    let mut out = vec![None; chunks.len()];
    let Some(params) = RsParams::from_encoding(encoding)? else {
        return Ok(out);
    };
    for span in stripes(params, chunks)? {
        for slot in out.get_mut(span.all_range()).into_iter().flatten() {
            *slot = Some(span.stripe_index);
        }
    }
    Ok(out)
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
    fn every_ref_takes_the_stripe_of_the_parity_that_closes_its_run() {
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
        let list = [data(1), data(2), parity(4), data(3), parity(5)];
        assert_eq!(
            assign(&list, enc).unwrap(),
            vec![Some(4), Some(4), Some(4), Some(5), Some(5)]
        );
        // Trailing data without parity: not a stripe layout, refused like a read refuses it.
        assert!(matches!(
            assign(&[data(1), data(2), parity(0), data(4)], enc),
            Err(ErasureError::BadLayout { at: 4, .. })
        ));
        assert_eq!(
            assign(&[data(1), data(2)], Encoding::Plain).unwrap(),
            vec![None, None]
        );
    }
}
