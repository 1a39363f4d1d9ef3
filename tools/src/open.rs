//! The one way the CLI opens a store: with the staging, node and replication extensions
//! registered, so resumable uploads, fsck's counts, GC's releases, a node's token revocations
//! and replicated channels' holds all see their tables.

use std::path::Path;
use std::time::Duration;

use net_mesh_engine::{Classify, ErrorClass, OpenOptions, Store, StoreConfig};

use crate::output::{CliError, CliResult};

/// Opens the store in `dir` with `config` and staging's default abandonment grace.
pub fn open(dir: &Path, config: StoreConfig) -> CliResult<Store> {
    open_with_staging_grace(dir, config, net_mesh_staging::DEFAULT_ABANDON_GRACE)
}

/// [`open`] with an explicit abandonment grace for staging uploads (`gc --staging-grace`).
pub fn open_with_staging_grace(
    dir: &Path,
    config: StoreConfig,
    staging_grace: Duration,
) -> CliResult<Store> {
    Store::open_with(dir, options(config, staging_grace)).map_err(|e| {
        let damaged = e.class() == ErrorClass::Integrity;
        let e = CliError::from(e).context(format!("opening store {}", dir.display()));
        if !damaged {
            return e;
        }
        // Every command but fsck stops here; say how to get the store going again.
        CliError::msg(
            ErrorClass::Integrity,
            format!(
                "{} (`net-mesh fsck` lists what is damaged; `net-mesh fsck --repair` drops what \
                 cannot be read and keeps the rest)",
                e.one_line()
            ),
        )
    })
}

/// The open options of the CLI's stores.
pub fn options(config: StoreConfig, staging_grace: Duration) -> OpenOptions {
    net_mesh_node::revoke::with_node_tables(net_mesh_staging::with_staging(
        OpenOptions::new(config).extension(net_mesh_replication::extension()),
        staging_grace,
    ))
}
