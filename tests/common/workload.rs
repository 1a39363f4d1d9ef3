//! A many-clients workload on one store, through the library API: writer threads put plain and
//! resumable blobs (some resumable ones interrupted and resumed), unpin some of their blobs and
//! make commits that must be refused (a pin of missing objects, a staging id that exists),
//! while a GC thread collects with a zero grace and compacts.
//!
//! Every acknowledged step is appended to an ack log, one line per step, written only after
//! the API call returned (an unpin is logged *before* the call). A process killed mid-run
//! leaves a log of what the store must still hold: [`check_store`] verifies it. Writers own
//! disjoint blob seeds, so one writer's unpin never removes another's blob, while the blobs
//! share most of their chunks (dedup across writers).
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use net_mesh_engine::codec::{ChunkRef, ChunkRole, Encoding};
use net_mesh_engine::fsck::{FsckOptions, ProblemKind, ReadData, Severity};
use net_mesh_engine::index::blob_id;
use net_mesh_engine::{
    BlobRef, ChunkingStrategy, GcOptions, OpenOptions, Store, StoreConfig, TreePolicy,
};
use net_mesh_staging::{
    CheckpointCadence, Resumed, StagingConfig, StagingError, append_to_stream,
    begin_streaming_store, finalize_streaming_store, resume_streaming_store,
};

use super::crash::Rng;

/// Small segments, batches and chunks, so a short run rolls segments, commits often and
/// compacts.
pub fn store_config() -> StoreConfig {
    StoreConfig {
        chunking: ChunkingStrategy::Cdc {
            avg: 4096,
            min: 1024,
            max: 16384,
        },
        tree: TreePolicy {
            leaf_fanout: 8,
            internal_fanout: 4,
            manifest_max_refs: net_mesh_engine::tree::DEFAULT_MANIFEST_MAX_REFS,
        },
        segment_roll_size: 256 * 1024,
        batch_bytes: 48 * 1024,
    }
}

/// Opens the store in `dir` with the workload's config and the staging extension.
pub fn open(dir: &Path) -> Store {
    Store::open_with(dir, options()).unwrap()
}

fn options() -> OpenOptions {
    net_mesh_staging::with_staging(
        OpenOptions::new(store_config()),
        net_mesh_staging::DEFAULT_ABANDON_GRACE,
    )
}

fn cadence() -> CheckpointCadence {
    CheckpointCadence {
        interval_bytes: 24 * 1024,
        at_leaf_close: false,
        max_age_ms: u64::MAX,
    }
}

/// The bytes of blob `seed`: shared 8 KiB pieces (so blobs dedup against each other) and a
/// unique tail (so every seed is its own blob).
pub fn blob_data(seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let pieces = rng.below(40);
    let mut out = Vec::new();
    for _ in 0..pieces {
        out.extend(super::random_bytes(8192, 1000 + rng.below(48)));
    }
    out.extend(super::random_bytes(1 + rng.below(3000) as usize, seed));
    out
}

/// A ref whose objects do not exist: pinning it must be refused.
fn missing_blob(seed: u64) -> BlobRef {
    let mut hash = [0xEE; 32];
    hash[..8].copy_from_slice(&seed.to_le_bytes());
    BlobRef::Manifest {
        size: 10,
        encoding: Encoding::Plain,
        chunks: vec![ChunkRef {
            hash,
            size: 10,
            role: ChunkRole::Data,
        }],
    }
}

/// The ack log.
pub struct AckLog(Mutex<File>);

impl AckLog {
    pub fn create(path: &Path) -> AckLog {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        AckLog(Mutex::new(file))
    }

    fn line(&self, text: String) {
        // One write per line on an O_APPEND file: lines never interleave.
        self.0
            .lock()
            .unwrap()
            .write_all(format!("{text}\n").as_bytes())
            .unwrap();
    }
}

/// What a run did, for the in-process test's own checks.
#[derive(Debug, Default)]
pub struct Tally {
    pub puts: u64,
    pub resumable: u64,
    pub interrupted: u64,
    pub unpins: u64,
    pub refusals: u64,
    pub gc_runs: u64,
    pub segments_compacted: u64,
}

