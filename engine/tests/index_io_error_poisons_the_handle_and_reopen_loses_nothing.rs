//! An I/O error of the index file (the Nth write, or the Nth sync, of `index.redb` fails) during
//! any step of a workload of puts, an unpin, GC with compaction and a pin: the failing call
//! returns a typed error, every later write through the same handle is refused, and a clean
//! reopen loses nothing that was acknowledged before, with fsck finding only reclaimable
//! orphans. Every sync and writes spread over the workload fail in turn on the simulated disk
//! (fast); a few of them again on real files, reopened with redb's own file backend.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{SMALL_CDC, TINY_TREE, random_bytes};
use net_mesh_engine::fsck::{FsckOptions, ProblemKind, ReadData, Severity, fsck, fsck_open_store};
use net_mesh_engine::index::{IndexError, blob_id};
use net_mesh_engine::sim_index::{IndexFaults, IndexOnBackend};
use net_mesh_engine::{
    BlobRef, GcError, GcOptions, OpenError, OpenOptions, Store, StoreBackends, StoreConfig,
    StoreError,
};
use net_mesh_segments::sim::SimDisk;
use net_mesh_segments::{FileBackend, SegmentBackend};

fn config() -> StoreConfig {
    StoreConfig {
        chunking: SMALL_CDC,
        tree: TINY_TREE,
        segment_roll_size: 32 * 1024,
        batch_bytes: 16 * 1024,
    }
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    Write(u64),
    Sync(u64),
}

/// What the workload got acknowledged: blobs that must stay pinned, ids that must stay unpinned.
#[derive(Default)]
struct Acked {
    pinned: Vec<(BlobRef, Arc<Vec<u8>>)>,
    unpinned: Vec<BlobRef>,
    /// An unpin that failed: it may or may not have reached the disk.
    unpin_in_flight: Option<BlobRef>,
}

/// The error's whole chain as text.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// Where a round runs.
#[derive(Clone)]
enum Disk {
    Real,
    Sim(SimDisk),
}

impl Disk {
    fn new(dir: &Path) -> Disk {
        Disk::Sim(SimDisk::with_dir(dir))
    }

    fn files(&self) -> Arc<dyn SegmentBackend> {
        match self {
            Disk::Real => Arc::new(FileBackend),
            Disk::Sim(disk) => Arc::new(disk.clone()),
        }
    }
}

/// Runs the workload until its first error. Returns what was acknowledged, and the failed
/// store handle (if the open itself succeeded).
fn run(
    dir: &Path,
    disk: &Disk,
    faults: Option<Fault>,
) -> (Acked, Option<(Store, String)>, Arc<IndexFaults>) {
    let files = disk.files();
    let index = IndexOnBackend::new(Arc::clone(&files));
    let plan = Arc::clone(index.faults());
    match faults {
        Some(Fault::Write(n)) => plan.fail_nth_write(n),
        Some(Fault::Sync(n)) => plan.fail_nth_sync(n),
        None => {}
    }
    let backends = StoreBackends {
        index: Arc::new(index),
        files,
    };
    let mut acked = Acked::default();
    let store = match Store::open_with(
        dir,
        OpenOptions {
            config: config(),
            backends,
            ..OpenOptions::default()
        },
    ) {
        Ok(store) => store,
        Err(e) => {
            assert!(
                matches!(&e, OpenError::Index(IndexError::Db(_))),
                "open: {e}"
            );
            assert!(chain(&e).contains("injected fault"), "{}", chain(&e));
            return (acked, None, plan);
        }
    };
    let blobs: Vec<Arc<Vec<u8>>> = (0..3)
        .map(|i| Arc::new(random_bytes(30_000, 50 + i)))
        .collect();
    // Each call's error must be the index's typed I/O error (redb's, from the backend).
    let failed = (|| {
        let index_io = |e: &dyn std::error::Error, typed: bool| {
            assert!(typed, "{faults:?}: untyped error {e}");
            chain(e)
        };
        let store_err =
            |e: StoreError| index_io(&e, matches!(&e, StoreError::Index(IndexError::Db(_))));
        let mut refs = Vec::new();
        for data in &blobs {
            let r = store.store(data).map_err(store_err)?.blob_ref;
            acked.pinned.push((r.clone(), Arc::clone(data)));
            refs.push(r);
        }
        acked.unpin_in_flight = Some(refs[1].clone());
        store.unpin(&blob_id(&refs[1])).map_err(store_err)?;
        acked.unpin_in_flight = None;
        acked.pinned.retain(|(r, _)| *r != refs[1]);
        acked.unpinned.push(refs[1].clone());
        let gc = GcOptions {
            grace: Duration::ZERO,
            dry_run: false,
            compact_threshold: 0.9,
            ..GcOptions::default()
        };
        store.gc(&gc).map_err(|e| {
            let typed = matches!(
                &e,
                GcError::Index(IndexError::Db(_))
                    | GcError::Store(StoreError::Index(IndexError::Db(_)))
            );
            index_io(&e, typed)
        })?;
        store.pin(&refs[0], "second name").map_err(store_err)?;
        Ok::<_, String>(())
    })();
    match failed {
        // A fault that hit no call's path hit a database close (redb closes the new index
        // before renaming it into place, and on drop): nothing to refuse, nothing acknowledged
        // is at stake there.
        Ok(()) => (acked, None, plan),
        Err(text) => {
            assert!(text.contains("injected fault"), "{faults:?}: {text}");
            (acked, Some((store, text)), plan)
        }
    }
}

