//! One pin row that does not decode never hides the others: `Store::pins` lists every good row
//! and reports the bad one apart; a row an older build wrote with a name cut inside a UTF-8
//! character still decodes; GC refuses to run rather than guess what the bad row pins; fsck
//! reports it and its repair never lowers a count the row may hold.
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
use net_mesh_engine::index::{MAX_PIN_NAME, PIN_HEADER_LEN, pin_roots};
use net_mesh_engine::{BlobRef, Classify, ErrorClass, StoreError};
use redb::{ReadableTable, TableDefinition};

const PINS: TableDefinition<(&str, &[u8; 32]), &[u8]> = TableDefinition::new("pins_v2");

/// Rewrites the pin row `id` of channel `default` with `edit`. The store must be closed.
fn edit_pin_row(dir: &Path, id: &Hash, edit: impl FnOnce(Vec<u8>) -> Vec<u8>) {
    let db = redb::Database::open(dir.join("index.redb")).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut t = txn.open_table(PINS).unwrap();
        let row = t.get(("default", id)).unwrap().unwrap().value().to_vec();
        t.insert(("default", id), edit(row).as_slice()).unwrap();
    }
    txn.commit().unwrap();
}

/// The row an older build wrote for an over-long name: the name cut at `MAX_PIN_NAME` bytes in
/// the middle of a two-byte character.
fn legacy_cut_name(row: Vec<u8>) -> Vec<u8> {
    let name_len = u16::from_le_bytes([row[9], row[10]]) as usize;
    let ref_bytes = row[PIN_HEADER_LEN + name_len..].to_vec();
    let mut name = vec![b'a'; MAX_PIN_NAME - 1];
    name.push("é".as_bytes()[0]);
    let mut out = row[..9].to_vec();
    out.extend_from_slice(&(MAX_PIN_NAME as u16).to_le_bytes());
    out.extend_from_slice(&name);
    out.extend_from_slice(&ref_bytes);
    out
}

/// Damages the BlobRef bytes of a row (its magic).
fn damaged_ref(mut row: Vec<u8>) -> Vec<u8> {
    let name_len = u16::from_le_bytes([row[9], row[10]]) as usize;
    row[PIN_HEADER_LEN + name_len] ^= 0xff;
    row
}

#[test]
fn a_bad_pin_row_is_reported_and_never_lets_gc_or_fsck_lose_what_it_may_pin() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (a, b, c, data_b) = {
        let store = open(dir);
        let a = store
            .store_stream(&random_bytes(40_000, 1)[..], "a")
            .unwrap();
        let data_b = random_bytes(60_000, 2);
        let b = store.store_stream_with_rs(&data_b[..], 3, 5, "b").unwrap();
        let c = store
            .store_stream(&random_bytes(30_000, 3)[..], "c")
            .unwrap();
        (a, b, c, data_b)
    };
    edit_pin_row(dir, &a.blob_id, legacy_cut_name);
    edit_pin_row(dir, &b.blob_id, damaged_ref);
    let b_roots = pin_roots(&b.blob_ref);
    let b_counts: Vec<u64> = b_roots.iter().map(|h| refcount(dir, h).unwrap()).collect();
    assert!(b_counts.iter().all(|&n| n >= 1));

    let store = open(dir);
    let listing = store.pins().unwrap();
    let good: Vec<(Hash, String)> = listing
        .pins
        .iter()
        .map(|(id, p)| (*id, p.name.clone()))
        .collect();
    let mut want = vec![
        (a.blob_id, "a".repeat(MAX_PIN_NAME - 1)),
        (c.blob_id, "c".into()),
    ];
    want.sort();
    assert_eq!(good, want, "every good row, the legacy one recovered");
    assert_eq!(listing.bad.len(), 1);
    assert_eq!(listing.bad[0].id, b.blob_id);
    assert!(listing.bad[0].error.class() == ErrorClass::Integrity);

    // Lookup by id prefix: the good ones resolve, the bad one names its corruption and the
    // row's full id.
    assert_eq!(store.find_pin(&hex(&c.blob_id)[..8]).unwrap().0, c.blob_id);
    let e = store.find_pin(&hex(&b.blob_id)[..8]).unwrap_err();
    assert!(
        matches!(e, StoreError::PinUndecodable { id, .. } if id == b.blob_id),
        "{e:?}"
    );
    assert_eq!(e.class(), ErrorClass::Integrity);
    assert!(e.to_string().contains(&hex(&b.blob_id)), "{e}");

    // GC's stripe guard needs every pinned blob: it refuses, and deletes nothing.
    assert!(store.gc(&gc_now()).is_err());
    let parsed = BlobRef::from_text(&b.blob_ref.to_text()).unwrap();
    assert_eq!(fetch(&store, &parsed), data_b);
    drop(store);

    // fsck reports the row; repair raises counts at most, never lowers what the row holds.
    let report = fsck(dir, ReadData::None, false);
    let pin_problems: Vec<_> = report
        .problems
        .iter()
        .filter(|p| p.kind == ProblemKind::PinCorrupt)
        .collect();
    assert_eq!(pin_problems.len(), 1, "{:?}", report.problems);
    assert_eq!(
        pin_problems[0].location.path.as_deref(),
        Some(format!("pins_v2/default/{}", hex(&b.blob_id)).as_str())
    );
    let repaired = fsck(dir, ReadData::None, true);
    assert!(kinds(&repaired).contains(&ProblemKind::PinCorrupt));
    for (root, before) in b_roots.iter().zip(&b_counts) {
        assert!(
            refcount(dir, root).unwrap() >= *before,
            "count of a root lowered"
        );
    }
    let store = open(dir);
    assert!(store.gc(&gc_now()).is_err());
    assert_eq!(fetch(&store, &parsed), data_b);
}
