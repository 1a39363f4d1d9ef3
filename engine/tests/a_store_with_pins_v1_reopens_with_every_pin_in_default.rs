//! A store written before channels (pins in `pins_v1`, keyed by blob id alone, no
//! `channels_v1`) reopens with every pin in channel `default` — including a row that does not
//! decode, bytes unchanged — with the same reference counts, fsck clean apart from that row, and
//! `pins_v1` gone. The old layout is made from a real store by moving its rows back into
//! `pins_v1` and dropping `pins_v2` and `channels_v1` with redb directly (docs/FORMAT.md §3.4).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod gc_common;

use std::collections::BTreeMap;
use std::path::Path;

use gc_common::*;
use net_mesh_engine::codec::Hash;
use net_mesh_engine::fsck::{ProblemKind, ReadData};
use net_mesh_engine::index::{PIN_HEADER_LEN, pin_roots};
use net_mesh_engine::{DEFAULT_CHANNEL, Unpinned};
use redb::{ReadableDatabase, ReadableTable, TableDefinition, TableHandle};

const PINS_V1: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("pins_v1");
const PINS_V2: TableDefinition<(&str, &[u8; 32]), &[u8]> = TableDefinition::new("pins_v2");
const CHANNELS: TableDefinition<&str, &[u8]> = TableDefinition::new("channels_v1");

/// Rewrites the index to the layout before channels; returns the moved rows. The store must be
/// closed.
fn downgrade_to_pins_v1(dir: &Path) -> BTreeMap<Hash, Vec<u8>> {
    let db = redb::Database::open(dir.join("index.redb")).unwrap();
    let txn = db.begin_write().unwrap();
    let mut rows = BTreeMap::new();
    {
        let v2 = txn.open_table(PINS_V2).unwrap();
        for row in v2.iter().unwrap() {
            let (k, v) = row.unwrap();
            let (channel, id) = k.value();
            assert_eq!(channel, DEFAULT_CHANNEL);
            rows.insert(*id, v.value().to_vec());
        }
        let mut v1 = txn.open_table(PINS_V1).unwrap();
        for (id, bytes) in &rows {
            v1.insert(id, bytes.as_slice()).unwrap();
        }
    }
    assert!(txn.delete_table(PINS_V2).unwrap());
    assert!(txn.delete_table(CHANNELS).unwrap());
    txn.commit().unwrap();
    rows
}

fn table_names(dir: &Path) -> Vec<String> {
    let db = redb::Database::open(dir.join("index.redb")).unwrap();
    let txn = db.begin_read().unwrap();
    txn.list_tables()
        .unwrap()
        .map(|t| t.name().to_string())
        .collect()
}

fn pins_v2_rows(dir: &Path) -> BTreeMap<(String, Hash), Vec<u8>> {
    let db = redb::Database::open(dir.join("index.redb")).unwrap();
    let txn = db.begin_read().unwrap();
    let t = txn.open_table(PINS_V2).unwrap();
    t.iter()
        .unwrap()
        .map(|row| {
            let (k, v) = row.unwrap();
            let (channel, id) = k.value();
            ((channel.to_string(), *id), v.value().to_vec())
        })
        .collect()
}

