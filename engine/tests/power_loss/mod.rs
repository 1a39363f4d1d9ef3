//! Harness of the power-loss tests: run a workload on a simulated disk (segment files and the
//! index alike), note when each API call was acknowledged, then cut power at every sync boundary
//! and at seeded random points, reopen the store on the disk that is left and check it.
//!
//! A call is acknowledged at cut point `N` when it returned `Ok` after at most `N` disk
//! operations were issued. At every cut point the reopened store must:
//! - open;
//! - hold every acknowledged pin, and no acknowledged unpin, and every pin it holds (acknowledged
//!   or not) must read back verified, byte for byte equal to what was stored;
//! - pass the scenario's own checks (the staging crate's tests resume every upload whose begin
//!   was acknowledged to the ref an uninterrupted upload gives);
//! - not show again a segment file that an acknowledged GC removed;
//! - pass `fsck --read-data` with nothing but reclaimable orphans (info findings, orphan segment
//!   files) and what the scenario allows at that point.
//!
//! `NET_MESH_POWER_LOSS_SOAK=K` (default 1) explores K random crash states per sync boundary and
//! K times as many random cut points.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use net_mesh_engine::codec::Hash;
use net_mesh_engine::fsck::{FsckOptions, Problem, ProblemKind, ReadData, Severity};
use net_mesh_engine::index::blob_id;
use net_mesh_engine::sim_index::IndexOnBackend;
use net_mesh_engine::{BlobRef, Extension, OpenOptions, Store, StoreBackends, StoreConfig};
use net_mesh_segments::sim::{CrashMode, SimDisk};
use net_mesh_segments::{SegmentId, segment_file_name};

/// What an API call changed, for the checks.
#[derive(Debug, Clone)]
pub enum Effect {
    /// The blob is pinned (a put, a resumable upload's finish, or a pin).
    Pinned {
        blob_ref: BlobRef,
        data: Arc<Vec<u8>>,
    },
    /// The blob with this id is unpinned.
    Unpinned { id: Hash },
    /// A staging upload exists that, fed `data`, finishes to `want`.
    UploadBegun {
        staging_id: String,
        data: Arc<Vec<u8>>,
        want: BlobRef,
    },
    /// The staging upload finished (its blob is pinned: see the `Pinned` effect beside it).
    UploadFinished { staging_id: String },
    /// These segment files were removed (GC compaction).
    SegmentsRemoved(Vec<SegmentId>),
    /// Anything else (checked by fsck only).
    Other(&'static str),
}

/// One API call of the workload.
#[derive(Debug, Clone)]
pub struct Step {
    /// Cut point when the call started.
    pub started: usize,
    /// Cut point when it returned `Ok` (`None`: it never returned, e.g. an abandoned writer).
    pub acked: Option<usize>,
    pub effects: Vec<Effect>,
}

/// Where a step stands at a cut point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    NotStarted,
    InFlight,
    Acked,
}

impl Step {
    pub fn status(&self, cut: usize) -> Status {
        if self.started > cut {
            Status::NotStarted
        } else if self.acked.is_some_and(|a| a <= cut) {
            Status::Acked
        } else {
            Status::InFlight
        }
    }
}

/// A workload run on a simulated disk.
pub struct Recording {
    /// Real directory of the store's LOCK file (and the data dir path on the simulated disk).
    pub tmp: tempfile::TempDir,
    pub dir: PathBuf,
    pub disk: SimDisk,
    pub config: StoreConfig,
    /// Extensions the store is opened with, at every open.
    pub extensions: Vec<Arc<dyn Extension>>,
    pub steps: Vec<Step>,
}

/// The store's backends on `disk`: segment files, data dir and index all on it.
pub fn backends(disk: &SimDisk) -> StoreBackends {
    let files: Arc<dyn net_mesh_segments::SegmentBackend> = Arc::new(disk.clone());
    StoreBackends {
        index: Arc::new(IndexOnBackend::new(Arc::clone(&files))),
        files,
    }
}

impl Recording {
    /// How the store is opened on `disk`.
    pub fn options(&self, disk: &SimDisk) -> OpenOptions {
        OpenOptions {
            config: self.config.clone(),
            backends: backends(disk),
            extensions: self.extensions.clone(),
        }
    }
}

impl Recording {
    /// A fresh simulated disk whose only content is the (durable, empty) parent of the data dir.
    pub fn new(config: StoreConfig) -> Recording {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        let disk = SimDisk::with_dir(tmp.path());
        Recording {
            tmp,
            dir,
            disk,
            config,
            extensions: Vec::new(),
            steps: Vec::new(),
        }
    }

    /// Opens the store on the recording disk (the open itself is part of the recording).
    pub fn open(&self) -> Store {
        Store::open_with(&self.dir, self.options(&self.disk)).unwrap()
    }

