//! `net-mesh`: the operator's command-line tool over the net-mesh engine.
//!
//! Exit codes derive from the class of the error (`output::exit_code_of`): 0 ok; 2 usage;
//! 3 integrity failure (hash/chain mismatch, corruption, missing object); 4 refused (nothing was
//! changed); 1 any other error. Errors are one line on stderr.

mod blob;
mod chunk;
mod fsck;
mod gc;
mod identity;
mod open;
mod output;
mod repair;
mod staging;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use net_mesh_engine::ErrorClass;

use crate::output::{CliError, CliResult};

/// Content-addressed, crash-safe blob storage for mesh storage nodes.
#[derive(Debug, Parser)]
#[command(name = "net-mesh", version, about, propagate_version = true)]
struct Cli {
    /// Data directory [default: $NET_MESH_DATA_DIR, else the platform data dir, e.g.
    /// ~/.local/share/net-mesh]
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Store, read, inspect and unpin blobs
    #[command(subcommand)]
    Blob(blob::BlobCmd),
    /// Node identities (ed25519): generate, show
    Identity {
        #[command(subcommand)]
        cmd: identity::IdentityCmd,
        /// Print JSON
        #[arg(long, global = true)]
        json: bool,
    },
    /// Resumable uploads: list, resume, abort
    #[command(subcommand)]
    Staging(staging::StagingCmd),
    /// Delete objects unreferenced for longer than the grace, release idle resumable uploads,
    /// compact sparse segments
    Gc(gc::GcArgs),
    /// Check the store offline (framing, index, hashes, counts, orphans); exit 3 on problems
    Fsck(fsck::FsckArgs),
    /// Per-chunk operator tools
    #[command(subcommand)]
    Chunk(chunk::ChunkCmd),
    /// Rebuild and store every missing or corrupt chunk of an erasure-coded blob
    Repair(repair::RepairArgs),
}

/// The data dir: `--data-dir`, else `$NET_MESH_DATA_DIR`, else the platform data dir.
fn data_dir(flag: Option<PathBuf>) -> CliResult<PathBuf> {
    if let Some(dir) = flag {
        return Ok(dir);
    }
    if let Some(dir) = std::env::var_os("NET_MESH_DATA_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("net-mesh"));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| {
            CliError::msg(
                ErrorClass::Usage,
                "no data dir: pass --data-dir or set NET_MESH_DATA_DIR",
            )
        })?;
    let base = if cfg!(target_os = "macos") {
        PathBuf::from(home).join("Library/Application Support")
    } else {
        PathBuf::from(home).join(".local/share")
    };
    Ok(base.join("net-mesh"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = data_dir(cli.data_dir).and_then(|dir| match cli.command {
        Command::Blob(cmd) => blob::run(cmd, &dir),
        Command::Staging(cmd) => staging::run(cmd, &dir),
        Command::Identity { cmd, json } => identity::run(cmd, &dir, json),
        Command::Gc(args) => gc::run(args, &dir),
        Command::Fsck(args) => fsck::run(args, &dir),
        Command::Chunk(cmd) => chunk::run(cmd, &dir),
        Command::Repair(args) => repair::run(args, &dir),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if err.is_broken_pipe() => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("net-mesh: error: {}", err.one_line());
            ExitCode::from(err.exit_code())
        }
    }
}
