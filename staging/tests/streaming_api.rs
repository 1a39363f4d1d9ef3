//! The public staging API end to end: begin → append (any sizes) → finalize gives the plain
//! upload's ref; a dropped handle resumes from its checkpoint; list shows live uploads; abort
//! and release_abandoned remove them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::time::Duration;

use net_mesh_engine::{ChunkingStrategy, Store, StoreConfig, TreePolicy};
use net_mesh_staging::*;

fn store(dir: &std::path::Path) -> Store {
    Store::open(
        dir,
        StoreConfig {
            chunking: ChunkingStrategy::Cdc {
                avg: 4096,
                min: 1024,
                max: 16384,
            },
            tree: TreePolicy {
                leaf_fanout: 3,
                internal_fanout: 2,
                manifest_max_refs: net_mesh_engine::tree::DEFAULT_MANIFEST_MAX_REFS,
            },
            ..StoreConfig::default()
        },
    )
    .unwrap()
}

fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn config(s: &Store, id: Option<&str>) -> StagingConfig {
    StagingConfig {
        staging_id: id.map(str::to_string),
        pin_name: "api".into(),
        cadence: CheckpointCadence {
            interval_bytes: 20_000,
            ..CheckpointCadence::default()
        },
        ..StagingConfig::for_store(s)
    }
}

#[test]
fn begin_append_finalize_equals_a_plain_upload() {
    let data = bytes(250_000, 1);
    let tmp = tempfile::tempdir().unwrap();
    let s = store(tmp.path());
    let mut h = begin_streaming_store(&s, config(&s, None)).unwrap();
    let id = h.staging_id().to_string();
    assert_eq!(id.len(), 32);
    assert!(valid_staging_id(&id));
    let listed = list_staging(&s).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].staging_id, id);
    for (i, part) in data.chunks(1 + 977).enumerate() {
        append_to_stream(&mut h, part).unwrap();
        if i == 100 {
            assert!(h.checkpointed_bytes() > 0);
            assert!(h.chunked_bytes() >= h.checkpointed_bytes());
        }
    }
    let out = finalize_streaming_store(h).unwrap();
    assert!(list_staging(&s).unwrap().is_empty());
    let tmp2 = tempfile::tempdir().unwrap();
    assert_eq!(
        store(tmp2.path()).store(&data).unwrap().blob_ref,
        out.blob_ref
    );
    assert_eq!(s.pins().unwrap().pins[0].1.name, "api");
}

#[test]
fn a_dropped_handle_resumes_from_the_listed_offset() {
    let data = bytes(200_000, 2);
    let tmp = tempfile::tempdir().unwrap();
    {
        let s = store(tmp.path());
        let mut h = begin_streaming_store(&s, config(&s, Some("job-1"))).unwrap();
        append_to_stream(&mut h, &data[..123_456]).unwrap();
    }
    let s = store(tmp.path());
    let info = list_staging(&s).unwrap().remove(0);
    assert_eq!(info.staging_id, "job-1");
    assert!(info.bytes_committed > 0 && info.resume_offset < info.bytes_committed);
    assert_eq!(info.pin_name, "api");
    let (mut h, offset) =
        resume_streaming_store(&s, "job-1", CheckpointCadence::default()).unwrap();
    assert_eq!(offset, info.resume_offset);
    append_to_stream(&mut h, &data[offset as usize..]).unwrap();
    let out = finalize_streaming_store(h).unwrap();
    let tmp2 = tempfile::tempdir().unwrap();
    assert_eq!(
        store(tmp2.path()).store(&data).unwrap().blob_ref,
        out.blob_ref
    );
}

#[test]
fn abort_and_release_abandoned_remove_uploads() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store(tmp.path());
    let mut a = begin_streaming_store(&s, config(&s, Some("a"))).unwrap();
    append_to_stream(&mut a, &bytes(50_000, 3)).unwrap();
    abort_streaming_store(a).unwrap();
    assert!(list_staging(&s).unwrap().is_empty());

    let mut b = begin_streaming_store(&s, config(&s, Some("b"))).unwrap();
    append_to_stream(&mut b, &bytes(50_000, 4)).unwrap();
    b.checkpoint().unwrap();
    drop(b);
    assert!(
        release_abandoned(&s, DEFAULT_ABANDON_GRACE)
            .unwrap()
            .is_empty()
    );
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(
        release_abandoned(&s, Duration::from_millis(1)).unwrap(),
        vec!["b".to_string()]
    );
    assert!(matches!(
        resume_streaming_store(&s, "b", CheckpointCadence::default()).unwrap_err(),
        StagingError::NotFound(_)
    ));
    assert!(!abort_staging_id(&s, "b").unwrap());
}
