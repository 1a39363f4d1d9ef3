//! Random sequences of put / unpin / abandoned upload / reopen, checked against an in-memory
//! model: every pinned blob reads back exactly, the pin set matches, and dedup never stores a
//! chunk twice.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::collections::BTreeMap;

use common::*;
use net_mesh_engine::{BlobRef, Store, StoreConfig, TreePolicy};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// Put `len` bytes derived from `seed` (small seeds repeat, so puts share content).
    Put {
        seed: u8,
        len: u32,
    },
    /// Unpin the i-th pinned blob (modulo the count).
    Unpin(usize),
    /// Write some bytes to an upload, then drop it without finishing (a crashed writer).
    Abandon {
        seed: u8,
        len: u32,
    },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..6, 0u32..120_000).prop_map(|(seed, len)| Op::Put { seed, len }),
        2 => any::<usize>().prop_map(Op::Unpin),
        1 => (0u8..6, 0u32..120_000).prop_map(|(seed, len)| Op::Abandon { seed, len }),
        1 => Just(Op::Reopen),
    ]
}

fn config() -> StoreConfig {
    StoreConfig {
        chunking: SMALL_CDC,
        tree: TreePolicy {
            leaf_fanout: 3,
            internal_fanout: 2,
            manifest_max_refs: net_mesh_engine::tree::DEFAULT_MANIFEST_MAX_REFS,
        },
        // Small batches and segments so commits and rolls happen inside one put.
        batch_bytes: 20_000,
        segment_roll_size: 100_000,
    }
}

fn data(seed: u8, len: u32) -> Vec<u8> {
    // Content shared across seeds: the first half depends on len only.
    let mut d = random_bytes(len as usize / 2, u64::from(len));
    d.extend(random_bytes(len as usize - d.len(), u64::from(seed) + 1000));
    d
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]
    #[test]
    fn engine_matches_the_model(ops in proptest::collection::vec(op(), 1..25)) {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = Store::open(tmp.path(), config()).unwrap();
        // Model: blob id → (ref, bytes).
        let mut model: BTreeMap<[u8; 32], (BlobRef, Vec<u8>)> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Put { seed, len } => {
                    let bytes = data(seed, len);
                    let out = store.store_stream(bytes.as_slice(), "m").unwrap();
                    let again = store.store(&bytes).unwrap();
                    prop_assert_eq!(&again.blob_ref, &out.blob_ref);
                    prop_assert_eq!(again.new_bytes, 0, "a re-put must store nothing new");
                    model.insert(out.blob_id, (out.blob_ref, bytes));
                }
                Op::Unpin(i) => {
                    if model.is_empty() { continue; }
                    let id = *model.keys().nth(i % model.len()).unwrap();
                    prop_assert_eq!(store.unpin(&id).unwrap(), net_mesh_engine::Unpinned::Removed);
                    model.remove(&id);
                }
                Op::Abandon { seed, len } => {
                    let mut w = store.writer().unwrap();
                    w.write(&data(seed, len)).unwrap();
                    drop(w);
                }
                Op::Reopen => {
                    drop(store);
                    store = Store::open(tmp.path(), config()).unwrap();
                }
            }
            let pins: Vec<[u8; 32]> = store.pins().unwrap().pins.into_iter().map(|(id, _)| id).collect();
            let expected: Vec<[u8; 32]> = model.keys().copied().collect();
            prop_assert_eq!(pins, expected);
        }
        for (r, bytes) in model.values() {
            prop_assert_eq!(&fetch_all(&store, r), bytes);
        }
    }
}
