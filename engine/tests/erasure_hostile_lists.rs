//! Chunk lists and shards read from disk may be anything: stripe parsing and reconstruction
//! return typed errors for every malformed input and never panic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use net_mesh_engine::codec::{ChunkRef, ChunkRole};
use net_mesh_engine::erasure::{ErasureError, RsParams, StripeCodec, stripes};
use proptest::prelude::*;

fn chunk_ref() -> impl Strategy<Value = ChunkRef> {
    (
        any::<u8>(),
        0u32..40,
        prop_oneof![Just(None), (0u32..4).prop_map(Some)],
    )
        .prop_map(|(h, size, parity)| ChunkRef {
            hash: [h; 32],
            size,
            role: match parity {
                None => ChunkRole::Data,
                Some(stripe_index) => ChunkRole::Parity { stripe_index },
            },
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]
    #[test]
    fn arbitrary_lists_and_shards_never_panic(
        k in 1u8..6,
        p in 1u8..4,
        list in proptest::collection::vec(chunk_ref(), 0..24),
        lens in proptest::collection::vec(prop_oneof![Just(None), (0usize..50).prop_map(Some)], 24),
    ) {
        let params = RsParams::new(k, k + p).unwrap();
        let codec = StripeCodec::new(params).unwrap();
        if let Ok(spans) = stripes(params, &list) {
            for span in spans {
                let refs = &list[span.all_range()];
                let mut shards: Vec<Option<Vec<u8>>> = (0..refs.len())
                    .map(|i| lens[i % lens.len()].map(|n| vec![i as u8; n]))
                    .collect();
                let _ = codec.reconstruct(&span, refs, &mut shards, i32::from(k) % 2 == 0);
                // Wrong buffer counts are errors too.
                let short = shards.len() - 1;
                let _ = codec.reconstruct(&span, refs, &mut shards[..short], false);
            }
        }
        // A well-formed layout (sizes from `lens`) with arbitrary shard buffers.
        let mut valid = Vec::new();
        for s in 0..2u32 {
            let d = 1 + (lens.len() + s as usize) % usize::from(k);
            let sizes: Vec<u32> = (0..d).map(|i| 1 + lens[i].unwrap_or(3) as u32).collect();
            let max = *sizes.iter().max().unwrap();
            for (i, size) in sizes.iter().enumerate() {
                valid.push(ChunkRef { hash: [i as u8; 32], size: *size, role: ChunkRole::Data });
            }
            for i in 0..p {
                valid.push(ChunkRef {
                    hash: [100 + i; 32],
                    size: max,
                    role: ChunkRole::Parity { stripe_index: s },
                });
            }
        }
        let spans = stripes(params, &valid).unwrap();
        prop_assert_eq!(spans.len(), 2);
        for span in spans {
            let refs = &valid[span.all_range()];
            let mut shards: Vec<Option<Vec<u8>>> = (0..refs.len())
                .map(|i| lens[(i * 7) % lens.len()].map(|n| vec![i as u8; n]))
                .collect();
            let lost = shards.iter().filter(|s| s.is_none()).count();
            let result = codec.reconstruct(&span, refs, &mut shards, true);
            // Hashes are made up: whatever is rebuilt fails its hash check (typed).
            if lost == 0 {
                prop_assert!(result.is_ok());
            } else if lost > usize::from(p) {
                let too_many = matches!(result, Err(ErasureError::TooManyLost { .. }));
                prop_assert!(too_many);
            } else {
                prop_assert!(result.is_err());
            }
        }
        // Encoding arbitrary (non-empty) chunk sets.
        let mut data: Vec<Vec<u8>> = lens
            .iter()
            .take(usize::from(k) + 1)
            .map(|n| vec![7u8; n.unwrap_or(0)])
            .collect();
        let _ = codec.encode(&mut data);
    }
}
