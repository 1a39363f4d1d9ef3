//! Unit tests of the stripe layout and the codec.

use super::*;

fn data_ref(bytes: &[u8]) -> ChunkRef {
    ChunkRef {
        hash: chunk_id(bytes),
        size: bytes.len() as u32,
        role: ChunkRole::Data,
    }
}

/// Encodes `chunks` as consecutive stripes; returns (refs, shard bytes by ref position).
fn encode_all(params: RsParams, chunks: &[Vec<u8>]) -> (Vec<ChunkRef>, Vec<Vec<u8>>) {
    let codec = StripeCodec::new(params).unwrap();
    let mut refs = Vec::new();
    let mut by_pos = Vec::new();
    for (stripe, group) in chunks.chunks(params.data_shards()).enumerate() {
        let mut data = group.to_vec();
        let parity = codec.encode(&mut data).unwrap();
        for c in group {
            refs.push(data_ref(c));
            by_pos.push(c.clone());
        }
        for p in parity {
            refs.push(parity_ref(chunk_id(&p), p.len() as u32, stripe as u32));
            by_pos.push(p);
        }
    }
    (refs, by_pos)
}

/// Rebuilds the shards at `lost` of the stripe at `span` from the first shards left
/// (`bytes`: every shard by list position).
fn rebuild(
    codec: &StripeCodec,
    span: &StripeSpan,
    refs: &[ChunkRef],
    bytes: &[Vec<u8>],
    lost: &[usize],
) -> Result<Vec<(usize, Vec<u8>)>, ErasureError> {
    let used: Vec<usize> = (0..span.total())
        .filter(|i| !lost.contains(i))
        .take(span.data_count)
        .collect();
    let mut plan = codec.plan_rebuild(span, lost, &used)?;
    for (index, position) in used.iter().enumerate() {
        plan.add(index, &bytes[span.start + position])?;
    }
    plan.finish(&refs[span.all_range()])
}

fn chunks_of(sizes: &[usize]) -> Vec<Vec<u8>> {
    sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| (0..n).map(|j| (i * 31 + j * 7) as u8).collect())
        .collect()
}

#[test]
fn params_are_checked() {
    assert!(RsParams::new(0, 3).is_err());
    assert!(RsParams::new(3, 3).is_err());
    assert!(RsParams::new(4, 2).is_err());
    let p = RsParams::new(10, 14).unwrap();
    assert_eq!((p.data_shards(), p.parity_shards()), (10, 4));
    assert_eq!(RsParams::from_encoding(p.encoding()).unwrap(), Some(p));
    assert_eq!(RsParams::from_encoding(Encoding::Plain).unwrap(), None);
}

#[test]
fn layout_has_full_stripes_then_a_short_one_padded_to_the_largest_chunk() {
    let params = RsParams::new(3, 5).unwrap();
    let chunks = chunks_of(&[10, 30, 20, 7, 9]);
    let (refs, bytes) = encode_all(params, &chunks);
    let spans = stripes(params, &refs).unwrap();
    assert_eq!(spans.len(), 2);
    assert_eq!(
        spans[0],
        StripeSpan {
            stripe_index: 0,
            start: 0,
            data_count: 3,
            parity_count: 2,
            shard_len: 30
        }
    );
    assert_eq!(
        spans[1],
        StripeSpan {
            stripe_index: 1,
            start: 5,
            data_count: 2,
            parity_count: 2,
            shard_len: 9
        }
    );
    assert_eq!(refs.len(), 9);
    assert_eq!(bytes[3].len(), 30);
    assert_eq!(bytes[7].len(), 9);
    assert_eq!(
        refs[8].role,
        ChunkRole::Parity { stripe_index: 1 },
        "last ref is the short stripe's parity"
    );
}

