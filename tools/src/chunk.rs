//! `net-mesh chunk …` and `net-mesh blob chunks`: per-chunk operator tools.

use crate::outln;
use std::ops::ControlFlow;
use std::path::Path;

use clap::Subcommand;
use net_mesh_engine::codec::{BlobRef, Hash};
use net_mesh_engine::erasure::stripe::role_name;
use net_mesh_engine::error::hex;
use net_mesh_engine::{ErrorClass, Store, StoreConfig};
use net_mesh_node::proto::ChunkRow;
use serde_json::json;

use crate::output::{CliError, CliResult, ErrorContext, RowPrinter};

#[derive(Debug, Subcommand)]
pub enum ChunkCmd {
    /// Delete one chunk. Refused while anything references it (or while it belongs to a live
    /// erasure-coded stripe) unless --force, the operator override used to simulate loss
    Rm {
        /// The chunk's full hash (64 hex digits)
        hash: String,
        /// Delete it whatever references it (readers of those blobs will fail or reconstruct)
        #[arg(long)]
        force: bool,
    },
}

fn parse_hash(text: &str) -> CliResult<Hash> {
    let text = text.trim();
    let not_a_hash = || format!("{text:?} is not a 64-digit hex chunk hash");
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(CliError::msg(ErrorClass::Usage, not_a_hash()));
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        let pair = text
            .get(i * 2..i * 2 + 2)
            .ok_or_else(|| CliError::msg(ErrorClass::Usage, not_a_hash()))?;
        *byte = u8::from_str_radix(pair, 16).with_class(ErrorClass::Usage, not_a_hash)?;
    }
    Ok(out)
}

pub fn run(cmd: ChunkCmd, dir: &Path) -> CliResult {
    let store = crate::open::open(dir, StoreConfig::default())?;
    match cmd {
        ChunkCmd::Rm { hash, force } => {
            let hash = parse_hash(&hash)?;
            let had = store.remove_chunk(&hash, force)?;
            if had > 0 {
                outln!(
                    "removed chunk {} (it had {had} reference(s); blobs using it are now damaged)",
                    hex(&hash)
                );
            } else {
                outln!("removed chunk {}", hex(&hash));
            }
            Ok(())
        }
    }
}

/// `blob chunks REF` on the local store, printed as the tree is walked.
pub fn list(store: &Store, blob_ref: &BlobRef, as_json: bool) -> CliResult {
    let mut printer = RowPrinter::new(as_json);
    // Stopped early only by a failed write, which `finish` reports.
    let _stopped = store.for_each_chunk(blob_ref, &mut |c| {
        print_chunk(
            &mut printer,
            &ChunkRow {
                hash: c.hash,
                size: c.size,
                role: role_name(c.role).to_string(),
                stripe: c.stripe,
            },
        )
    })?;
    printer.finish()
}

/// One row of `blob chunks`: a line per chunk, or with `--json` `{hash, size, role, stripe}`.
pub fn print_chunk(printer: &mut RowPrinter, c: &ChunkRow) -> ControlFlow<()> {
    printer.print(
        || {
            json!({
                "hash": hex(&c.hash),
                "size": c.size,
                "role": c.role,
                "stripe": c.stripe,
            })
        },
        || {
            let stripe = c
                .stripe
                .map(|s| s.to_string())
                .unwrap_or_else(|| "-".into());
            format!("{}  {:>8}  {:<6}  {stripe}", hex(&c.hash), c.size, c.role)
        },
    )
}
