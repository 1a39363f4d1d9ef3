//! `net-mesh fsck`: offline consistency check (and `--repair`) of a store.

use crate::outln;
use std::path::Path;

use clap::Args;
use net_mesh_engine::fsck::{FsckOptions, FsckReport, ReadData, Severity, fsck};
use net_mesh_engine::{Classify, ErrorClass, StoreConfig};

use crate::output::{CliError, CliResult};

/// fsck found problems: an integrity failure (exit code 3).
#[derive(Debug)]
pub struct ProblemsFound(pub usize);

impl Classify for ProblemsFound {
    fn class(&self) -> ErrorClass {
        ErrorClass::Integrity
    }
}

impl std::fmt::Display for ProblemsFound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "fsck found {} problem(s)", self.0)
    }
}

impl std::error::Error for ProblemsFound {}

#[derive(Debug, Args)]
pub struct FsckArgs {
    /// Print the report (problems with kind and location) as JSON
    #[arg(long)]
    json: bool,
    /// Read and hash every chunk
    #[arg(long, conflicts_with = "read_data_subset")]
    read_data: bool,
    /// Read and hash a random PCT percent of the chunks (e.g. 10 or 2.5%)
    #[arg(long, value_name = "PCT", value_parser = parse_pct)]
    read_data_subset: Option<f64>,
    /// Stop reading data after D (e.g. 10m); the next run continues where this one stopped
    #[arg(long, value_name = "D", value_parser = crate::gc::parse_duration)]
    max_duration: Option<std::time::Duration>,
    /// Fix what can be fixed without losing data, and say what was done
    #[arg(long)]
    repair: bool,
    /// Hashing threads for the data phase
    #[arg(long, default_value_t = 2, hide = true)]
    threads: usize,
}

fn parse_pct(text: &str) -> Result<f64, String> {
    let v: f64 = text
        .trim()
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("invalid percentage {text:?}"))?;
    if !(0.0..=100.0).contains(&v) {
        return Err(format!("percentage {v} is outside 0..=100"));
    }
    Ok(v)
}

fn print_text(r: &FsckReport) -> CliResult {
    for p in &r.problems {
        if p.severity == Severity::Info {
            continue;
        }
        let mut loc = Vec::new();
        if let Some(s) = p.location.segment {
            loc.push(format!("segment {s}"));
        }
        if let Some(o) = p.location.offset {
            loc.push(format!("offset {o}"));
        }
        if let Some(o) = &p.location.object {
            loc.push(format!("object {o}"));
        }
        if let Some(path) = &p.location.path {
            loc.push(path.clone());
        }
        let kind = serde_json::to_value(p.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let fixed = if p.repaired { " [repaired]" } else { "" };
        outln!("{kind}: {}: {}{fixed}", loc.join(", "), p.detail);
    }
    for b in &r.affected_blobs {
        outln!("affected blob {} {:?}", b.blob_id, b.name);
    }
    for line in &r.repairs {
        outln!("repair: {line}");
    }
    let s = &r.stats;
    outln!(
        "checked {} segments, {} records, {} objects ({} chunks, {} nodes), {} pins, {} extension holds; {} orphan records ({}) await compaction",
        s.segments,
        s.records,
        s.objects,
        s.chunks,
        s.nodes,
        s.pins,
        s.extension_holds,
        s.orphan_records,
        crate::gc::bytes(s.orphan_record_bytes)
    );
    let d = &r.data;
    if d.mode != "none" {
        outln!(
            "data ({}): read {} of {} selected chunks ({}){}; next run starts at segment {} offset {}; {} full passes",
            d.mode,
            d.checked,
            d.selected,
            crate::gc::bytes(d.checked_bytes),
            if d.complete {
                ""
            } else {
                ", stopped by --max-duration"
            },
            d.next_at.0,
            d.next_at.1,
            d.passes_completed
        );
    }
    outln!("{} problem(s)", r.problem_count());
    Ok(())
}

pub fn run(args: FsckArgs, dir: &Path) -> CliResult {
    let read_data = match (args.read_data, args.read_data_subset) {
        (true, _) => ReadData::All,
        (false, Some(p)) => ReadData::Subset(p),
        (false, None) => ReadData::None,
    };
    let progress = net_mesh_engine::Progress::new();
    let display = crate::output::show_stages(&progress, "fsck");
    let report = fsck(
        dir,
        crate::open::options(
            StoreConfig::default(),
            net_mesh_staging::DEFAULT_ABANDON_GRACE,
        ),
        &FsckOptions {
            read_data,
            max_duration: args.max_duration,
            repair: args.repair,
            threads: args.threads,
            progress,
        },
    );
    drop(display);
    let report = report?;
    if args.json {
        outln!(
            "{}",
            serde_json::to_string(&report).map_err(CliError::unclassified)?
        );
    } else {
        print_text(&report)?;
    }
    match report.problem_count() {
        0 => Ok(()),
        n => Err(ProblemsFound(n).into()),
    }
}
