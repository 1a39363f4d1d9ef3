//! A pin row that does not decode can be removed: its id prefix resolves to an error naming
//! the row's full id, the full id names the row, and unpinning it removes the row without
//! touching any count (the references it held are unknown) and says so. GC, refused while the
//! row existed, runs again and keeps what the row held; fsck reports the counts as too high,
//! `fsck --repair` recomputes them, fsck is then clean and the next GC reclaims the blob.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod gc_common;

use std::path::Path;

use gc_common::*;
use net_mesh_engine::codec::Hash;
use net_mesh_engine::fsck::{ProblemKind, ReadData};
use net_mesh_engine::index::{PIN_HEADER_LEN, pin_roots};
use net_mesh_engine::{StoreError, Unpinned};
use redb::{ReadableTable, TableDefinition};

const PINS: TableDefinition<(&str, &[u8; 32]), &[u8]> = TableDefinition::new("pins_v2");

/// Damages the BlobRef bytes (its magic) of the pin row `id` in channel `default`. The store must be closed.
fn damage_pin_row(dir: &Path, id: &Hash) {
    let db = redb::Database::open(dir.join("index.redb")).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut t = txn.open_table(PINS).unwrap();
        let mut row = t.get(("default", id)).unwrap().unwrap().value().to_vec();
        let name_len = u16::from_le_bytes([row[9], row[10]]) as usize;
        row[PIN_HEADER_LEN + name_len] ^= 0xff;
        t.insert(("default", id), row.as_slice()).unwrap();
    }
    txn.commit().unwrap();
}

#[test]
fn unpinning_an_undecodable_pin_row_lets_gc_run_and_fsck_repair_settle_its_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data_a = random_bytes(40_000, 1);
    let data_b = random_bytes(60_000, 2);
    let (a, b) = {
        let store = open(dir);
        let a = store.store_stream(&data_a[..], "a").unwrap();
        let b = store.store_stream_with_rs(&data_b[..], 3, 5, "b").unwrap();
        (a, b)
    };
    damage_pin_row(dir, &b.blob_id);
    let b_roots = pin_roots(&b.blob_ref);
    let b_counts: Vec<u64> = b_roots.iter().map(|h| refcount(dir, h).unwrap()).collect();
    assert!(b_counts.iter().all(|&n| n >= 1));

    let store = open(dir);
    assert!(
        store.gc(&gc_now()).is_err(),
        "gc ran beside an undecodable pin"
    );
    let full = hex(&b.blob_id);
    let e = store.find_pin_id(&full[..8]).unwrap_err();
    assert!(
        matches!(e, StoreError::PinUndecodable { id, .. } if id == b.blob_id),
        "{e:?}"
    );
    assert!(e.to_string().contains(&full), "{e}");
    assert_eq!(store.find_pin_id(&full).unwrap(), b.blob_id);
    assert_eq!(store.find_pin_id(&hex(&a.blob_id)[..8]).unwrap(), a.blob_id);

    assert_eq!(
        store.unpin(&b.blob_id).unwrap(),
        Unpinned::RemovedUndecodable
    );
    // The handle stays usable and the row is gone.
    assert_eq!(store.unpin(&b.blob_id).unwrap(), Unpinned::NotPinned);
    let listing = store.pins().unwrap();
    assert!(listing.bad.is_empty(), "{:?}", listing.bad);
    let ids: Vec<Hash> = listing.pins.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, vec![a.blob_id]);
    assert!(matches!(
        store.find_pin_id(&full),
        Err(StoreError::NotPinned(_))
    ));

    // GC runs again; the counts the row held were left as they were, so nothing of b goes.
    store.gc(&gc_now()).unwrap();
    assert_eq!(fetch(&store, &b.blob_ref), data_b);
    assert_eq!(fetch(&store, &a.blob_ref), data_a);
    drop(store);
    for (root, before) in b_roots.iter().zip(&b_counts) {
        assert_eq!(refcount(dir, root), Some(*before), "a count was touched");
    }

    // fsck sees counts too high (a leak), no pin problem; repair recomputes them.
    let report = fsck(dir, ReadData::All, false);
    let found = kinds(&report);
    assert!(found.contains(&ProblemKind::RefcountMismatch), "{found:?}");
    assert!(!found.contains(&ProblemKind::PinCorrupt), "{found:?}");
    assert!(
        found.iter().all(|k| *k == ProblemKind::RefcountMismatch),
        "{:#?}",
        report.problems
    );
    fsck(dir, ReadData::None, true);
    let report = fsck(dir, ReadData::All, false);
    assert!(kinds(&report).is_empty(), "{:#?}", report.problems);
    for root in &b_roots {
        assert_eq!(refcount(dir, root), Some(0));
    }

    // The next GC reclaims what only the removed row held.
    let store = open(dir);
    let gc = store.gc(&gc_now()).unwrap();
    assert!(gc.objects_freed >= b_roots.len() as u64, "{gc:?}");
    assert_eq!(fetch(&store, &a.blob_ref), data_a);
    drop(store);
    for root in &b_roots {
        assert_eq!(refcount(dir, root), None, "still indexed");
    }
    let report = fsck(dir, ReadData::All, false);
    assert!(kinds(&report).is_empty(), "{:#?}", report.problems);
}
