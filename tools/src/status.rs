//! `net-mesh status`: a node's numbers (`--node`), or those of the local store that apply (the
//! others are `-`, `null` in JSON).

use net_mesh_engine::StoreConfig;
use net_mesh_node::proto::StreamRow;
use net_mesh_rpc::Identity;
use serde_json::json;

use crate::Ctx;
use crate::outln;
use crate::output::CliResult;
use crate::remote::Remote;

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Print a JSON object
    #[arg(long)]
    json: bool,
}

/// What `status` prints; `None` for what a local store does not have.
#[derive(Debug)]
struct StatusView {
    node_id: Option<String>,
    version: String,
    uptime_secs: Option<u64>,
    store_bytes: u64,
    blob_count: u64,
    live_uploads: u64,
    open_sessions: Option<u64>,
    bytes_in: Option<u64>,
    bytes_out: Option<u64>,
    capabilities: Option<Vec<String>>,
    /// The node's live streams with their bandwidth class counters.
    streams: Option<Vec<StreamRow>>,
}

pub fn run(args: StatusArgs, ctx: &Ctx) -> CliResult {
    let view = match &ctx.node {
        Some(addr) => {
            let mut remote = Remote::connect(ctx, addr)?;
            let client = remote.client()?;
            let s = remote.block_on(client.status())?;
            StatusView {
                node_id: Some(s.node_id),
                version: s.version,
                uptime_secs: Some(s.uptime_secs),
                store_bytes: s.store_bytes,
                blob_count: s.blob_count,
                live_uploads: s.live_uploads,
                open_sessions: Some(s.open_sessions),
                bytes_in: Some(s.bytes_in),
                bytes_out: Some(s.bytes_out),
                capabilities: Some(s.capabilities),
                streams: Some(s.streams),
            }
        }
        None => {
            let store = crate::open::open(&ctx.dir, StoreConfig::default())?;
            StatusView {
                // The identity a `serve` on this data dir would use, if it exists.
                node_id: Identity::load(&ctx.dir, &ctx.identity)
                    .ok()
                    .map(|i| i.node_id().to_hex()),
                version: env!("CARGO_PKG_VERSION").to_string(),
                uptime_secs: None,
                store_bytes: store.disk_bytes(),
                blob_count: store.pin_rows()?,
                live_uploads: net_mesh_staging::staged_upload_count(&store)?,
                open_sessions: None,
                bytes_in: None,
                bytes_out: None,
                capabilities: None,
                streams: None,
            }
        }
    };
    print(&view, args.json)
}

fn print(v: &StatusView, as_json: bool) -> CliResult {
    if as_json {
        outln!(
            "{}",
            json!({
                "node_id": v.node_id,
                "version": v.version,
                "uptime_secs": v.uptime_secs,
                "store_bytes": v.store_bytes,
                "blob_count": v.blob_count,
                "live_uploads": v.live_uploads,
                "open_sessions": v.open_sessions,
                "bytes_in": v.bytes_in,
                "bytes_out": v.bytes_out,
                "capabilities": v.capabilities,
                "streams": v.streams.as_ref().map(|rows| rows.iter().map(|s| json!({
                    "id": s.id,
                    "kind": s.kind,
                    "current_bandwidth_class": s.class.name(),
                    "bytes_in_class": s.bytes_in_class,
                    "paused_for_higher_class_ms": s.paused_for_higher_class_ms,
                })).collect::<Vec<_>>()),
            })
        );
        return Ok(());
    }
    let or_dash = |n: Option<u64>| n.map_or_else(|| "-".to_string(), |n| n.to_string());
    outln!("node_id        {}", v.node_id.as_deref().unwrap_or("-"));
    outln!("version        {}", v.version);
    outln!("uptime_secs    {}", or_dash(v.uptime_secs));
    outln!("store_bytes    {}", v.store_bytes);
    outln!("blob_count     {}", v.blob_count);
    outln!("live_uploads   {}", v.live_uploads);
    outln!("open_sessions  {}", or_dash(v.open_sessions));
    outln!("bytes_in       {}", or_dash(v.bytes_in));
    outln!("bytes_out      {}", or_dash(v.bytes_out));
    outln!(
        "capabilities   {}",
        match &v.capabilities {
            Some(tags) if !tags.is_empty() => tags.join(","),
            _ => "-".to_string(),
        }
    );
    for s in v.streams.iter().flatten() {
        outln!(
            "stream         {} {} {} bytes_in_class={} paused_for_higher_class_ms={}",
            s.id,
            s.kind,
            s.class.name(),
            s.bytes_in_class,
            s.paused_for_higher_class_ms
        );
    }
    Ok(())
}
