//! Who may call what: the `--allow` file (one peer per line, `NODEID read|write|admin`, `#`
//! comments) and the authorization hook that checks every call against it before the call gets
//! a window. The node's own identity is always admin; without an allow file, nobody else is.
//! Every decision keys on the session's authenticated peer, never on anything in a payload.

use std::collections::HashMap;
use std::path::Path;

use net_mesh_rpc::rpc::{Authorize, Denied};
use net_mesh_rpc::{NodeId, PeerIdentity};

use crate::proto::{Method, Role};

/// Why an allow file was refused.
#[derive(Debug, thiserror::Error)]
pub enum AllowError {
    #[error("cannot read allow file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("allow file line {line}: {reason}")]
    Line { line: usize, reason: String },
}

/// The peers a node serves and the role of each.
#[derive(Debug, Clone)]
pub struct Allow {
    roles: HashMap<NodeId, Role>,
}

impl Allow {
    /// Only `own` (the node's identity), as admin.
    pub fn only(own: NodeId) -> Allow {
        Allow {
            roles: HashMap::from([(own, Role::Admin)]),
        }
    }

    /// Parses an allow file's text; `own` is admin whatever the file says.
    pub fn parse(own: NodeId, text: &str) -> Result<Allow, AllowError> {
        let mut allow = Allow::only(own);
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let bad = |reason: String| AllowError::Line {
                line: i.saturating_add(1),
                reason,
            };
            let mut words = line.split_whitespace();
            let (Some(id), Some(role), None) = (words.next(), words.next(), words.next()) else {
                return Err(bad(format!(
                    "expected `NODEID read|write|admin`, got {line:?}"
                )));
            };
            let id: NodeId = id.parse().map_err(|e| bad(format!("node id: {e}")))?;
            let role = match role {
                "read" => Role::Read,
                "write" => Role::Write,
                "admin" => Role::Admin,
                other => return Err(bad(format!("unknown role {other:?}"))),
            };
            if id != own {
                allow.roles.insert(id, role);
            }
        }
        Ok(allow)
    }

    /// Reads and parses an allow file.
    pub fn load(own: NodeId, path: &Path) -> Result<Allow, AllowError> {
        let text = std::fs::read_to_string(path).map_err(|source| AllowError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Allow::parse(own, &text)
    }

    /// The role of `peer`, if it is allowed at all.
    pub fn role(&self, peer: &NodeId) -> Option<Role> {
        self.roles.get(peer).copied()
    }

    /// Whether `peer` may call `method`.
    pub fn check(&self, peer: &NodeId, method: &str) -> Result<(), Denied> {
        let method =
            Method::from_name(method).ok_or_else(|| Denied(format!("unknown method {method}")))?;
        match self.role(peer) {
            Some(role) if role >= method.role() => Ok(()),
            Some(role) => Err(Denied(format!(
                "{} needs {} but node {peer} has {}",
                method.name(),
                method.role().name(),
                role.name()
            ))),
            None => Err(Denied(format!("node {peer} is not allowed on this node"))),
        }
    }
}

/// The authorization hook: [`Allow::check`] on the session's authenticated peer, counting
/// refusals.
#[derive(Debug)]
pub(crate) struct AllowHook {
    pub(crate) allow: Allow,
    pub(crate) metrics: std::sync::Arc<crate::metrics::Metrics>,
}

impl Authorize for AllowHook {
    fn authorize(&self, peer: &PeerIdentity, method: &str, _metadata: &[u8]) -> Result<(), Denied> {
        let verdict = self.allow.check(&peer.node_id(), method);
        if verdict.is_err() {
            self.metrics.refused(method);
        }
        verdict
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn id(n: u8) -> NodeId {
        format!("{:02x}", n).repeat(32).parse().unwrap()
    }

    #[test]
    fn roles_imply_the_ones_below_and_unknown_peers_are_refused() {
        let text = format!(
            "# peers\n{} read\n{} write  # a comment\n\n{} admin\n",
            id(1),
            id(2),
            id(3)
        );
        let allow = Allow::parse(id(9), &text).unwrap();
        assert!(allow.check(&id(1), "node/v1/read").is_ok());
        assert!(allow.check(&id(1), "node/v1/put").is_err());
        assert!(allow.check(&id(2), "node/v1/put").is_ok());
        assert!(allow.check(&id(2), "node/v1/gc").is_err());
        assert!(allow.check(&id(3), "node/v1/gc").is_ok());
        assert!(
            allow.check(&id(9), "node/v1/gc").is_ok(),
            "own identity is admin"
        );
        assert!(allow.check(&id(4), "node/v1/status").is_err());
        assert!(allow.check(&id(3), "node/v1/nope").is_err());
    }

    #[test]
    fn a_bad_line_is_refused_with_its_number() {
        for bad in ["zz read", "x", "{} root", "{} read extra"] {
            let text = format!("# ok\n{}", bad.replace("{}", &id(1).to_string()));
            let err = Allow::parse(id(9), &text).unwrap_err();
            assert!(
                matches!(err, AllowError::Line { line: 2, .. }),
                "{bad}: {err}"
            );
        }
    }
}
