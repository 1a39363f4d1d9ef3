//! `net-mesh gc`: delete unreferenced objects past a grace period and compact sparse segments.

use crate::outln;
use std::path::Path;
use std::time::Duration;

use clap::Args;
use net_mesh_engine::{ErrorClass, GcOptions, GcReport, StoreConfig};
use serde_json::json;

use crate::output::{CliError, CliResult};

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Only delete objects unreferenced for longer than this, counted from when their reference
    /// count last fell to 0 (e.g. 24h, 30m, 0s)
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    grace: Duration,
    /// Release resumable uploads with no checkpoint for longer than this, and forget the refs
    /// of uploads that finished longer ago (their own grace, independent of --grace)
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    staging_grace: Duration,
    /// Report what would be freed; change nothing
    #[arg(long)]
    dry_run: bool,
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
    /// Compact sealed segments whose live fraction is below this (0 disables)
    #[arg(long, default_value_t = net_mesh_engine::gc::DEFAULT_COMPACT_THRESHOLD, hide = true)]
    compact_threshold: f64,
}

/// Parses durations like `24h`, `30m`, `90s`, `500ms`, `2d`, `1h30m`, `0` (seconds if no unit).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!(
                "invalid duration {text:?} (expected e.g. 24h, 30m, 0s)"
            ));
        }
        let (num, tail) = rest.split_at(digits);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("number too large in {text:?}"))?;
        let unit_len = tail.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
        let (unit, tail) = tail.split_at(unit_len);
        let part = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "d" => Duration::from_secs(n.saturating_mul(86_400)),
            other => {
                return Err(format!(
                    "unknown unit {other:?} in {text:?} (use ms, s, m, h, d)"
                ));
            }
        };
        total = total.saturating_add(part);
        rest = tail;
    }
    Ok(total)
}

/// Human-readable byte count.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let name = UNITS.get(unit).copied().unwrap_or("B");
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {name}")
    }
}

fn print_text(r: &GcReport) -> CliResult {
    for h in &r.released_holds {
        outln!(
            "released {} {} (idle for longer than its grace)",
            h.namespace,
            h.what
        );
    }
    let verb = if r.dry_run { "would free" } else { "freed" };
    outln!(
        "{verb} {} objects ({} chunks, {} nodes), {} of payload",
        r.objects_freed,
        r.chunks_freed,
        r.nodes_freed,
        bytes(r.bytes_freed)
    );
    let verb = if r.dry_run {
        "would compact"
    } else {
        "compacted"
    };
    outln!(
        "{verb} {} segments ({} removed), copied {} records / {}",
        r.segments_compacted,
        r.segments_removed,
        r.records_copied,
        bytes(r.bytes_copied)
    );
    outln!(
        "segment files: {} -> {}",
        bytes(r.disk_bytes_before),
        bytes(r.disk_bytes_after)
    );
    if r.skipped_referenced > 0 {
        outln!(
            "{} objects were referenced again during the sweep and kept",
            r.skipped_referenced
        );
    }
    for s in &r.stripe_refusals {
        outln!(
            "kept chunk {} of stripe {} of live erasure-coded blob {} (stored count is wrong; run fsck --repair)",
            s.chunk,
            s.stripe,
            s.blob_id
        );
    }
    for n in &r.unreadable_nodes {
        outln!("kept unreadable node {n} (run fsck)");
    }
    for f in &r.orphan_files {
        outln!("could not unlink {f}; left as an orphan for fsck --repair");
    }
    for n in &r.compaction_notes {
        outln!("{n}");
    }
    Ok(())
}

/// The `gc --json` object. Built field by field so that the CLI's output stays what the
/// README documents whatever the engine's report type grows.
fn report_json(r: &GcReport) -> serde_json::Value {
    let released: Vec<_> = r
        .released_holds
        .iter()
        .map(|h| json!({"namespace": h.namespace, "what": h.what}))
        .collect();
    let refusals: Vec<_> = r
        .stripe_refusals
        .iter()
        .map(|s| json!({"chunk": s.chunk, "blob_id": s.blob_id, "stripe": s.stripe}))
        .collect();
    json!({
        "dry_run": r.dry_run,
        "grace_secs": r.grace_secs,
        "candidates": r.candidates,
        "objects_freed": r.objects_freed,
        "chunks_freed": r.chunks_freed,
        "nodes_freed": r.nodes_freed,
        "bytes_freed": r.bytes_freed,
        "skipped_referenced": r.skipped_referenced,
        "skipped_young": r.skipped_young,
        "skipped_in_use": r.skipped_in_use,
        "stripe_refusals": refusals,
        "unreadable_nodes": r.unreadable_nodes,
        "missing_children": r.missing_children,
        "segments_compacted": r.segments_compacted,
        "segments_removed": r.segments_removed,
        "records_copied": r.records_copied,
        "bytes_copied": r.bytes_copied,
        "disk_bytes_before": r.disk_bytes_before,
        "disk_bytes_after": r.disk_bytes_after,
        "orphan_files": r.orphan_files,
        "compaction_notes": r.compaction_notes,
        "released_holds": released,
    })
}

pub fn run(args: GcArgs, dir: &Path) -> CliResult {
    if !(0.0..=1.0).contains(&args.compact_threshold) {
        return Err(CliError::msg(
            ErrorClass::Usage,
            "--compact-threshold must be between 0 and 1",
        ));
    }
    let store =
        crate::open::open_with_staging_grace(dir, StoreConfig::default(), args.staging_grace)?;
    let report = store.gc(&GcOptions {
        grace: args.grace,
        dry_run: args.dry_run,
        compact_threshold: args.compact_threshold,
    })?;
    if args.json {
        outln!("{}", report_json(&report));
    } else {
        print_text(&report)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("").is_err());
    }
}
