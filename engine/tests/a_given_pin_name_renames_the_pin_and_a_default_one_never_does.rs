//! A pin request carries whether the user gave its name ([`PinName`]): a given name renames
//! the blob's pin when the channel pins it already (keeping its creation time and every count),
//! a default one (a file name, the blob id) names a new pin only and never replaces the name a
//! pin has. The same through every pinning path: a streamed put, a writer's finish, an
//! erasure-coded put, and a pin of a stored ref (a pull's). The pin of the same blob in
//! another channel keeps its own name. fsck stays clean.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod gc_common;

use gc_common::*;
use net_mesh_engine::DEFAULT_CHANNEL;
use net_mesh_engine::fsck::ReadData;
use net_mesh_engine::index::PinName;

#[test]
fn a_given_pin_name_renames_the_pin_and_a_default_one_never_does() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = random_bytes(50_000, 31);
    let store = open(dir);
    assert!(store.create_channel("photos").unwrap());
    let name = |channel: &str, blob_ref| store.pin_name_in(channel, blob_ref).unwrap();

    let put = store
        .store_stream_named_in(DEFAULT_CHANNEL, &data[..], &PinName::given("photo"))
        .unwrap();
    let blob = &put.blob_ref;
    assert_eq!(name(DEFAULT_CHANNEL, blob).as_deref(), Some("photo"));
    let created = store
        .reader()
        .unwrap()
        .pin(&put.blob_id)
        .unwrap()
        .unwrap()
        .created_unix_ms;
    store
        .pin_named_in("photos", blob, &PinName::default_name("in-photos"))
        .unwrap();

    // A re-put without a name the user gave keeps the name.
    store
        .store_stream_named_in(
            DEFAULT_CHANNEL,
            &data[..],
            &PinName::default_name("file.bin"),
        )
        .unwrap();
    assert_eq!(name(DEFAULT_CHANNEL, blob).as_deref(), Some("photo"));
    // So do the old API (a default name) and a pull's pin without a given name.
    store.store_stream(&data[..], "other.bin").unwrap();
    store
        .pin_named_in(DEFAULT_CHANNEL, blob, &PinName::default_name("0123abcd"))
        .unwrap();
    assert_eq!(name(DEFAULT_CHANNEL, blob).as_deref(), Some("photo"));

    // A given name renames: streamed put, writer, pin of a stored ref.
    store
        .store_stream_named_in(DEFAULT_CHANNEL, &data[..], &PinName::given("renamed"))
        .unwrap();
    assert_eq!(name(DEFAULT_CHANNEL, blob).as_deref(), Some("renamed"));
    let mut writer = store.writer().unwrap();
    writer.write(&data).unwrap();
    writer
        .finish_named_in(DEFAULT_CHANNEL, &PinName::given("by-writer"))
        .unwrap();
    assert_eq!(name(DEFAULT_CHANNEL, blob).as_deref(), Some("by-writer"));
    store
        .pin_named_in(DEFAULT_CHANNEL, blob, &PinName::given("by-pull"))
        .unwrap();
    assert_eq!(name(DEFAULT_CHANNEL, blob).as_deref(), Some("by-pull"));
    let pin = store.reader().unwrap().pin(&put.blob_id).unwrap().unwrap();
    assert_eq!(
        pin.created_unix_ms, created,
        "a rename keeps the creation time"
    );

    // The other channel's pin keeps its own name.
    assert_eq!(name("photos", blob).as_deref(), Some("in-photos"));

    // Erasure-coded: the same rules.
    let rs = store
        .store_stream_with_rs_named_in(DEFAULT_CHANNEL, &data[..], 2, 3, &PinName::given("rs"))
        .unwrap();
    store
        .store_stream_with_rs_named_in(
            DEFAULT_CHANNEL,
            &data[..],
            2,
            3,
            &PinName::default_name("rs.bin"),
        )
        .unwrap();
    assert_eq!(name(DEFAULT_CHANNEL, &rs.blob_ref).as_deref(), Some("rs"));
    store
        .store_stream_with_rs_named_in(DEFAULT_CHANNEL, &data[..], 2, 3, &PinName::given("rs2"))
        .unwrap();
    assert_eq!(name(DEFAULT_CHANNEL, &rs.blob_ref).as_deref(), Some("rs2"));

    // One pin row per (channel, blob), each counted once.
    let channels = store.channels().unwrap();
    let counts: Vec<(String, u64)> = channels.iter().map(|c| (c.name.clone(), c.pins)).collect();
    assert_eq!(
        counts,
        vec![(DEFAULT_CHANNEL.to_string(), 2), ("photos".to_string(), 1)]
    );
    drop(store);
    let report = fsck(dir, ReadData::All, false);
    assert!(kinds(&report).is_empty(), "{:?}", report.problems);
}