#[test]
fn a_store_with_pins_v1_reopens_with_every_pin_in_default() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data_a = random_bytes(40_000, 1);
    let data_b = random_bytes(60_000, 2);
    let (a, b, c) = {
        let store = open(dir);
        let a = store.store_stream(&data_a[..], "a").unwrap();
        let b = store.store_stream_with_rs(&data_b[..], 3, 5, "b").unwrap();
        let c = store
            .store_stream(&random_bytes(30_000, 3)[..], "c")
            .unwrap();
        (a, b, c)
    };
    let mut legacy = downgrade_to_pins_v1(dir);
    assert_eq!(legacy.len(), 3);
    // One legacy row does not decode (its BlobRef magic damaged): it must move too.
    {
        let db = redb::Database::open(dir.join("index.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(PINS_V1).unwrap();
            let row = legacy.get_mut(&c.blob_id).unwrap();
            let name_len = u16::from_le_bytes([row[9], row[10]]) as usize;
            row[PIN_HEADER_LEN + name_len] ^= 0xff;
            t.insert(&c.blob_id, row.as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    let names = table_names(dir);
    assert!(names.contains(&"pins_v1".to_string()), "{names:?}");
    assert!(!names.contains(&"pins_v2".to_string()), "{names:?}");
    let roots: Vec<Hash> = [&a, &b, &c]
        .iter()
        .flat_map(|p| pin_roots(&p.blob_ref))
        .collect();
    let counts_before: Vec<Option<u64>> = roots.iter().map(|h| refcount(dir, h)).collect();

    let store = open(dir);
    let listing = store.pins().unwrap();
    let good: Vec<(Hash, String, String)> = listing
        .pins
        .iter()
        .map(|(id, p)| (*id, p.channel.clone(), p.name.clone()))
        .collect();
    let mut want = vec![
        (a.blob_id, DEFAULT_CHANNEL.to_string(), "a".to_string()),
        (b.blob_id, DEFAULT_CHANNEL.to_string(), "b".to_string()),
    ];
    want.sort();
    assert_eq!(good, want);
    assert_eq!(listing.bad.len(), 1);
    assert_eq!(listing.bad[0].id, c.blob_id);
    assert_eq!(listing.bad[0].channel, DEFAULT_CHANNEL);
    let channels = store.channels().unwrap();
    assert_eq!(channels.len(), 1);
    assert_eq!(channels[0].name, DEFAULT_CHANNEL);
    assert_eq!(channels[0].pins, 3);
    assert_eq!(fetch(&store, &b.blob_ref), data_b);
    drop(store);

    let names = table_names(dir);
    assert!(!names.contains(&"pins_v1".to_string()), "{names:?}");
    // Every row moved with its bytes unchanged, the undecodable one too.
    let moved: BTreeMap<Hash, Vec<u8>> = pins_v2_rows(dir)
        .into_iter()
        .map(|((channel, id), bytes)| {
            assert_eq!(channel, DEFAULT_CHANNEL);
            (id, bytes)
        })
        .collect();
    assert_eq!(moved, legacy);
    let counts_after: Vec<Option<u64>> = roots.iter().map(|h| refcount(dir, h)).collect();
    assert_eq!(counts_after, counts_before, "the migration changed a count");

    // fsck finds only the undecodable row, and the counts of what it pins, which it cannot
    // count; once it is unpinned and the counts it held are recomputed, fsck is clean.
    let report = fsck(dir, ReadData::All, false);
    let c_roots: Vec<String> = pin_roots(&c.blob_ref).iter().map(hex).collect();
    for p in &report.problems {
        match p.kind {
            ProblemKind::PinCorrupt => {}
            ProblemKind::RefcountMismatch => {
                assert!(
                    c_roots.contains(p.location.object.as_ref().unwrap()),
                    "{p:?}"
                )
            }
            _ if p.severity == net_mesh_engine::fsck::Severity::Info => {}
            _ => panic!("unexpected problem {p:?}"),
        }
    }
    assert_eq!(
        kinds(&report)
            .iter()
            .filter(|k| **k == ProblemKind::PinCorrupt)
            .count(),
        1
    );
    {
        let store = open(dir);
        assert_eq!(
            store.unpin(&c.blob_id).unwrap(),
            Unpinned::RemovedUndecodable
        );
    }
    fsck(dir, ReadData::None, true);
    let report = fsck(dir, ReadData::All, false);
    assert!(kinds(&report).is_empty(), "{:?}", report.problems);
    let store = open(dir);
    assert_eq!(fetch(&store, &a.blob_ref), data_a);
    assert_eq!(store.pins().unwrap().pins.len(), 2);
}