fn check_refuses_writes(store: &Store, context: &str) {
    let more = random_bytes(5_000, 99);
    assert!(
        store.store(&more).is_err(),
        "{context}: a put after the failure succeeded"
    );
    let r = BlobRef::Small {
        hash: [1u8; 32],
        size: 1,
    };
    assert!(
        store.pin(&r, "x").is_err(),
        "{context}: a pin after the failure succeeded"
    );
    assert!(
        store.gc(&GcOptions::default()).is_err(),
        "{context}: gc after the failure succeeded"
    );
}

fn check_reopen(dir: &Path, disk: &Disk, acked: &Acked, context: &str) {
    let store = match disk {
        Disk::Real => Store::open(dir, config()),
        Disk::Sim(sim) => {
            let files: Arc<dyn SegmentBackend> = Arc::new(sim.clone());
            let backends = StoreBackends {
                index: Arc::new(IndexOnBackend::new(Arc::clone(&files))),
                files,
            };
            Store::open_with(
                dir,
                OpenOptions {
                    config: config(),
                    backends,
                    ..OpenOptions::default()
                },
            )
        }
    }
    .unwrap_or_else(|e| panic!("{context}: reopen: {e}"));
    let pins: Vec<_> = store
        .pins()
        .unwrap()
        .pins
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    for (r, data) in &acked.pinned {
        if acked.unpin_in_flight.as_ref() == Some(r) {
            continue;
        }
        assert!(
            pins.contains(&blob_id(r)),
            "{context}: acknowledged pin lost"
        );
        let mut out = Vec::new();
        store.fetch(r, &mut out).unwrap();
        assert_eq!(out, **data, "{context}: blob differs");
    }
    for r in &acked.unpinned {
        assert!(
            !pins.contains(&blob_id(r)),
            "{context}: acknowledged unpin lost"
        );
    }
    let options = FsckOptions {
        read_data: ReadData::All,
        threads: 1,
        ..FsckOptions::default()
    };
    let report = match disk {
        Disk::Real => {
            drop(store);
            fsck(dir, OpenOptions::new(config()), &options)
        }
        Disk::Sim(_) => fsck_open_store(&store, &options),
    }
    .unwrap();
    let bad: Vec<_> = report
        .problems
        .iter()
        .filter(|p| p.severity != Severity::Info && p.kind != ProblemKind::OrphanFile)
        .collect();
    assert!(bad.is_empty(), "{context}: fsck found {bad:#?}");
}

#[test]
fn index_io_error_poisons_the_handle_and_reopen_loses_nothing() {
    let calibrate = tempfile::tempdir().unwrap();
    let (_, _, plan) = run(calibrate.path(), &Disk::new(calibrate.path()), None);
    let (writes, syncs) = (plan.writes(), plan.syncs());
    assert!(writes > 10 && syncs > 5, "{writes} writes, {syncs} syncs");
    // Every sync, and writes spread over the whole workload (each commit writes several pages).
    let mut faults: Vec<Fault> = (1..=syncs).map(Fault::Sync).collect();
    faults.extend(
        (1..=writes)
            .step_by((writes as usize / 40).max(1))
            .map(Fault::Write),
    );
    // Again on real files: a sync and a write halfway, a sync near the end.
    let real = [
        Fault::Sync(syncs / 2),
        Fault::Write(writes / 2),
        Fault::Sync(syncs - 6),
    ];
    let rounds = faults
        .iter()
        .map(|f| (*f, false))
        .chain(real.iter().map(|f| (*f, true)));
    let mut surfaced = 0;
    let mut total = 0;
    for (fault, on_real_files) in rounds {
        total += 1;
        let tmp = tempfile::tempdir().unwrap();
        let disk = if on_real_files {
            Disk::Real
        } else {
            Disk::new(tmp.path())
        };
        let context = format!(
            "{fault:?} of {writes} writes / {syncs} syncs{}",
            if on_real_files { " (real files)" } else { "" }
        );
        let (acked, failed, plan) = run(tmp.path(), &disk, Some(fault));
        match fault {
            Fault::Write(n) => assert!(plan.writes() >= n, "{context}: not reached"),
            Fault::Sync(n) => assert!(plan.syncs() >= n, "{context}: not reached"),
        }
        if let Some((store, error)) = failed {
            surfaced += 1;
            check_refuses_writes(&store, &format!("{context} ({error})"));
        }
        check_reopen(tmp.path(), &disk, &acked, &context);
    }
    // Most faults land in a call (the rest in a database close).
    assert!(surfaced * 2 > total, "{surfaced} of {total}");
    eprintln!(
        "index faults: {total} injected, {surfaced} failed a call ({writes} writes, {syncs} syncs)"
    );
}
