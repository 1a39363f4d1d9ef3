//! Chunks whose index entries are gone (lost objects, not corrupt ones) are rebuilt from the
//! stripe's other chunks: every combination of up to n − k missing chunks of a stripe, data and
//! parity, for 2+1 and 4+2; one more is `Unrecoverable` naming the stripe.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::*;
use net_mesh_engine::erasure::{RsParams, stripes};
use net_mesh_engine::{BlobError, BlobRef, ChunkingStrategy, Store, TreePolicy};

fn check(k: u8, n: u8) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Two full stripes and a short one; fixed chunks with a short last chunk (padding).
    let data = random_bytes(usize::from(k) * 2 * 1000 + 1500, u64::from(k));
    let chunking = ChunkingStrategy::Fixed { size: 1000 };
    let r = {
        let store = open(dir, chunking, TreePolicy::default());
        store
            .store_stream_with_rs(&data[..], k, n, "missing")
            .unwrap()
            .blob_ref
    };
    let BlobRef::Manifest { chunks, .. } = &r else {
        panic!("{r:?}")
    };
    let params = RsParams::new(k, n).unwrap();
    let spans = stripes(params, chunks).unwrap();
    assert_eq!(spans.len(), 3);
    assert_eq!(spans[2].data_count, 2, "short final stripe of 2 chunks");
    let p = params.parity_shards();
    for span in [spans[1], spans[2]] {
        let refs = &chunks[span.all_range()];
        for lost in 0..=p + 1 {
            for combo in combinations(span.total(), lost) {
                let hashes: Vec<_> = combo.iter().map(|&i| refs[i].hash).collect();
                let saved = remove_index_entries(dir, &hashes);
                assert_eq!(saved.len(), hashes.len());
                let store = Store::open(dir, config(chunking, TreePolicy::default())).unwrap();
                let mut out = Vec::new();
                let result = store.fetch(&r, &mut out);
                if lost <= p {
                    result.unwrap_or_else(|e| panic!("{k}+{n} missing {combo:?}: {e}"));
                    assert!(out == data, "{k}+{n} missing {combo:?}: wrong bytes");
                } else {
                    let err = result.unwrap_err();
                    assert!(
                        matches!(
                            err,
                            BlobError::Unrecoverable { stripe, lost: l, tolerated }
                                if stripe == span.stripe_index && l == p + 1 && tolerated == p
                        ),
                        "{k}+{n} missing {combo:?}: {err:?}"
                    );
                }
                drop(store);
                restore_index_entries(dir, &saved);
            }
        }
    }
}

#[test]
fn two_plus_one_rebuilds_any_missing_chunk() {
    check(2, 3);
}

#[test]
fn four_plus_two_rebuilds_any_two_missing_chunks() {
    check(4, 6);
}
