//! The public staging API end to end: begin → append (any sizes) → finalize gives the plain
//! upload's ref; a dropped handle resumes from its checkpoint; list shows live uploads; abort
//! and the abandonment grace remove them; a finished upload resumes to its ref.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::time::Duration;

use net_mesh_engine::{ChunkingStrategy, OpenOptions, Store, StoreConfig, TreePolicy};
use net_mesh_staging::*;

fn store(dir: &std::path::Path) -> Store {
    store_with_grace(dir, DEFAULT_ABANDON_GRACE)
}

fn store_with_grace(dir: &std::path::Path, grace: Duration) -> Store {
    let config = StoreConfig {
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
    };
    Store::open_with(dir, with_staging(OpenOptions::new(config), grace)).unwrap()
}

fn live<'s>(resumed: Resumed<'s>) -> (StagingHandle<'s>, u64) {
    match resumed {
        Resumed::Live { writer, offset } => (*writer, offset),
        Resumed::Finished { outcome, .. } => panic!("finished already: {outcome:?}"),
    }
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
        pin_name_given: false,
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
        live(resume_streaming_store(&s, "job-1", CheckpointCadence::default()).unwrap());
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
    assert!(s.release_stale_holds().unwrap().is_empty());
    drop(s);
    std::thread::sleep(Duration::from_millis(20));
    let s = store_with_grace(tmp.path(), Duration::from_millis(1));
    let released: Vec<String> = s
        .release_stale_holds()
        .unwrap()
        .into_iter()
        .map(|r| r.what)
        .collect();
    assert_eq!(released, vec!["b".to_string()]);
    assert!(matches!(
        resume_streaming_store(&s, "b", CheckpointCadence::default()).unwrap_err(),
        StagingError::NotFound(_)
    ));
    assert!(!abort_staging_id(&s, "b").unwrap());
}

#[test]
fn a_finished_upload_resumes_to_its_ref_until_the_abandonment_grace_ends() {
    let data = bytes(120_000, 5);
    let tmp = tempfile::tempdir().unwrap();
    let want = {
        let s = store(tmp.path());
        let mut h = begin_streaming_store(&s, config(&s, Some("done-1"))).unwrap();
        append_to_stream(&mut h, &data).unwrap();
        // The publisher is killed right after this commit, before it learns the outcome.
        finalize_streaming_store(h).unwrap()
    };
    let s = store(tmp.path());
    for _ in 0..2 {
        let Resumed::Finished {
            outcome: again,
            channel,
            name,
            name_given,
        } = resume_streaming_store(&s, "done-1", CheckpointCadence::default()).unwrap()
        else {
            panic!("a finished upload must not be live");
        };
        assert_eq!((channel.as_str(), name.as_str()), ("default", "api"));
        assert!(!name_given, "the upload's name was not given");
        assert_eq!(again.blob_ref, want.blob_ref);
        assert_eq!(again.blob_id, want.blob_id);
        assert_eq!(again.chunks, want.chunks);
        assert_eq!((again.new_chunks, again.new_bytes), (0, 0));
    }
    // The id stays taken while the record lives.
    assert!(matches!(
        begin_streaming_store(&s, config(&s, Some("done-1"))).unwrap_err(),
        StagingError::Finished(_)
    ));
    // GC (with a zero object grace) keeps the record: it has its own grace.
    let report = s
        .gc(&net_mesh_engine::GcOptions {
            grace: Duration::ZERO,
            ..Default::default()
        })
        .unwrap();
    assert!(report.released_holds.is_empty());
    assert!(matches!(
        resume_streaming_store(&s, "done-1", CheckpointCadence::default()).unwrap(),
        Resumed::Finished { .. }
    ));
    drop(s);
    // Past the abandonment grace it is forgotten.
    std::thread::sleep(Duration::from_millis(20));
    let s = store_with_grace(tmp.path(), Duration::from_millis(1));
    s.release_stale_holds().unwrap();
    assert!(matches!(
        resume_streaming_store(&s, "done-1", CheckpointCadence::default()).unwrap_err(),
        StagingError::NotFound(_)
    ));
}
