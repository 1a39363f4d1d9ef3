//! A resumable upload whose pin name is longer than `MAX_PIN_NAME` bytes is refused at begin,
//! with the engine's typed error, before anything is written: no checkpoint, no pin, and the
//! store stays writable.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::*;
use net_mesh_engine::index::{MAX_PIN_NAME, PinNameTooLong};
use net_mesh_engine::{StoreError, TreePolicy};
use net_mesh_staging::{StagingConfig, StagingError, begin_streaming_store};

#[test]
fn an_over_long_pin_name_is_refused_at_begin() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path(), SMALL_CDC, TreePolicy::default());
    let long = "é".repeat(MAX_PIN_NAME / 2 + 1);
    let e = begin_streaming_store(
        &store,
        StagingConfig {
            staging_id: Some("long-name".into()),
            pin_name: long,
            pin_name_given: false,
            ..StagingConfig::for_store(&store)
        },
    )
    .unwrap_err();
    assert!(
        matches!(
            &e,
            StagingError::Store(StoreError::PinName(PinNameTooLong { len: 1026 }))
        ),
        "{e:?}"
    );
    assert!(net_mesh_staging::list_staging(&store).unwrap().is_empty());
    assert!(store.pins().unwrap().pins.is_empty());
    store.store(b"still writable").unwrap();
}
