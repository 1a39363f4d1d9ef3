//! A pin row whose channel `channels_v1` lacks (its row removed behind the store's back) is
//! reported by fsck as `channel_missing`; `fsck --repair` creates the channel, after which fsck
//! is clean and the pin lists in it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod gc_common;

use gc_common::*;
use net_mesh_engine::fsck::{ProblemKind, ReadData};
use redb::TableDefinition;

const CHANNELS: TableDefinition<&str, &[u8]> = TableDefinition::new("channels_v1");

#[test]
fn fsck_reports_a_pin_in_a_missing_channel_and_repair_creates_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let put = {
        let store = open(dir);
        store.create_channel("photos").unwrap();
        store
            .store_stream_in("photos", &random_bytes(30_000, 41)[..], "p")
            .unwrap()
    };
    {
        let db = redb::Database::open(dir.join("index.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        assert!(
            txn.open_table(CHANNELS)
                .unwrap()
                .remove("photos")
                .unwrap()
                .is_some()
        );
        txn.commit().unwrap();
    }
    let report = fsck(dir, ReadData::None, false);
    assert_eq!(kinds(&report), vec![ProblemKind::ChannelMissing]);
    assert_eq!(
        report.problems[0].location.path.as_deref(),
        Some("channels_v1/photos")
    );
    let repaired = fsck(dir, ReadData::None, true);
    assert!(
        repaired.repairs.iter().any(|r| r.contains("photos")),
        "{:?}",
        repaired.repairs
    );
    let report = fsck(dir, ReadData::All, false);
    assert!(kinds(&report).is_empty(), "{:?}", report.problems);
    let store = open(dir);
    let names: Vec<String> = store
        .channels()
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, vec!["default".to_string(), "photos".to_string()]);
    assert_eq!(store.pins_in("photos").unwrap().pins[0].0, put.blob_id);
}