/// Runs `writers` writer threads for `ops` operations each (`u64::MAX`: until killed) and a GC
/// thread until they end. `base` keeps blob seeds and staging ids of successive runs apart.
pub fn run(store: &Store, log: &AckLog, writers: u64, ops: u64, base: u64, seed: u64) -> Tally {
    let done = AtomicBool::new(false);
    let tally = Mutex::new(Tally::default());
    std::thread::scope(|s| {
        let gc = s.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                let report = store
                    .gc(&GcOptions {
                        grace: Duration::ZERO,
                        dry_run: false,
                        compact_threshold: 0.5,
                        ..GcOptions::default()
                    })
                    .unwrap();
                let mut t = tally.lock().unwrap();
                t.gc_runs += 1;
                t.segments_compacted += report.segments_compacted;
            }
        });
        // Ends the GC loop however the writers end (a failed assertion in one of them too).
        struct StopGc<'a>(&'a AtomicBool);
        impl Drop for StopGc<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let stop_gc = StopGc(&done);
        let threads: Vec<_> = (0..writers)
            .map(|w| {
                let tally = &tally;
                s.spawn(move || writer(store, log, w, writers, ops, base, seed, tally))
            })
            .collect();
        let results: Vec<_> = threads.into_iter().map(|t| t.join()).collect();
        drop(stop_gc);
        gc.join().unwrap();
        for result in results {
            if let Err(panic) = result {
                std::panic::resume_unwind(panic);
            }
        }
    });
    tally.into_inner().unwrap()
}

#[allow(clippy::too_many_arguments)]
fn writer(
    store: &Store,
    log: &AckLog,
    w: u64,
    writers: u64,
    ops: u64,
    base: u64,
    seed: u64,
    tally: &Mutex<Tally>,
) {
    let mut rng = Rng((seed ^ (w + 1).wrapping_mul(0xA24B_AED4_963E_E407)) | 1);
    let mut mine: Vec<(u64, BlobRef)> = Vec::new();
    let mut op = 0u64;
    while op < ops {
        // Blob seeds of this writer: base + op * writers + w (disjoint across writers).
        let blob_seed = base + op * writers + w;
        match rng.below(10) {
            0..=3 => {
                let data = blob_data(blob_seed);
                let out = store
                    .store_stream(&data[..], &format!("b{blob_seed}"))
                    .unwrap();
                log.line(format!("put {blob_seed} {}", out.blob_ref));
                mine.push((blob_seed, out.blob_ref));
                tally.lock().unwrap().puts += 1;
            }
            4..=6 => {
                let blob_ref = resumable_put(store, log, &mut rng, blob_seed, tally);
                mine.push((blob_seed, blob_ref));
                tally.lock().unwrap().resumable += 1;
            }
            7 if !mine.is_empty() => {
                let (unpinned_seed, blob_ref) =
                    mine.swap_remove(rng.below(mine.len() as u64) as usize);
                log.line(format!("unpin {unpinned_seed}"));
                assert_eq!(
                    store.unpin(&blob_id(&blob_ref)).unwrap(),
                    net_mesh_engine::Unpinned::Removed
                );
                tally.lock().unwrap().unpins += 1;
            }
            8 => {
                let err = store.pin(&missing_blob(blob_seed), "ghost").unwrap_err();
                assert!(
                    matches!(&err, net_mesh_engine::StoreError::Index(e) if e.is_refusal()),
                    "{err}"
                );
                tally.lock().unwrap().refusals += 1;
            }
            _ => {
                // A staging id that is already live is refused, and the live upload survives.
                let id = format!("dup-{blob_seed}");
                let config = StagingConfig {
                    staging_id: Some(id.clone()),
                    cadence: cadence(),
                    ..StagingConfig::for_store(store)
                };
                let first = begin_streaming_store(store, config.clone()).unwrap();
                let err = begin_streaming_store(store, config).unwrap_err();
                assert!(matches!(err, StagingError::Exists(_)), "{err}");
                net_mesh_staging::abort_streaming_store(first).unwrap();
                tally.lock().unwrap().refusals += 1;
            }
        }
        op += 1;
    }
}

/// A resumable put of blob `seed`, sometimes interrupted after a checkpoint and resumed.
fn resumable_put(
    store: &Store,
    log: &AckLog,
    rng: &mut Rng,
    seed: u64,
    tally: &Mutex<Tally>,
) -> BlobRef {
    let data = blob_data(seed);
    let id = format!("up-{seed}");
    let config = StagingConfig {
        staging_id: Some(id.clone()),
        pin_name: format!("b{seed}"),
        pin_name_given: false,
        cadence: cadence(),
        ..StagingConfig::for_store(store)
    };
    let mut handle = begin_streaming_store(store, config).unwrap();
    log.line(format!("begin {id} {seed}"));
    let cut = rng.below(data.len() as u64 + 1) as usize;
    for part in data[..cut].chunks(7000) {
        append_to_stream(&mut handle, part).unwrap();
    }
    if rng.below(2) == 0 {
        // Interrupted: the handle goes away; the upload resumes from its last checkpoint.
        drop(handle);
        tally.lock().unwrap().interrupted += 1;
        let Resumed::Live {
            writer: resumed,
            offset,
        } = resume_streaming_store(store, &id, cadence()).unwrap()
        else {
            panic!("upload {id} finished before it was resumed");
        };
        handle = *resumed;
        for part in data[offset as usize..].chunks(7000) {
            append_to_stream(&mut handle, part).unwrap();
        }
    } else {
        append_to_stream(&mut handle, &data[cut..]).unwrap();
    }
    let out = finalize_streaming_store(handle).unwrap();
    log.line(format!("done {id} {}", out.blob_ref));
    out.blob_ref
}