#[test]
fn every_loss_up_to_the_parity_count_is_rebuilt_and_one_more_is_refused() {
    for (k, n) in [(1u8, 2u8), (2, 3), (3, 5), (4, 6)] {
        let params = RsParams::new(k, n).unwrap();
        let codec = StripeCodec::new(params).unwrap();
        let chunks = chunks_of(&[5, 17, 3, 11, 8, 2, 13][..usize::from(k) + 1]);
        let (refs, bytes) = encode_all(params, &chunks);
        for span in stripes(params, &refs).unwrap() {
            let total = span.total();
            for mask in 1u32..(1 << total) {
                let lost: Vec<usize> = (0..total).filter(|i| mask & (1 << i) != 0).collect();
                let result = rebuild(&codec, &span, &refs, &bytes, &lost);
                if lost.len() <= span.parity_count {
                    let rebuilt = result.unwrap();
                    assert_eq!(rebuilt.len(), lost.len());
                    for (i, data) in rebuilt {
                        assert_eq!(data, bytes[span.start + i]);
                    }
                } else {
                    // Too few shards left to plan with.
                    assert!(matches!(result, Err(ErasureError::Codec(_))));
                }
            }
        }
    }
}

/// Every set of lost shards (data and parity) a stripe tolerates, rebuilt shard by shard
/// from several choices of the shards left (the first ones, the last ones, parity first):
/// the original bytes, in full and short stripes; a wrong shard added fails the hash check;
/// a plan that names a used shard as lost, or too few shards, is refused.
#[test]
fn a_rebuild_adding_one_shard_at_a_time_gives_the_lost_shards_back() {
    for (k, n) in [(1u8, 2u8), (2, 3), (3, 5), (4, 6), (5, 8)] {
        let params = RsParams::new(k, n).unwrap();
        let codec = StripeCodec::new(params).unwrap();
        let chunks = chunks_of(&[5, 17, 3, 11, 8, 2, 13, 9][..usize::from(k) + 2]);
        let (refs, bytes) = encode_all(params, &chunks);
        for span in stripes(params, &refs).unwrap() {
            let (total, d) = (span.total(), span.data_count);
            let srefs = &refs[span.all_range()];
            for mask in 1u32..(1 << total) {
                let lost: Vec<usize> = (0..total).filter(|i| mask & (1 << i) != 0).collect();
                if lost.len() > span.parity_count {
                    continue;
                }
                let left: Vec<usize> = (0..total).filter(|i| !lost.contains(i)).collect();
                let mut parity_first = left.clone();
                parity_first.rotate_left(left.iter().filter(|i| **i < d).count());
                let choices = [
                    left[..d].to_vec(),
                    left[left.len() - d..].to_vec(),
                    parity_first[..d].to_vec(),
                ];
                for used in choices {
                    let mut plan = codec.plan_rebuild(&span, &lost, &used).unwrap();
                    for (index, position) in used.iter().enumerate() {
                        plan.add(index, &bytes[span.start + position]).unwrap();
                    }
                    let got = plan.finish(srefs).unwrap();
                    assert_eq!(got.len(), lost.len());
                    for (position, data) in got {
                        assert_eq!(data, bytes[span.start + position], "k {k} n {n} {used:?}");
                    }
                }
                // A shard whose bytes are not the stripe's: the rebuilt hash says so.
                let mut wrong = bytes.clone();
                wrong[span.start + left[0]][0] ^= 0x5A;
                assert!(matches!(
                    rebuild(&codec, &span, &refs, &wrong, &lost),
                    Err(ErasureError::RebuiltMismatch { .. })
                ));
            }
        }
    }
    let params = RsParams::new(3, 5).unwrap();
    let codec = StripeCodec::new(params).unwrap();
    let (refs, _) = encode_all(params, &chunks_of(&[4, 4, 4]));
    let span = stripes(params, &refs).unwrap()[0];
    assert!(codec.plan_rebuild(&span, &[0], &[0, 1, 2]).is_err());
    assert!(codec.plan_rebuild(&span, &[0], &[1, 2]).is_err());
    assert!(codec.plan_rebuild(&span, &[0], &[1, 2, 5]).is_err());
    assert!(codec.plan_rebuild(&span, &[5], &[1, 2, 3]).is_err());
}

