//! Model test: for random (k, n), data, tree shape, losses (up to n − k per stripe, as missing
//! bytes or corrupt records) and ranges, every range read equals the model slice; and one more
//! loss in a random stripe makes a read that covers it fail with that stripe's index.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::*;
use net_mesh_engine::erasure::{RsParams, stripes};
use net_mesh_engine::{BlobError, TreePolicy};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]
    #[test]
    fn ranges_read_back_exact_with_up_to_parity_losses_per_stripe(
        seed in any::<u64>(),
        k in 2u8..8,
        p in 1u8..4,
        len in 1usize..120_000,
        leaf_fanout in 1usize..20,
        picks in proptest::collection::vec(any::<u32>(), 64),
        cuts in proptest::collection::vec((any::<u64>(), any::<u64>()), 8),
    ) {
        let n = k + p;
        let tmp = tempfile::tempdir().unwrap();
        let tree = TreePolicy { leaf_fanout, internal_fanout: 2, manifest_max_refs: net_mesh_engine::tree::DEFAULT_MANIFEST_MAX_REFS };
        let store = open(tmp.path(), SMALL_CDC, tree);
        let data = random_bytes(len, seed);
        let r = store.store_stream_with_rs(&data[..], k, n, "").unwrap().blob_ref;
        let params = RsParams::new(k, n).unwrap();
        let mut pick = picks.iter().cycle();
        let mut all = Vec::new();
        for list in chunk_lists(&store, &r) {
            for s in stripes(params, &list).unwrap() {
                let refs = list[s.all_range()].to_vec();
                // Lose a random number (<= p) of distinct positions of this stripe.
                let lose = *pick.next().unwrap() as usize % (usize::from(p) + 1);
                let mut positions: Vec<usize> = (0..refs.len()).collect();
                for i in 0..lose {
                    let j = i + *pick.next().unwrap() as usize % (positions.len() - i);
                    positions.swap(i, j);
                }
                for &i in &positions[..lose] {
                    toggle_payload_byte(&store, &refs[i].hash, 0);
                }
                all.push((s, refs, positions[lose..].to_vec()));
            }
        }
        let size = data.len() as u64;
        for (a, b) in cuts {
            let (a, b) = (a % (size + 1), b % (size + 1));
            let (a, b) = (a.min(b), a.max(b));
            let mut out = Vec::new();
            store.fetch_range(&r, a..b, &mut out).unwrap();
            prop_assert!(out[..] == data[a as usize..b as usize], "range {}..{}", a, b);
        }
        prop_assert!(fetch_all(&store, &r) == data);
        // One loss beyond the parity in a random stripe.
        let (s, refs, intact) = &all[*pick.next().unwrap() as usize % all.len()];
        let lost_now = refs.len() - intact.len();
        for &i in &intact[..=usize::from(p) - lost_now] {
            toggle_payload_byte(&store, &refs[i].hash, 0);
        }
        let err = store.fetch(&r, &mut Vec::new()).unwrap_err();
        prop_assert!(
            matches!(err, BlobError::Unrecoverable { stripe, .. } if stripe == s.stripe_index),
            "{:?}", err
        );
    }
}
