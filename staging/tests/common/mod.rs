//! Helpers for the staging crate's tests: stores opened with the staging extension,
//! deterministic inputs, and the live side of a resume.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use net_mesh_engine::codec::Hash;
use net_mesh_engine::fsck::{FsckOptions, FsckReport, ProblemKind, ReadData, Severity};
use net_mesh_engine::{
    BlobRef, ChunkingStrategy, Extension, OpenOptions, Store, StoreConfig, TreePolicy,
};
use net_mesh_staging::{
    CheckpointCadence, Resumed, Staging, StagingConfig, StagingError, StagingHandle,
    resume_streaming_store,
};

pub const SMALL_CDC: ChunkingStrategy = ChunkingStrategy::Cdc {
    avg: 4096,
    min: 1024,
    max: 16384,
};
pub const TINY_TREE: TreePolicy = TreePolicy {
    leaf_fanout: 2,
    internal_fanout: 2,
    manifest_max_refs: net_mesh_engine::tree::DEFAULT_MANIFEST_MAX_REFS,
};

pub fn config(chunking: ChunkingStrategy, tree: TreePolicy) -> StoreConfig {
    StoreConfig {
        chunking,
        tree,
        ..StoreConfig::default()
    }
}

/// `config` with the staging extension (default abandonment grace).
pub fn options(config: StoreConfig) -> OpenOptions {
    options_with_grace(config, net_mesh_staging::DEFAULT_ABANDON_GRACE)
}

pub fn options_with_grace(config: StoreConfig, grace: Duration) -> OpenOptions {
    net_mesh_staging::with_staging(OpenOptions::new(config), grace)
}

pub fn open(dir: &Path, chunking: ChunkingStrategy, tree: TreePolicy) -> Store {
    Store::open_with(dir, options(config(chunking, tree))).unwrap()
}

/// A resumable upload's config: id, pin name = id, the given tree and cadence.
pub fn upload_config(id: &str, tree: TreePolicy, cadence: CheckpointCadence) -> StagingConfig {
    StagingConfig {
        staging_id: Some(id.to_string()),
        pin_name: id.to_string(),
        pin_name_given: false,
        chunking: SMALL_CDC,
        tree,
        cadence,
    }
}

/// Resumes `id`, which must still be live: the handle and the replay offset.
pub fn resume_live<'s>(
    store: &'s Store,
    id: &str,
    cadence: CheckpointCadence,
) -> Result<(StagingHandle<'s>, u64), StagingError> {
    match resume_streaming_store(store, id, cadence)? {
        Resumed::Live { writer, offset } => Ok((*writer, offset)),
        Resumed::Finished { outcome, .. } => panic!("upload {id} already finished: {outcome:?}"),
    }
}

/// Holds the staging extension accounts for, per object (what fsck adds to its counts).
pub fn staging_holds(store: &Store) -> HashMap<Hash, u64> {
    store
        .read_extension(net_mesh_staging::table::NAMESPACE, |r| {
            Staging::default().holds(r)
        })
        .unwrap()
}

/// Deterministic pseudo-random bytes.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn fetch_all(store: &Store, r: &BlobRef) -> Vec<u8> {
    let mut out = Vec::new();
    store.fetch(r, &mut out).unwrap();
    out
}

/// fsck (opening the store itself, with staging registered).
pub fn fsck(dir: &Path, config: StoreConfig, read_data: ReadData) -> FsckReport {
    net_mesh_engine::fsck::fsck(
        dir,
        options(config),
        &FsckOptions {
            read_data,
            ..FsckOptions::default()
        },
    )
    .unwrap()
}

/// The kinds of fsck's findings that count as problems.
pub fn kinds(report: &FsckReport) -> Vec<ProblemKind> {
    report
        .problems
        .iter()
        .filter(|p| p.severity != Severity::Info)
        .map(|p| p.kind)
        .collect()
}