    /// The current cut point.
    pub fn now(&self) -> usize {
        self.disk.op_count()
    }

    /// Records a call that started at `started` and has just returned `Ok`.
    pub fn ack(&mut self, started: usize, effects: Vec<Effect>) {
        let acked = Some(self.now());
        self.steps.push(Step {
            started,
            acked,
            effects,
        });
    }

    /// Records a call that started at `started` and will never return (abandoned).
    pub fn abandon(&mut self, started: usize, effects: Vec<Effect>) {
        self.steps.push(Step {
            started,
            acked: None,
            effects,
        });
    }

    /// Runs `f` as one acknowledged step: `effects` are computed from its result.
    pub fn step<T>(&mut self, f: impl FnOnce() -> T, effects: impl FnOnce(&T) -> Vec<Effect>) -> T {
        let started = self.now();
        let out = f();
        let fx = effects(&out);
        self.ack(started, fx);
        out
    }
}

/// How many random states per boundary / random cut multiplier.
pub fn soak() -> usize {
    std::env::var("NET_MESH_POWER_LOSS_SOAK")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|k| *k >= 1)
        .unwrap_or(1)
}

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The crash states explored for a recording: for every sync at log index `s`, the cut just
/// before it with every unsynced operation dropped (the least that can survive, with the most
/// calls acknowledged) and with every operation kept (what a process kill leaves), and the cut
/// just after it with a random crash state (unsynced operations dropped, kept or torn at
/// random); `random_cuts` uniformly random cuts with random crash states; the end of the log
/// with everything dropped and with everything kept. Seeded by `seed`.
pub fn crash_points(disk: &SimDisk, random_cuts: usize, seed: u64) -> Vec<(usize, CrashMode)> {
    let k = soak();
    let ops = disk.op_count();
    let mut points = BTreeSet::new();
    let mut add = |cut: usize, mode: CrashMode| {
        let key = match mode {
            CrashMode::DropUnsynced => (cut, 0, 0),
            CrashMode::KeepAll => (cut, 1, 0),
            CrashMode::Random(s) => (cut, 2, s),
        };
        points.insert(key);
    };
    for s in disk.sync_points() {
        add(s, CrashMode::DropUnsynced);
        add(s, CrashMode::KeepAll);
        for j in 0..k {
            add(
                s + 1,
                CrashMode::Random(splitmix(seed ^ ((s as u64) << 8) ^ j as u64)),
            );
        }
    }
    let mut x = seed;
    for _ in 0..random_cuts * k {
        x = splitmix(x);
        let cut = (x % (ops as u64 + 1)) as usize;
        add(cut, CrashMode::Random(splitmix(x)));
    }
    add(ops, CrashMode::DropUnsynced);
    add(ops, CrashMode::KeepAll);
    points
        .into_iter()
        .map(|(cut, m, s)| {
            let mode = match m {
                0 => CrashMode::DropUnsynced,
                1 => CrashMode::KeepAll,
                _ => CrashMode::Random(s),
            };
            (cut, mode)
        })
        .collect()
}

