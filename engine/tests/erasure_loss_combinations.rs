//! For several (k, n): corrupting EVERY combination of up to n − k chunks of a stripe (data and
//! parity alike) still reads back the exact bytes, whole and by range; n − k + 1 corrupt chunks
//! give `BlobError::Unrecoverable` naming the stripe.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::*;
use net_mesh_engine::erasure::{RsParams, StripeSpan, stripes};
use net_mesh_engine::{BlobError, BlobRef, ChunkRef, Store, TreePolicy};

/// Stores a CDC blob erasure-coded k+n whose last stripe is short; returns its bytes and ref.
fn put_with_short_last_stripe(store: &Store, k: u8, n: u8, seed: u64) -> (Vec<u8>, BlobRef) {
    let params = RsParams::new(k, n).unwrap();
    for extra in 0..64u64 {
        let len = (usize::from(k) * 2 + 1) * 4096 + extra as usize * 1500;
        let data = random_bytes(len, seed + extra);
        let out = store
            .store_stream_with_rs(&data[..], k, n, "combo")
            .unwrap();
        let BlobRef::Manifest { ref chunks, .. } = out.blob_ref else {
            panic!("expected a manifest, got {:?}", out.blob_ref)
        };
        let spans = stripes(params, chunks).unwrap();
        if spans.len() >= 2 && spans.last().unwrap().data_count < usize::from(k) {
            return (data, out.blob_ref);
        }
    }
    panic!("no input gave a short final stripe")
}

/// Blob byte range of each stripe.
fn stripe_ranges(chunks: &[ChunkRef], spans: &[StripeSpan]) -> Vec<std::ops::Range<u64>> {
    let mut start = 0u64;
    spans
        .iter()
        .map(|s| {
            let len: u64 = chunks[s.data_range()]
                .iter()
                .map(|c| u64::from(c.size))
                .sum();
            let r = start..start + len;
            start += len;
            r
        })
        .collect()
}

fn check_all_combinations(k: u8, n: u8, seed: u64) {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path(), SMALL_CDC, TreePolicy::default());
    let (data, r) = put_with_short_last_stripe(&store, k, n, seed);
    let BlobRef::Manifest { chunks, .. } = &r else {
        unreachable!()
    };
    let params = RsParams::new(k, n).unwrap();
    let spans = stripes(params, chunks).unwrap();
    let ranges = stripe_ranges(chunks, &spans);
    let p = params.parity_shards();
    // The first stripe (full, padded: CDC sizes differ) and the short last one.
    for which in [0, spans.len() - 1] {
        let span = spans[which];
        let refs = &chunks[span.all_range()];
        let range = ranges[which].clone();
        let toggle = |positions: &[usize]| {
            for &i in positions {
                let c = &refs[i];
                toggle_payload_byte(&store, &c.hash, (i as u64 * 7) % u64::from(c.size));
            }
        };
        for lost in 0..=p {
            for combo in combinations(span.total(), lost) {
                toggle(&combo);
                let mut whole = Vec::new();
                store
                    .fetch(&r, &mut whole)
                    .unwrap_or_else(|e| panic!("{k}+{n} stripe {which} lost {combo:?}: {e}"));
                assert!(
                    whole == data,
                    "{k}+{n} stripe {which} lost {combo:?}: wrong bytes"
                );
                let mut part = Vec::new();
                store.fetch_range(&r, range.clone(), &mut part).unwrap();
                assert!(
                    part[..] == data[range.start as usize..range.end as usize],
                    "{k}+{n} stripe {which} lost {combo:?}: wrong range bytes"
                );
                toggle(&combo);
            }
        }
        for combo in combinations(span.total(), p + 1) {
            toggle(&combo);
            let mut part = Vec::new();
            let err = store.fetch_range(&r, range.clone(), &mut part).unwrap_err();
            assert!(
                matches!(
                    err,
                    BlobError::Unrecoverable { stripe, lost, tolerated }
                        if stripe == span.stripe_index && lost == p + 1 && tolerated == p
                ),
                "{k}+{n} stripe {which} lost {combo:?}: {err:?}"
            );
            // What reached the sink is verified: the range's chunks before the first lost
            // one (each written as it is read and verified), never a rebuilt or corrupt byte.
            assert!(
                part.len() < (range.end - range.start) as usize
                    && part[..] == data[range.start as usize..range.start as usize + part.len()],
                "no unverified byte reaches the sink"
            );
            let first_lost = combo.iter().copied().min().unwrap();
            let verified: u64 = refs[..first_lost.min(span.data_count)]
                .iter()
                .map(|c| u64::from(c.size))
                .sum();
            assert_eq!(part.len() as u64, verified, "{k}+{n} lost {combo:?}");
            assert!(err.is_integrity());
            toggle(&combo);
        }
    }
    // Everything toggled back: the blob is whole again.
    assert!(fetch_all(&store, &r) == data);
}

#[test]
fn two_plus_one_survives_every_single_loss() {
    check_all_combinations(2, 3, 1);
}

#[test]
fn four_plus_two_survives_every_double_loss() {
    check_all_combinations(4, 6, 2);
}

#[test]
fn ten_plus_four_survives_every_quadruple_loss() {
    check_all_combinations(10, 14, 3);
}

#[test]
fn three_plus_five_survives_losing_more_shards_than_it_has_data() {
    check_all_combinations(3, 8, 4);
}
