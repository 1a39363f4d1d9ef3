//! `net-mesh token revoke --issuer NODEID --below-generation N`: from now on the node refuses
//! every token of that issuer whose issuer generation is below N (admin). With `--node` the
//! node does it and enforces it from its next call; without, it is written to the local data
//! dir's store, which a `serve` on it loads at start. Floors only rise: a lower N keeps the
//! higher floor, and the floor in force is printed either way.

use net_mesh_engine::{ErrorClass, StoreConfig};
use net_mesh_node::revoke::{Floors, raise_floor};
use net_mesh_rpc::NodeId;
use serde_json::json;

use crate::Ctx;
use crate::outln;
use crate::output::{CliError, CliResult};
use crate::remote::Remote;

/// `token revoke` options.
#[derive(Debug, clap::Args)]
pub struct RevokeArgs {
    /// The issuer whose older tokens are revoked: its node id (as `identity show` prints it)
    #[arg(long, value_name = "NODEID")]
    issuer: String,
    /// Refuse the issuer's tokens whose generation is below N (mint new ones at N or above)
    #[arg(long, value_name = "N")]
    below_generation: u32,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

pub fn run(args: RevokeArgs, ctx: &Ctx) -> CliResult {
    let issuer: NodeId = NodeId::from_hex(&args.issuer).map_err(|e| {
        CliError::msg(
            ErrorClass::Usage,
            format!("--issuer {:?} is not a node id: {e}", args.issuer),
        )
    })?;
    let floor = match &ctx.node {
        Some(addr) => {
            let mut remote = Remote::connect(ctx, addr)?;
            let client = remote.client()?;
            remote.block_on(client.token_revoke(&issuer, args.below_generation))?
        }
        None => {
            let store = crate::open::open(&ctx.dir, StoreConfig::default())?;
            raise_floor(
                &store,
                &Floors::default(),
                *issuer.as_bytes(),
                args.below_generation,
            )?
        }
    };
    if args.json {
        outln!(
            "{}",
            json!({ "issuer": issuer.to_hex(), "below_generation": floor })
        );
    } else {
        outln!(
            "issuer {} tokens below generation {floor} are refused",
            issuer.to_hex()
        );
    }
    Ok(())
}
