//! `net-mesh gc`: delete unreferenced objects past a grace period and compact sparse segments,
//! on the local store or (`--node`, admin only) on a node, printed the same way.

use crate::outln;
use std::time::Duration;

use clap::Args;
use net_mesh_engine::{ErrorClass, GcOptions, GcReport, StoreConfig};
use net_mesh_rpc::NodeAddr;
use serde_json::{Value, json};

use crate::Ctx;
use crate::output::{CliError, CliResult};
use crate::remote::Remote;

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Only delete objects unreferenced for longer than this, counted from when their reference
    /// count last fell to 0 (e.g. 24h, 30m, 0s)
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    grace: Duration,
    /// Release resumable uploads with no checkpoint for longer than this, and forget the refs
    /// of uploads that finished longer ago (their own grace, independent of --grace)
    /// [default: 24h; with --node: the node's]
    #[arg(long, value_parser = parse_duration)]
    staging_grace: Option<Duration>,
    /// Report what would be freed; change nothing
    #[arg(long)]
    dry_run: bool,
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
    /// Compact sealed segments whose live fraction is below this (0 disables)
    #[arg(long, hide = true)]
    compact_threshold: Option<f64>,
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

/// A number of a report object (0 if absent).
fn num(r: &Value, key: &str) -> u64 {
    r.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// The strings of a report object's list `key`.
fn texts<'r>(r: &'r Value, key: &str) -> impl Iterator<Item = &'r str> {
    r.get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

/// The objects of a report object's list `key`.
fn objects<'r>(r: &'r Value, key: &str) -> impl Iterator<Item = &'r Value> {
    r.get(key).and_then(Value::as_array).into_iter().flatten()
}

/// The text of field `key` of `v` (`""` if absent).
fn field<'v>(v: &'v Value, key: &str) -> std::borrow::Cow<'v, str> {
    match v.get(key) {
        Some(Value::String(s)) => std::borrow::Cow::Borrowed(s),
        Some(other) => std::borrow::Cow::Owned(other.to_string()),
        None => std::borrow::Cow::Borrowed(""),
    }
}

/// The text report, from the `gc --json` object.
fn print_text(r: &Value) -> CliResult {
    let dry_run = r.get("dry_run").and_then(Value::as_bool).unwrap_or(false);
    for h in objects(r, "released_holds") {
        outln!(
            "released {} {} (idle for longer than its grace)",
            field(h, "namespace"),
            field(h, "what")
        );
    }
    let verb = if dry_run { "would free" } else { "freed" };
    outln!(
        "{verb} {} objects ({} chunks, {} nodes), {} of payload",
        num(r, "objects_freed"),
        num(r, "chunks_freed"),
        num(r, "nodes_freed"),
        bytes(num(r, "bytes_freed"))
    );
    let verb = if dry_run {
        "would compact"
    } else {
        "compacted"
    };
    outln!(
        "{verb} {} segments ({} removed), copied {} records / {}",
        num(r, "segments_compacted"),
        num(r, "segments_removed"),
        num(r, "records_copied"),
        bytes(num(r, "bytes_copied"))
    );
    outln!(
        "segment files: {} -> {}",
        bytes(num(r, "disk_bytes_before")),
        bytes(num(r, "disk_bytes_after"))
    );
    if num(r, "skipped_referenced") > 0 {
        outln!(
            "{} objects were referenced again during the sweep and kept",
            num(r, "skipped_referenced")
        );
    }
    for s in objects(r, "stripe_refusals") {
        outln!(
            "kept chunk {} of stripe {} of live erasure-coded blob {} (stored count is wrong; run fsck --repair)",
            field(s, "chunk"),
            field(s, "stripe"),
            field(s, "blob_id")
        );
    }
    for n in texts(r, "unreadable_nodes") {
        outln!("kept unreadable node {n} (run fsck)");
    }
    for f in texts(r, "orphan_files") {
        outln!("could not unlink {f}; left as an orphan for fsck --repair");
    }
    for n in texts(r, "compaction_notes") {
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

/// The fields of `gc --json`, in the order `report_json` builds them.
const REPORT_FIELDS: [&str; 22] = [
    "dry_run",
    "grace_secs",
    "candidates",
    "objects_freed",
    "chunks_freed",
    "nodes_freed",
    "bytes_freed",
    "skipped_referenced",
    "skipped_young",
    "skipped_in_use",
    "stripe_refusals",
    "unreadable_nodes",
    "missing_children",
    "segments_compacted",
    "segments_removed",
    "records_copied",
    "bytes_copied",
    "disk_bytes_before",
    "disk_bytes_after",
    "orphan_files",
    "compaction_notes",
    "released_holds",
];

/// A node's report (the engine's report as JSON) cut to the fields `gc --json` prints.
fn node_report(text: &str) -> CliResult<Value> {
    let bad = |why: String| CliError::msg(ErrorClass::Io, format!("the node's gc report: {why}"));
    let full: Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    let mut out = serde_json::Map::new();
    for key in REPORT_FIELDS {
        let value = full
            .get(key)
            .ok_or_else(|| bad(format!("no field {key}")))?;
        out.insert(key.to_string(), value.clone());
    }
    Ok(Value::Object(out))
}

pub fn run(args: GcArgs, ctx: &Ctx) -> CliResult {
    let report = match &ctx.node {
        Some(addr) => run_on_node(&args, ctx, addr)?,
        None => {
            let compact_threshold = args
                .compact_threshold
                .unwrap_or(net_mesh_engine::gc::DEFAULT_COMPACT_THRESHOLD);
            if !(0.0..=1.0).contains(&compact_threshold) {
                return Err(CliError::msg(
                    ErrorClass::Usage,
                    "--compact-threshold must be between 0 and 1",
                ));
            }
            let store = crate::open::open_with_staging_grace(
                &ctx.dir,
                StoreConfig::default(),
                args.staging_grace
                    .unwrap_or(net_mesh_staging::DEFAULT_ABANDON_GRACE),
            )?;
            let progress = net_mesh_engine::Progress::new();
            let display = crate::output::show_stages(&progress, "gc");
            let report = store.gc(&GcOptions {
                grace: args.grace,
                dry_run: args.dry_run,
                compact_threshold,
                progress,
            });
            drop(display);
            report_json(&report?)
        }
    };
    if args.json {
        outln!("{report}");
    } else {
        print_text(&report)?;
    }
    Ok(())
}

/// `gc --node`: the node runs it with its own staging grace and compaction threshold.
fn run_on_node(args: &GcArgs, ctx: &Ctx, addr: &NodeAddr) -> CliResult<Value> {
    if args.staging_grace.is_some() || args.compact_threshold.is_some() {
        return Err(CliError::msg(
            ErrorClass::Usage,
            "--staging-grace and --compact-threshold are the node's own with --node",
        ));
    }
    let mut remote = Remote::connect(ctx, addr)?;
    let client = remote.client()?;
    let done = remote.block_on(client.gc(args.grace, args.dry_run))?;
    node_report(&done.report_json)
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
