//! `net-mesh`: the operator's command-line tool over the net-mesh engine, on a local data dir
//! or, with `--node NODE_ADDR`, on a storage node (`net-mesh serve`) through the node client.
//!
//! Exit codes derive from the class of the error (`output::exit_code_of`): 0 ok; 2 usage;
//! 3 integrity failure (hash/chain mismatch, corruption, missing object); 4 refused (nothing was
//! changed); 1 any other error. Errors are one line on stderr.

mod blob;
mod channel;
mod chunk;
mod fsck;
mod gc;
mod identity;
mod interrupt;
mod metrics_http;
mod node_blob;
mod node_put;
mod open;
mod output;
mod remote;
mod repair;
mod serve;
mod staging;
mod status;
mod token;
mod token_revoke;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use net_mesh_engine::ErrorClass;
use net_mesh_engine::index::{DEFAULT_CHANNEL, check_channel_name};
use net_mesh_rpc::NodeAddr;

use crate::output::{CliError, CliResult};

/// Content-addressed, crash-safe blob storage for mesh storage nodes.
#[derive(Debug, Parser)]
#[command(name = "net-mesh", version, about, propagate_version = true)]
struct Cli {
    /// Data directory [default: $NET_MESH_DATA_DIR, else the platform data dir, e.g.
    /// ~/.local/share/net-mesh]
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Run blob, staging, gc and status commands on the node at NODE_ADDR (NODEID@HOST:PORT, as
    /// `serve` prints it) instead of the local data dir. The node must prove to be NODEID:
    /// another node answering is refused before anything is sent
    #[arg(long, global = true, value_name = "NODE_ADDR")]
    node: Option<NodeAddr>,
    /// Identity this process uses on the network (DATA_DIR/identities/NAME.key), created on first
    /// use: the client's with --node, the node's with serve
    #[arg(long, global = true, value_name = "NAME", default_value = "default")]
    identity: String,
    /// Permission token chain (text form, `nmt1…`, links joined with `.`) every node call
    /// carries (with --node): the node lets through what it grants --identity, beyond its allow
    /// list
    #[arg(
        long,
        global = true,
        value_name = "TOKEN",
        conflicts_with = "token_file"
    )]
    token: Option<String>,
    /// File holding the permission token chain in text form, on one line (see --token)
    #[arg(long, global = true, value_name = "FILE")]
    token_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// What every command is run with: the data dir and the global network options.
#[derive(Debug)]
pub struct Ctx {
    pub dir: PathBuf,
    /// `--node`: the node to run on instead of the local data dir.
    pub node: Option<NodeAddr>,
    /// `--identity`: the identity's name in the data dir.
    pub identity: String,
    /// `--token`: the permission token chain's text, for node calls.
    pub token: Option<String>,
    /// `--token-file`: a file holding the chain's text on one line.
    pub token_file: Option<PathBuf>,
    /// `blob --channel`, `staging --channel`: the channel blob and staging commands act on
    /// (`default` for other commands).
    pub channel: String,
}

impl Ctx {
    /// Refuses `--node` for a command that only works on the local data dir.
    pub fn local_only(&self, command: &str) -> CliResult {
        match &self.node {
            None => Ok(()),
            Some(_) => Err(CliError::msg(
                ErrorClass::Usage,
                format!("`{command}` works on the local data dir only; drop --node"),
            )),
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Store, read, inspect and unpin blobs
    Blob(BlobArgs),
    /// Channels (named namespaces of pins): create, ls
    #[command(subcommand)]
    Channel(channel::ChannelCmd),
    /// Node identities (ed25519): generate, show
    Identity {
        #[command(subcommand)]
        cmd: identity::IdentityCmd,
        /// Print JSON
        #[arg(long, global = true)]
        json: bool,
    },
    /// Resumable uploads of a channel: list, resume, abort
    Staging(staging::StagingArgs),
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
    /// Serve the data dir's store as a storage node; prints NODE_ADDR (NODEID@HOST:PORT) on
    /// stdout once it accepts connections, logs to stderr, exits 0 on SIGTERM/SIGINT
    Serve(serve::ServeArgs),
    /// Node id, version, uptime, store bytes, blob count, live uploads, sessions, bytes in/out
    /// and capability tags of a node (--node), or the numbers of the local store that apply
    Status(status::StatusArgs),
    /// Permission tokens: mint (signed by --identity), inspect, revoke
    #[command(subcommand)]
    Token(token::TokenCmd),
}

/// `blob`: the channel its pins live in, and the subcommand.
#[derive(Debug, clap::Args)]
struct BlobArgs {
    /// The channel whose pins `put` makes, `ls` lists, `rm` removes and id prefixes name
    /// (created with `channel create`)
    #[arg(long, global = true, value_name = "NAME", default_value = DEFAULT_CHANNEL)]
    channel: String,
    #[command(subcommand)]
    cmd: blob::BlobCmd,
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
    let result = data_dir(cli.data_dir).and_then(|dir| {
        let channel = match &cli.command {
            Command::Blob(args) => args.channel.clone(),
            Command::Staging(args) => args.channel.clone(),
            _ => DEFAULT_CHANNEL.to_string(),
        };
        check_channel_name(&channel).map_err(|e| CliError::msg(ErrorClass::Usage, e))?;
        let ctx = Ctx {
            dir,
            node: cli.node,
            identity: cli.identity,
            token: cli.token,
            token_file: cli.token_file,
            channel,
        };
        let dir = ctx.dir.as_path();
        match cli.command {
            Command::Blob(args) => blob::run(args.cmd, &ctx),
            Command::Channel(cmd) => channel::run(cmd, &ctx),
            Command::Staging(args) => staging::run(args.cmd, &ctx),
            Command::Identity { cmd, json } => {
                ctx.local_only("identity")?;
                identity::run(cmd, dir, json)
            }
            Command::Gc(args) => gc::run(args, &ctx),
            Command::Fsck(args) => {
                ctx.local_only("fsck")?;
                fsck::run(args, dir)
            }
            Command::Chunk(cmd) => {
                ctx.local_only("chunk")?;
                chunk::run(cmd, dir)
            }
            Command::Repair(args) => {
                ctx.local_only("repair")?;
                repair::run(args, dir)
            }
            Command::Serve(args) => serve::run(args, &ctx),
            Command::Status(args) => status::run(args, &ctx),
            Command::Token(cmd) => token::run(cmd, &ctx),
        }
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
