//! Chunk lists and shards read from disk may be anything: stripe parsing and rebuild plans
//! return typed errors for every malformed input and never panic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use net_mesh_engine::codec::{ChunkRef, ChunkRole};
use net_mesh_engine::erasure::{ErasureError, RsParams, StripeCodec, StripeSpan, stripes};
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

/// Plans rebuilding the shards `None` in `shards` from the first others and adds those
/// (whatever their lengths), as a read or a repair would.
fn rebuild(
    codec: &StripeCodec,
    span: &StripeSpan,
    refs: &[ChunkRef],
    shards: &[Option<Vec<u8>>],
) -> Result<Vec<(usize, Vec<u8>)>, ErasureError> {
    let lost: Vec<usize> = (0..shards.len()).filter(|i| shards[*i].is_none()).collect();
    let used: Vec<usize> = (0..shards.len())
        .filter(|i| shards[*i].is_some())
        .take(span.data_count)
        .collect();
    let mut plan = codec.plan_rebuild(span, &lost, &used)?;
    for (index, position) in used.iter().enumerate() {
        plan.add(index, shards[*position].as_deref().unwrap_or_default())?;
    }
    // Adding one twice, or one not planned, is an error.
    assert!(plan.add(0, &[]).is_err());
    assert!(plan.add(used.len(), &[]).is_err());
    plan.finish(refs)
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
                let shards: Vec<Option<Vec<u8>>> = (0..refs.len())
                    .map(|i| lens[i % lens.len()].map(|n| vec![i as u8; n]))
                    .collect();
                let _ = rebuild(&codec, &span, refs, &shards);
                // Plans over positions past the stripe, or with a used shard also lost.
                let _ = codec.plan_rebuild(&span, &[span.total()], &[0]);
                let _ = codec.plan_rebuild(&span, &[0], &vec![0; span.data_count]);
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
            let shards: Vec<Option<Vec<u8>>> = (0..refs.len())
                .map(|i| lens[(i * 7) % lens.len()].map(|n| vec![i as u8; n]))
                .collect();
            let lost = shards.iter().filter(|s| s.is_none()).count();
            let result = rebuild(&codec, &span, refs, &shards);
            // Hashes are made up: whatever is rebuilt fails its hash check (typed).
            // (With nothing lost nothing is rebuilt; a shard longer than the stripe's shard
            // length is still refused.)
            if lost == 0 {
                prop_assert!(result.map_or(true, |r| r.is_empty()));
            } else if lost > usize::from(p) {
                prop_assert!(matches!(result, Err(ErasureError::Codec(_))));
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
