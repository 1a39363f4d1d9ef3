//! `net-mesh identity generate NAME` / `net-mesh identity show NAME`: node identities stored as
//! `<data_dir>/identities/<NAME>.key` (format in docs/FORMAT.md section 5.1).

use std::path::Path;

use anyhow::Context;
use net_mesh::Identity;

/// Identity subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum IdentityCmd {
    /// Generate a new ed25519 identity NAME (mode 0600; never overwrites) and print its node id.
    Generate {
        /// Identity name: 1-64 characters from [A-Za-z0-9_-].
        name: String,
    },
    /// Show the node id, public key and key file of identity NAME.
    Show {
        /// Identity name.
        name: String,
    },
}

/// Runs an identity subcommand against `data_dir`.
pub fn run(cmd: IdentityCmd, data_dir: &Path, json: bool) -> anyhow::Result<()> {
    let (name, identity, created) = match cmd {
        IdentityCmd::Generate { name } => {
            let identity = Identity::generate(data_dir, &name)
                .with_context(|| format!("generating identity {name:?}"))?;
            (name, identity, true)
        }
        IdentityCmd::Show { name } => {
            let identity = Identity::load(data_dir, &name)
                .with_context(|| format!("loading identity {name:?}"))?;
            (name, identity, false)
        }
    };
    let key_file = Identity::key_path(data_dir, &name)?;
    let node_id = identity.node_id().to_hex();
    if json {
        let out = serde_json::json!({
            "name": name,
            "node_id": node_id,
            "public_key": identity.public_key_hex(),
            "key_file": key_file.display().to_string(),
            "created": created,
        });
        println!("{out}");
    } else if created {
        println!("{node_id}");
    } else {
        println!("node_id    {node_id}");
        println!("public_key {}", identity.public_key_hex());
        println!("key_file   {}", key_file.display());
    }
    Ok(())
}
