//! `net-mesh repair REF [--json]`: rebuild and store every missing or corrupt data or parity
//! chunk of an erasure-coded blob. Exit 0 when every stripe is healthy afterwards, 3 when some
//! stripe had more losses than parity.

use std::path::Path;

use clap::Args;
use net_mesh_engine::StoreConfig;
use net_mesh_engine::error::hex;
use net_mesh_engine::index::DEFAULT_CHANNEL;
use serde_json::json;

use crate::outln;
use crate::output::CliResult;

#[derive(Debug, Args)]
pub struct RepairArgs {
    /// Blob ref (nm1…) or the hex prefix of a pinned blob's id
    blob: String,
    /// Print a JSON object
    #[arg(long)]
    json: bool,
}

pub fn run(args: RepairArgs, dir: &Path) -> CliResult {
    let store = crate::open::open(dir, StoreConfig::default())?;
    let blob_ref = crate::blob::resolve(&store, DEFAULT_CHANNEL, &args.blob)?;
    let progress = net_mesh_engine::Progress::new();
    let display = crate::output::show_stages(&progress, "repair");
    let report = store.repair_counting(&blob_ref, &progress);
    drop(display);
    let report = report?;
    if args.json {
        outln!(
            "{}",
            json!({
                "blob_id": hex(&net_mesh_engine::index::blob_id(&blob_ref)),
                "stripes_walked": report.stripes_walked,
                "healthy": report.healthy,
                "repaired": report.repaired,
                "unrecoverable": report.unrecoverable,
                "unrecoverable_stripes": report.unrecoverable_stripes,
                "chunks_rebuilt": report.chunks_rebuilt,
                "bytes_rebuilt": report.bytes_rebuilt,
            })
        );
    } else {
        outln!("stripes walked:  {}", report.stripes_walked);
        outln!("healthy:         {}", report.healthy);
        outln!("repaired:        {}", report.repaired);
        outln!("unrecoverable:   {}", report.unrecoverable);
        outln!(
            "chunks rebuilt:  {} ({} bytes)",
            report.chunks_rebuilt,
            report.bytes_rebuilt
        );
    }
    report.check()?;
    Ok(())
}
