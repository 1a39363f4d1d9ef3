//! `Store::find_pin_in` reads only the rows whose ids start with the prefix asked for: every
//! prefix of 4 to 64 hex digits (odd lengths, upper case too) of every pin finds that pin, or
//! is ambiguous exactly when another pin's id starts with it; a prefix no id starts with, one
//! too short, too long or not hex is not pinned; other channels' pins are never found.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::HashMap;

use net_mesh_engine::codec::chunk_id;
use net_mesh_engine::error::hex;
use net_mesh_engine::{Store, StoreConfig, StoreError};

#[test]
fn a_pin_is_found_by_any_prefix_of_its_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
    store.create_channel("other").unwrap();
    // 300 pins, plus the inputs among the next 20,000 whose ids share their first 5 digits
    // with another's (found without storing: a small blob's ref is its chunk's id).
    let id_of = |data: &[u8]| {
        hex(&net_mesh_engine::index::blob_id(
            &net_mesh_engine::BlobRef::Small {
                hash: chunk_id(data),
                size: data.len() as u64,
            },
        ))
    };
    let mut by_prefix: HashMap<String, Vec<u32>> = HashMap::new();
    for i in 300..20_300u32 {
        by_prefix
            .entry(id_of(&i.to_le_bytes())[..5].to_string())
            .or_default()
            .push(i);
    }
    let shared: Vec<u32> = by_prefix
        .into_values()
        .filter(|v| v.len() > 1)
        .flatten()
        .collect();
    assert!(shared.len() >= 4, "{} inputs share a prefix", shared.len());
    let mut ids = Vec::new();
    for i in (0..300u32).chain(shared) {
        let stored = store.store(&i.to_le_bytes()).unwrap();
        let id = hex(&net_mesh_engine::index::blob_id(&stored.blob_ref));
        assert_eq!(id, id_of(&i.to_le_bytes()));
        ids.push(id);
    }
    let other = store.store(b"only in another channel").unwrap().blob_ref;
    store
        .unpin(&net_mesh_engine::index::blob_id(&other))
        .unwrap();
    store.pin_in("other", &other, "x").unwrap();
    let other_id = hex(&net_mesh_engine::index::blob_id(&other));

    let mut ambiguous = 0;
    for id in &ids {
        for len in 4..=64 {
            let prefix = &id[..len];
            let sharing = ids.iter().filter(|o| o.starts_with(prefix)).count();
            let asked = if len % 3 == 0 {
                prefix.to_ascii_uppercase()
            } else {
                prefix.to_string()
            };
            match store.find_pin_in("default", &asked) {
                Ok((found, _)) => {
                    assert_eq!(sharing, 1, "{prefix}");
                    assert_eq!(&hex(&found), id);
                }
                Err(StoreError::Ambiguous(_)) => {
                    assert!(sharing > 1, "{prefix}");
                    ambiguous += 1;
                }
                Err(e) => panic!("{prefix}: {e}"),
            }
        }
    }
    assert!(
        ambiguous > 300,
        "{ambiguous} ambiguous prefixes: the test shares too few"
    );

    for missing in [
        &other_id[..6],
        &other_id[..],
        "abc",
        "zzzz",
        &"0".repeat(65),
    ] {
        let absent = ids
            .iter()
            .all(|o| !o.starts_with(&missing.to_ascii_lowercase()));
        let malformed = missing.len() < 4
            || missing.len() > 64
            || !missing.bytes().all(|b| b.is_ascii_hexdigit());
        if malformed {
            assert!(
                matches!(
                    store.find_pin_in("default", missing),
                    Err(StoreError::BadPrefix(_))
                ),
                "{missing}"
            );
        } else if absent {
            assert!(
                matches!(
                    store.find_pin_in("default", missing),
                    Err(StoreError::NotPinned(_))
                ),
                "{missing}"
            );
        }
    }
    assert_eq!(
        hex(&store.find_pin_in("other", &other_id[..10]).unwrap().0),
        other_id
    );
}
