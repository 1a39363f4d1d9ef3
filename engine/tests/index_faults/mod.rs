//! A store on the simulated disk with its index behind a fault plan (`IndexFaults`), for the
//! tests where one index write or sync fails on purpose.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::Path;
use std::sync::Arc;

use net_mesh_engine::fsck::{FsckOptions, ReadData, Severity, fsck_open_store};
use net_mesh_engine::sim_index::{IndexFaults, IndexOnBackend};
use net_mesh_engine::{OpenOptions, Store, StoreBackends, StoreConfig};
use net_mesh_segments::SegmentBackend;
use net_mesh_segments::sim::SimDisk;

/// Which index operation fails: the next write or the next sync of `index.redb`.
#[derive(Debug, Clone, Copy)]
pub enum NextFault {
    Write,
    Sync,
}

impl NextFault {
    pub const ALL: [NextFault; 2] = [NextFault::Write, NextFault::Sync];

    /// Plans the fault on the next operation of its kind.
    pub fn arm(self, faults: &IndexFaults) {
        match self {
            NextFault::Write => faults.fail_nth_write(faults.writes() + 1),
            NextFault::Sync => faults.fail_nth_sync(faults.syncs() + 1),
        }
    }
}

/// Opens the store in `dir` on `disk`, its index on the same disk with a fresh fault plan.
pub fn open_on(dir: &Path, disk: &SimDisk, config: StoreConfig) -> (Store, Arc<IndexFaults>) {
    let files: Arc<dyn SegmentBackend> = Arc::new(disk.clone());
    let index = IndexOnBackend::new(Arc::clone(&files));
    let faults = Arc::clone(index.faults());
    let store = Store::open_with(
        dir,
        OpenOptions {
            config,
            backends: StoreBackends {
                index: Arc::new(index),
                files,
            },
            ..OpenOptions::default()
        },
    )
    .unwrap();
    (store, faults)
}

/// `fsck --read-data` of an open store finds nothing but reclaimable orphans.
pub fn assert_fsck_clean(store: &Store, context: &str) {
    let report = fsck_open_store(
        store,
        &FsckOptions {
            read_data: ReadData::All,
            threads: 1,
            ..FsckOptions::default()
        },
    )
    .unwrap();
    let bad: Vec<_> = report
        .problems
        .iter()
        .filter(|p| {
            p.severity != Severity::Info && p.kind != net_mesh_engine::fsck::ProblemKind::OrphanFile
        })
        .collect();
    assert!(bad.is_empty(), "{context}: fsck found {bad:#?}");
}
