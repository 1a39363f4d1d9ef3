//! `net-mesh identity generate NAME` / `net-mesh identity show NAME`: node identities stored as
//! `<data_dir>/identities/<NAME>.key` (format in docs/FORMAT.md section 5.1).

use std::path::Path;

use net_mesh_engine::ErrorClass;
use net_mesh_rpc::{Identity, IdentityError};

use crate::outln;
use crate::output::{CliError, CliResult};

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
pub fn run(cmd: IdentityCmd, data_dir: &Path, json: bool) -> CliResult {
    let (name, identity, created) = match cmd {
        IdentityCmd::Generate { name } => {
            let identity = Identity::generate(data_dir, &name)
                .map_err(|e| classified(e).context(format!("generating identity {name:?}")))?;
            (name, identity, true)
        }
        IdentityCmd::Show { name } => {
            let identity = Identity::load(data_dir, &name)
                .map_err(|e| classified(e).context(format!("loading identity {name:?}")))?;
            (name, identity, false)
        }
    };
    let key_file = Identity::key_path(data_dir, &name).map_err(classified)?;
    let node_id = identity.node_id().to_hex();
    if json {
        let out = serde_json::json!({
            "name": name,
            "node_id": node_id,
            "public_key": identity.public_key_hex(),
            "key_file": key_file.display().to_string(),
            "created": created,
        });
        outln!("{out}");
    } else if created {
        outln!("{node_id}");
    } else {
        outln!("node_id    {node_id}");
        outln!("public_key {}", identity.public_key_hex());
        outln!("key_file   {}", key_file.display());
    }
    Ok(())
}

/// An identity error with its class (the network crate does not depend on the engine's
/// classification, so the CLI gives it here).
fn classified(e: IdentityError) -> CliError {
    let class = match &e {
        IdentityError::InvalidName(_) => ErrorClass::Usage,
        IdentityError::AlreadyExists(_) => ErrorClass::Refused,
        IdentityError::NotFound(_) => ErrorClass::NotFound,
        IdentityError::Corrupt { .. } => ErrorClass::Integrity,
        IdentityError::Rng(_) | IdentityError::Io { .. } => ErrorClass::Io,
    };
    CliError::new(class, e)
}

/// Identity `name` of `data_dir`, created on first use (with a one-line note on stderr).
pub fn load_or_create(data_dir: &Path, name: &str) -> CliResult<Identity> {
    let loaded = match Identity::load(data_dir, name) {
        Err(IdentityError::NotFound(_)) => match Identity::generate(data_dir, name) {
            Ok(identity) => {
                let key_file = Identity::key_path(data_dir, name).map_err(classified)?;
                eprintln!(
                    "net-mesh: created identity {name:?} (node id {}) in {}",
                    identity.node_id(),
                    key_file.display()
                );
                Ok(identity)
            }
            // Another process created it first.
            Err(IdentityError::AlreadyExists(_)) => Identity::load(data_dir, name),
            Err(e) => Err(e),
        },
        other => other,
    };
    loaded.map_err(|e| classified(e).context(format!("loading identity {name:?}")))
}
