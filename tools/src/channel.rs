//! `net-mesh channel create NAME` / `channel ls`: the channels of the local store, or of a node
//! (`--node`; creating needs admin there). A channel is a named namespace of pins (`blob
//! --channel`); `default` exists everywhere. Creating one that exists changes nothing and says
//! so (exit 0); an invalid name is a usage error (exit 2).

use net_mesh_engine::{ErrorClass, StoreConfig};
use serde_json::json;

use crate::Ctx;
use crate::outln;
use crate::output::{CliError, CliResult};
use crate::remote::Remote;

/// Channel subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ChannelCmd {
    /// Create a channel (1..=64 bytes of a-z 0-9 - _ . not starting with .)
    Create {
        name: String,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// List the channels with their pin counts
    Ls {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
}

/// One channel as listed.
struct Row {
    name: String,
    created_unix_ms: u64,
    pins: u64,
}

pub fn run(cmd: ChannelCmd, ctx: &Ctx) -> CliResult {
    match cmd {
        ChannelCmd::Create { name, json } => {
            net_mesh_engine::index::check_channel_name(&name)
                .map_err(|e| CliError::msg(ErrorClass::Usage, e))?;
            let created = match &ctx.node {
                Some(addr) => {
                    let mut remote = Remote::connect(ctx, addr)?;
                    let client = remote.client()?;
                    remote.block_on(client.channel_create(&name))?
                }
                None => {
                    crate::open::open(&ctx.dir, StoreConfig::default())?.create_channel(&name)?
                }
            };
            if json {
                outln!("{}", json!({ "channel": name, "created": created }));
            } else if created {
                outln!("created channel {name}");
            } else {
                outln!("channel {name} exists");
            }
        }
        ChannelCmd::Ls { json } => {
            let rows: Vec<Row> = match &ctx.node {
                Some(addr) => {
                    let mut remote = Remote::connect(ctx, addr)?;
                    let client = remote.client()?;
                    remote
                        .block_on(client.channel_list())?
                        .into_iter()
                        .map(|c| Row {
                            name: c.name,
                            created_unix_ms: c.created_unix_ms,
                            pins: c.pins,
                        })
                        .collect()
                }
                None => crate::open::open(&ctx.dir, StoreConfig::default())?
                    .channels()?
                    .into_iter()
                    .map(|c| Row {
                        name: c.name,
                        created_unix_ms: c.created_unix_ms,
                        pins: c.pins,
                    })
                    .collect(),
            };
            if json {
                let rows: Vec<_> = rows
                    .iter()
                    .map(|r| {
                        json!({
                            "name": r.name,
                            "pins": r.pins,
                            "created_unix_ms": r.created_unix_ms,
                        })
                    })
                    .collect();
                outln!("{}", serde_json::Value::Array(rows));
            } else {
                for r in &rows {
                    outln!("{:<24} {:>8} pins", r.name, r.pins);
                }
            }
        }
    }
    Ok(())
}