#[test]
fn a_one_chunk_short_stripe_never_stores_parity_equal_to_its_data() {
    // With RS(1, 1 + p) every parity shard would equal the data shard: dedup would make
    // them one record. So would zero virtual shards for k = 3, 7, 15 (a parity row of ones).
    let data: Vec<u8> = (0..64u32).map(|i| (i * 37 + 11) as u8).collect();
    for k in 2u8..=32 {
        for n in k + 1..=k + 8 {
            let codec = StripeCodec::new(RsParams::for_writing(k, n).unwrap()).unwrap();
            let parity = codec.encode(&mut [data.clone()]).unwrap();
            for (i, p) in parity.iter().enumerate() {
                assert_ne!(p, &data, "{k}+{n}: parity {i} equals the data");
            }
        }
    }
    assert!(RsParams::for_writing(1, 3).is_err());
}

#[test]
fn blocked_coding_equals_whole_shard_coding() {
    // Shards of several coding blocks, the last one partial, full and short stripes.
    let params = RsParams::new(4, 7).unwrap();
    let codec = StripeCodec::new(params).unwrap();
    let rs = ReedSolomon::new(4, 3).unwrap();
    let len = CODING_BLOCK * 3 + 1234;
    let chunks = chunks_of(&[len, len - 7, len, 99, len - 1, 5]);
    let (refs, bytes) = encode_all(params, &chunks);
    let spans = stripes(params, &refs).unwrap();
    let mut whole: Vec<Vec<u8>> = chunks[..4].to_vec();
    for w in whole.iter_mut() {
        w.resize(len, 0);
    }
    let mut parity = vec![vec![0u8; len]; 3];
    rs.encode_sep(&whole, &mut parity).unwrap();
    assert_eq!(&bytes[4..7], &parity[..]);
    for span in spans {
        let lost = [0, span.data_count, span.total() - 1];
        for (i, data) in rebuild(&codec, &span, &refs, &bytes, &lost).unwrap() {
            assert_eq!(data, bytes[span.start + i]);
        }
    }
}

#[test]
fn a_wrong_shard_is_caught_by_the_rebuilt_hash() {
    let params = RsParams::new(2, 3).unwrap();
    let codec = StripeCodec::new(params).unwrap();
    let chunks = chunks_of(&[6, 6]);
    let (refs, bytes) = encode_all(params, &chunks);
    let span = stripes(params, &refs).unwrap()[0];
    let mut wrong = bytes.clone();
    wrong[1][0] ^= 1;
    assert!(matches!(
        rebuild(&codec, &span, &refs, &wrong, &[0]),
        Err(ErasureError::RebuiltMismatch { position: 0, .. })
    ));
}

#[test]
fn malformed_layouts_are_rejected() {
    let params = RsParams::new(2, 3).unwrap();
    let chunks = chunks_of(&[4, 4, 4, 4]);
    let (refs, _) = encode_all(params, &chunks);
    assert!(stripes(params, &refs).is_ok());
    // Parity missing at the end.
    assert!(stripes(params, &refs[..5]).is_err());
    // Too many data refs in one stripe.
    let mut bad = refs.clone();
    bad.remove(2);
    assert!(stripes(params, &bad).is_err());
    // Parity first.
    assert!(stripes(params, &refs[2..]).is_err());
    // Wrong parity size.
    let mut bad = refs.clone();
    bad[2].size = 3;
    assert!(stripes(params, &bad).is_err());
    // Stripe indexes out of order.
    let mut bad = refs.clone();
    bad[5].role = ChunkRole::Parity { stripe_index: 7 };
    assert!(stripes(params, &bad).is_err());
}