pub fn fetch(store: &Store, r: &BlobRef) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    store.fetch(r, &mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// A finding the checks accept: info (orphan records awaiting compaction, empty orphan
/// segments) and orphan segment files (unreferenced, `fsck --repair` or the next GC's space).
pub fn reclaimable(p: &Problem) -> bool {
    p.severity == Severity::Info || p.kind == ProblemKind::OrphanFile
}

/// The scenario's own checks of a reopened store at a cut point.
pub type ExtraCheck<'a> = &'a dyn Fn(&Store, &Recording, usize) -> Result<(), String>;

/// No checks beyond the harness's own.
pub fn no_extra_check(_: &Store, _: &Recording, _: usize) -> Result<(), String> {
    Ok(())
}

/// Checks the store at every crash point of `points`; `allow(problem, cut)` accepts extra fsck
/// findings and `extra` adds the scenario's own checks. Returns the number of crash points
/// checked; panics listing every failing one.
pub fn check_all(
    rec: &Recording,
    points: &[(usize, CrashMode)],
    allow: &dyn Fn(&Problem, usize) -> bool,
    extra: ExtraCheck<'_>,
) -> usize {
    let mut failures = Vec::new();
    for &(cut, mode) in points {
        let crashed = rec.disk.crash(cut, mode);
        if let Err(e) = check_one(rec, &crashed, cut, allow, extra) {
            let last = match cut {
                0 => "none".to_string(),
                _ => rec.disk.describe(cut - 1),
            };
            failures.push(format!(
                "power cut at {cut}/{} ({mode:?}); last op before the cut: {last}: {e}",
                rec.disk.op_count()
            ));
        }
    }
    if !failures.is_empty() {
        let dropped = failures
            .iter()
            .filter(|f| f.contains("(DropUnsynced)"))
            .count();
        let kept = failures.iter().filter(|f| f.contains("(KeepAll)")).count();
        panic!(
            "{} of {} crash points fail ({dropped} with unsynced operations dropped, {kept} with \
             all kept, the rest random); the first:\n{}",
            failures.len(),
            points.len(),
            failures[..failures.len().min(3)].join("\n")
        );
    }
    points.len()
}

fn check_one(
    rec: &Recording,
    crashed: &SimDisk,
    cut: usize,
    allow: &dyn Fn(&Problem, usize) -> bool,
    extra: ExtraCheck<'_>,
) -> Result<(), String> {
    // Removed segment files stay removed once the GC that removed them returned.
    let seg_dir = rec.dir.join("segments");
    for step in rec.steps.iter().filter(|s| s.status(cut) == Status::Acked) {
        for effect in &step.effects {
            if let Effect::SegmentsRemoved(ids) = effect {
                for id in ids {
                    if crashed
                        .read_file(&seg_dir.join(segment_file_name(*id)))
                        .is_some()
                    {
                        return Err(format!(
                            "segment {id} removed by an acknowledged GC is back"
                        ));
                    }
                }
            }
        }
    }

    let store = Store::open_with(&rec.dir, rec.options(crashed))
        .map_err(|e| format!("reopen failed: {e}"))?;

    let report = net_mesh_engine::fsck::fsck_open_store(
        &store,
        &FsckOptions {
            read_data: ReadData::All,
            threads: 1,
            ..FsckOptions::default()
        },
    )
    .map_err(|e| format!("fsck failed: {e}"))?;
    let bad: Vec<&Problem> = report
        .problems
        .iter()
        .filter(|p| !reclaimable(p) && !allow(p, cut))
        .collect();
    if !bad.is_empty() {
        return Err(format!("fsck found: {bad:#?}"));
    }

    // Pins: the model's verdict per blob id (Some(true) must be pinned, Some(false) must not,
    // None: either).
    let mut pinned: HashMap<Hash, Option<bool>> = HashMap::new();
    let mut data_of: HashMap<Hash, Arc<Vec<u8>>> = HashMap::new();
    for step in &rec.steps {
        let status = step.status(cut);
        for effect in &step.effects {
            match effect {
                Effect::Pinned { blob_ref, data } => {
                    let id = blob_id(blob_ref);
                    data_of.insert(id, Arc::clone(data));
                    if status == Status::NotStarted {
                        continue;
                    }
                    let verdict = match status {
                        Status::Acked => Some(true),
                        _ => None,
                    };
                    let entry = pinned.entry(id).or_insert(Some(false));
                    *entry = match (*entry, verdict) {
                        (_, Some(v)) => Some(v),
                        (Some(true), None) => Some(true),
                        _ => None,
                    };
                }
                Effect::Unpinned { id } => {
                    if status == Status::NotStarted {
                        continue;
                    }
                    if let Some(entry) = pinned.get_mut(id) {
                        *entry = match (*entry, status) {
                            (_, Status::Acked) => Some(false),
                            (Some(false), _) => Some(false),
                            _ => None,
                        };
                    }
                }
                Effect::UploadBegun { .. }
                | Effect::UploadFinished { .. }
                | Effect::SegmentsRemoved(_)
                | Effect::Other(_) => {}
            }
        }
    }

    let listing = store.pins().map_err(|e| format!("listing pins: {e}"))?;
    if let Some(bad) = listing.bad.first() {
        return Err(format!("a pin row does not decode: {}", bad.error));
    }
    let pins: HashMap<Hash, BlobRef> = listing
        .pins
        .into_iter()
        .map(|(id, pin)| (id, pin.blob_ref))
        .collect();
    for (id, verdict) in &pinned {
        let len = data_of.get(id).map_or(0, |d| d.len());
        match (verdict, pins.contains_key(id)) {
            (Some(true), false) => {
                return Err(format!("acknowledged pin of a {len}-byte blob is gone"));
            }
            (Some(false), true) => {
                return Err(format!("acknowledged unpin of a {len}-byte blob came back"));
            }
            _ => {}
        }
    }
    for (id, blob_ref) in &pins {
        let got = fetch(&store, blob_ref).map_err(|e| format!("pinned blob does not read: {e}"))?;
        if let Some(want) = data_of.get(id)
            && got != **want
        {
            return Err(format!(
                "pinned blob reads back {} bytes that differ from the {} stored",
                got.len(),
                want.len()
            ));
        }
    }

    extra(&store, rec, cut)
}
