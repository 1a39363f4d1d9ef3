//! `net-mesh chunk …` and `net-mesh blob chunks`: per-chunk operator tools.

use crate::outln;
use std::io::Write;
use std::ops::ControlFlow;
use std::path::Path;

use clap::Subcommand;
use net_mesh_engine::codec::{BlobRef, Hash};
use net_mesh_engine::erasure::stripe::role_name;
use net_mesh_engine::error::hex;
use net_mesh_engine::{ErrorClass, Store, StoreConfig};
use net_mesh_node::proto::ChunkRow;
use serde_json::json;

use crate::output::{CliError, CliResult, ErrorContext};

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
    let mut printer = ChunkPrinter::new(as_json);
    // Stopped early only by a failed write, which `finish` reports.
    let _stopped = store.for_each_chunk(blob_ref, &mut |c| {
        printer.print(&ChunkRow {
            hash: c.hash,
            size: c.size,
            role: role_name(c.role).to_string(),
            stripe: c.stripe,
        })
    })?;
    printer.finish()
}

/// `blob chunks`' output, written row by row as the rows come (a listing of millions of
/// chunks is never held whole): a line per chunk, or with `--json` one array of
/// `{hash, size, role, stripe}` on one line. A listing that fails midway leaves the array
/// unclosed (and the command fails), so a partial listing never parses as a whole one.
pub struct ChunkPrinter {
    out: std::io::BufWriter<std::io::Stdout>,
    as_json: bool,
    rows: u64,
    /// The write that failed, reported by [`ChunkPrinter::finish`].
    failed: Option<CliError>,
}

impl ChunkPrinter {
    pub fn new(as_json: bool) -> ChunkPrinter {
        ChunkPrinter {
            out: std::io::BufWriter::new(std::io::stdout()),
            as_json,
            rows: 0,
            failed: None,
        }
    }

    /// Prints one row; `Break` once a write failed (the listing should stop there).
    pub fn print(&mut self, c: &ChunkRow) -> ControlFlow<()> {
        match self.row(c) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                self.failed = Some(e);
                ControlFlow::Break(())
            }
        }
    }

    fn row(&mut self, c: &ChunkRow) -> CliResult {
        let written = if self.as_json {
            let row = json!({
                "hash": hex(&c.hash),
                "size": c.size,
                "role": c.role,
                "stripe": c.stripe,
            });
            let open = if self.rows == 0 { "[" } else { "," };
            write!(self.out, "{open}{row}")
        } else {
            let stripe = c
                .stripe
                .map(|s| s.to_string())
                .unwrap_or_else(|| "-".into());
            writeln!(
                self.out,
                "{}  {:>8}  {:<6}  {stripe}",
                hex(&c.hash),
                c.size,
                c.role
            )
        };
        self.rows = self.rows.saturating_add(1);
        written.with_class(ErrorClass::Io, || "writing stdout")
    }

    /// Closes the listing (the JSON array) and flushes it, or reports the write that failed.
    pub fn finish(mut self) -> CliResult {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let closed = match (self.as_json, self.rows) {
            (false, _) => Ok(()),
            (true, 0) => writeln!(self.out, "[]"),
            (true, _) => writeln!(self.out, "]"),
        };
        closed
            .and_then(|()| self.out.flush())
            .with_class(ErrorClass::Io, || "writing stdout")
    }
}
