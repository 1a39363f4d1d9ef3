//! Model test: random appends (random sizes and kinds), syncs and reopens with the committed
//! lengths; every record appended before a sync reads back identically, scans frame exactly the
//! committed records, and unsynced records are gone.
mod common;

use std::collections::BTreeMap;

use common::*;
use net_mesh_segments::{RecordKind, RecordLoc, SegmentConfig, Segments};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Append { kind: u8, len: usize, seed: u64 },
    Sync,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1u8..=3, prop_oneof![0usize..64, 64usize..1500, 1500usize..5000], any::<u64>())
            .prop_map(|(kind, len, seed)| Op::Append { kind, len, seed }),
        2 => Just(Op::Sync),
        1 => Just(Op::Reopen),
    ]
}

fn config() -> SegmentConfig {
    SegmentConfig {
        roll_size: 4096,
        max_payload: 8192,
        ..SegmentConfig::default()
    }
}

type Rec = (RecordLoc, RecordKind, [u8; 32], Vec<u8>);

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn synced_records_read_back_after_reopen(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let mut committed: BTreeMap<u64, u64> = BTreeMap::new();
        let mut segs = Segments::open(dir.path(), config(), &committed).unwrap();
        let mut durable: Vec<Rec> = Vec::new();
        let mut pending: Vec<Rec> = Vec::new();
        for op in ops {
            match op {
                Op::Append { kind, len, seed } => {
                    let kind = RecordKind::try_from(kind).unwrap();
                    let data = payload(seed, len);
                    let id = id_of(&data);
                    let loc = segs.append(kind, &id, &data).unwrap();
                    prop_assert_eq!(loc.payload_len as usize, len);
                    pending.push((loc, kind, id, data));
                }
                Op::Sync => {
                    commit(&mut committed, segs.sync().unwrap());
                    durable.append(&mut pending);
                }
                Op::Reopen => {
                    drop(segs);
                    segs = Segments::open(dir.path(), config(), &committed).unwrap();
                    pending.clear();
                }
            }
            for (loc, kind, id, data) in durable.iter().chain(pending.iter()) {
                prop_assert_eq!(&segs.read(*loc, *kind, id).unwrap(), data);
            }
        }
        drop(segs);
        let segs = Segments::open(dir.path(), config(), &committed).unwrap();
        for (loc, kind, id, data) in &durable {
            prop_assert_eq!(&segs.read(*loc, *kind, id).unwrap(), data);
            prop_assert!(loc.offset + 52 + u64::from(loc.payload_len) <= committed[&loc.segment]);
        }
        for (&segment, &len) in &committed {
            let scanned: Vec<_> = segs.scan(segment, len).unwrap().into_iter().map(|i| i.unwrap()).collect();
            let expected: Vec<_> = durable
                .iter()
                .filter(|(l, ..)| l.segment == segment)
                .map(|(l, k, id, _)| (*l, *k, *id))
                .collect();
            prop_assert_eq!(scanned, expected);
        }
    }
}