/// What the ack log says the store must hold.
#[derive(Debug, Default)]
pub struct Expected {
    /// Pinned blobs: seed → ref.
    pub pinned: BTreeMap<u64, String>,
    /// Resumable uploads begun and not logged done: staging id → seed.
    pub open_uploads: BTreeMap<String, u64>,
}

pub fn read_log(path: &Path) -> Expected {
    let mut e = Expected::default();
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut upload_seed: BTreeMap<String, u64> = BTreeMap::new();
    for line in text.lines() {
        let parts: Vec<&str> = line.split(' ').collect();
        match parts.as_slice() {
            ["put", seed, r] => {
                e.pinned.insert(seed.parse().unwrap(), r.to_string());
            }
            ["unpin", seed] => {
                e.pinned.remove(&seed.parse::<u64>().unwrap());
            }
            ["begin", id, seed] => {
                let seed = seed.parse().unwrap();
                e.open_uploads.insert(id.to_string(), seed);
                upload_seed.insert(id.to_string(), seed);
            }
            ["done", id, r] => {
                e.open_uploads.remove(*id);
                e.pinned.insert(upload_seed[*id], r.to_string());
            }
            other => panic!("bad ack log line {other:?}"),
        }
    }
    e
}

/// Checks a reopened store against the ack log: every pinned blob reads back byte for byte;
/// every upload that was begun and not finished either finished (its commit landed before the
/// kill) or resumes from its checkpoint to the ref a plain put of the same bytes makes.
/// Returns the number of uploads it resumed.
/// Resumed and already-finished uploads are logged `done` in `log`.
pub fn check_store(store: &Store, expected: &Expected, scratch: &Store, log: &AckLog) -> u64 {
    for (seed, text) in &expected.pinned {
        let blob_ref: BlobRef = text.parse().unwrap();
        let mut out = Vec::new();
        store
            .fetch(&blob_ref, &mut out)
            .unwrap_or_else(|e| panic!("acknowledged blob {seed} ({text:.40}…) lost: {e}"));
        assert!(
            out == blob_data(*seed),
            "blob {seed} reads back different bytes"
        );
        assert!(
            store
                .reader()
                .unwrap()
                .pin(&blob_id(&blob_ref))
                .unwrap()
                .is_some(),
            "acknowledged blob {seed} is no longer pinned"
        );
    }
    let live: BTreeSet<String> = net_mesh_staging::list_staging(store)
        .unwrap()
        .into_iter()
        .map(|u| u.staging_id)
        .collect();
    let mut resumed = 0;
    for (id, seed) in &expected.open_uploads {
        let data = blob_data(*seed);
        let want = scratch.store(&data).unwrap().blob_ref;
        if !live.contains(id) {
            // Its begin was acknowledged, so it is live until its finalize commits: that
            // commit landed before the kill, and the blob is pinned.
            let mut out = Vec::new();
            store
                .fetch(&want, &mut out)
                .unwrap_or_else(|e| panic!("upload {id} is neither live nor finished: {e}"));
            assert!(out == data);
            assert!(
                store
                    .reader()
                    .unwrap()
                    .pin(&blob_id(&want))
                    .unwrap()
                    .is_some()
            );
            log.line(format!("done {id} {want}"));
            continue;
        }
        let Resumed::Live {
            writer: mut handle,
            offset,
        } = resume_streaming_store(store, id, cadence()).unwrap()
        else {
            panic!("upload {id} is live and finished at once");
        };
        append_to_stream(&mut handle, &data[offset as usize..]).unwrap();
        let got = finalize_streaming_store(*handle).unwrap().blob_ref;
        assert_eq!(got, want, "resumed upload {id} built another blob");
        log.line(format!("done {id} {got}"));
        resumed += 1;
    }
    resumed
}

/// fsck with every chunk read: nothing but informational findings and orphan segment files
/// (created, never committed; reclaimable).
pub fn assert_fsck_clean(dir: &Path) {
    let report = net_mesh_engine::fsck::fsck(
        dir,
        options(),
        &FsckOptions {
            read_data: ReadData::All,
            ..FsckOptions::default()
        },
    )
    .unwrap();
    let problems: Vec<_> = report
        .problems
        .iter()
        .filter(|p| p.severity != Severity::Info && p.kind != ProblemKind::OrphanFile)
        .collect();
    assert!(problems.is_empty(), "fsck found: {problems:#?}");
}
