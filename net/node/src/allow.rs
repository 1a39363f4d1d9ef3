//! Who may call what: the `--allow` file (one peer per line, `NODEID read|write|admin`, `#`
//! comments), the issuers whose permission tokens the node accepts (`--trust`), and the
//! authorization hook that checks every call against them before the call gets a window.
//!
//! A call is let through when the allow list gives the peer the method's role; otherwise when
//! its metadata carries a token chain ([`crate::call_token`]) rooted at a trusted issuer, for
//! the session's authenticated peer key, valid on the channel the call's metadata names (on
//! every channel, `*`, for a method that acts on the whole node: GC, revocation, making and
//! moving channels), now, with the method's right or a higher one. The node's own
//! identity is always admin and always a trusted issuer; without an allow file or `--trust`,
//! nobody else is served except with a token the node itself issued (or delegated from one).
//! Every decision keys on the session's authenticated peer, never on a key or id carried in a
//! payload.

use std::collections::HashMap;
use std::path::Path;

use net_mesh_rpc::rpc::{Authorize, Denied};
use net_mesh_rpc::token::{TokenChannel, Verified};
use net_mesh_rpc::{NodeId, PeerIdentity};

use crate::call_token::{TokenRefusal, TokenTrust, decode_metadata, now_unix_s};
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

/// The node's authorization state: the peers it serves and the role of each, and whose
/// permission tokens it accepts.
#[derive(Debug, Clone)]
pub struct Allow {
    roles: HashMap<NodeId, Role>,
    tokens: TokenTrust,
}

/// Why a call was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No method of that name.
    #[error("unknown method {0}")]
    UnknownMethod(String),
    /// The peer is not in the allow list and brought no token.
    #[error("node {peer} is not in the allow list and brought no permission token")]
    NotAllowed {
        /// The session's peer.
        peer: NodeId,
    },
    /// The peer's role is below the method's and it brought no token.
    #[error("{method} needs {} but node {peer} has {}", .needs.name(), .has.name())]
    RoleTooLow {
        /// The method's name.
        method: &'static str,
        /// The role it needs.
        needs: Role,
        /// The peer's role.
        has: Role,
        /// The session's peer.
        peer: NodeId,
    },
    /// The allow list does not grant the call and the peer's token was refused.
    #[error("{method} by node {peer}: permission token refused: {refusal}")]
    Token {
        /// The method's name.
        method: &'static str,
        /// The session's peer.
        peer: NodeId,
        /// Why the token was refused.
        refusal: TokenRefusal,
    },
}

impl Refusal {
    /// The token refusal's metric label, when a token was refused.
    pub fn token_reason(&self) -> Option<&'static str> {
        match self {
            Refusal::Token { refusal, .. } => Some(refusal.reason()),
            _ => None,
        }
    }
}

/// What let a call through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// The allow list's role.
    Role(Role),
    /// A verified token chain.
    Token(Verified),
}

/// An allow file as parsed: the peers it lists with their roles, before the node's own identity
/// is known (so a bad file is refused before anything is created). [`Allow::from_file`] makes
/// the node's [`Allow`] of it.
#[derive(Debug, Clone, Default)]
pub struct AllowFile {
    roles: Vec<(NodeId, Role)>,
}

impl AllowFile {
    /// Parses an allow file's text. A UTF-8 byte order mark at the start is skipped; a node
    /// id listed on two lines is refused (naming both).
    pub fn parse(text: &str) -> Result<AllowFile, AllowError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut roles = Vec::new();
        let mut listed: HashMap<NodeId, usize> = HashMap::new();
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
            if !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad(format!("node id {id:?} is not hex")));
            }
            let id: NodeId = id.parse().map_err(|e| bad(format!("node id: {e}")))?;
            let line_no = i.saturating_add(1);
            if let Some(first) = listed.insert(id, line_no) {
                return Err(bad(format!(
                    "node {id} is listed twice, on lines {first} and {line_no}"
                )));
            }
            let role = match role {
                "read" => Role::Read,
                "write" => Role::Write,
                "admin" => Role::Admin,
                other => return Err(bad(format!("unknown role {other:?}"))),
            };
            roles.push((id, role));
        }
        Ok(AllowFile { roles })
    }

    /// Reads and parses an allow file; text that is not UTF-8 is refused with its line.
    pub fn load(path: &Path) -> Result<AllowFile, AllowError> {
        let bytes = std::fs::read(path).map_err(|source| AllowError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let valid = e.utf8_error().valid_up_to();
            let before = e.as_bytes().get(..valid).unwrap_or_default();
            AllowError::Line {
                line: before
                    .iter()
                    .filter(|b| **b == b'\n')
                    .count()
                    .saturating_add(1),
                reason: "not UTF-8 text".into(),
            }
        })?;
        AllowFile::parse(&text)
    }
}

impl Allow {
    /// Only `own` (the node's identity), as admin and as the one trusted token issuer.
    pub fn only(own: NodeId) -> Allow {
        Allow {
            roles: HashMap::from([(own, Role::Admin)]),
            tokens: TokenTrust::only(own),
        }
    }

    /// Also accepts token chains rooted at `issuer`.
    pub fn trust(mut self, issuer: NodeId) -> Allow {
        self.tokens.trust(issuer);
        self
    }

    /// Sets the clock tolerance for tokens (default `token::DEFAULT_SKEW_S`).
    pub fn with_skew(mut self, skew_s: u64) -> Allow {
        self.tokens.set_skew(skew_s);
        self
    }

    /// Enforces the node's revocation floors `floors`.
    pub(crate) fn with_floors(mut self, floors: crate::revoke::Floors) -> Allow {
        self.tokens.set_floors(floors);
        self
    }

    /// Whose tokens the node accepts, and its clock tolerance.
    pub fn tokens(&self) -> &TokenTrust {
        &self.tokens
    }

    /// The peers `file` lists, and `own` as admin whatever the file says.
    pub fn from_file(own: NodeId, file: AllowFile) -> Allow {
        let mut allow = Allow::only(own);
        for (id, role) in file.roles {
            if id != own {
                allow.roles.insert(id, role);
            }
        }
        allow
    }

    /// Parses an allow file's text ([`AllowFile::parse`]); `own` is admin whatever it says.
    pub fn parse(own: NodeId, text: &str) -> Result<Allow, AllowError> {
        Ok(Allow::from_file(own, AllowFile::parse(text)?))
    }

    /// Reads and parses an allow file ([`AllowFile::load`]); `own` is admin whatever it says.
    pub fn load(own: NodeId, path: &Path) -> Result<Allow, AllowError> {
        Ok(Allow::from_file(own, AllowFile::load(path)?))
    }

    /// The role of `peer`, if it is allowed at all.
    pub fn role(&self, peer: &NodeId) -> Option<Role> {
        self.roles.get(peer).copied()
    }

    /// Whether a call of `method` by the session peer `peer` (node id and ed25519 key, both
    /// from the handshake) with call metadata `metadata` is let through at `now_unix_s`: the
    /// allow list first, then the metadata's token chain (module docs).
    pub fn authorize(
        &self,
        peer: &NodeId,
        peer_public_key: [u8; 32],
        method: &str,
        metadata: &[u8],
        now_unix_s: u64,
    ) -> Result<Grant, Refusal> {
        let method =
            Method::from_name(method).ok_or_else(|| Refusal::UnknownMethod(method.to_string()))?;
        let refused = |refusal: TokenRefusal| Refusal::Token {
            method: method.name(),
            peer: *peer,
            refusal,
        };
        let call = decode_metadata(metadata).map_err(refused)?;
        let role = self.role(peer);
        if let Some(role) = role
            && role >= method.role()
        {
            return Ok(Grant::Role(role));
        }
        if call.chain.is_empty() {
            return Err(match role {
                Some(has) => Refusal::RoleTooLow {
                    method: method.name(),
                    needs: method.role(),
                    has,
                    peer: *peer,
                },
                None => Refusal::NotAllowed { peer: *peer },
            });
        }
        let verified = self
            .tokens
            .check(
                &call.chain,
                &call.channel,
                peer_public_key,
                method.role(),
                now_unix_s,
            )
            .map_err(refused)?;
        // The chain covers the call's channel, which a node-wide method does not act on: a
        // token for one channel must not run GC, raise revocation floors or make and move
        // other channels.
        if method.acts_on_node() && verified.channel != TokenChannel::Any {
            return Err(refused(TokenRefusal::OneChannel));
        }
        Ok(Grant::Token(verified))
    }

    /// Whether `peer` may call `method` by the allow list alone (a call without a token).
    pub fn check(&self, peer: &NodeId, method: &str) -> Result<(), Denied> {
        self.authorize(peer, [0; 32], method, &[], 0)
            .map(|_| ())
            .map_err(|refusal| Denied::new(refusal.to_string()))
    }
}

/// The authorization hook: the replicated channels' admission for their own methods, else
/// [`Allow::authorize`] on the session's authenticated peer and the node's clock, counting
/// refusals (by method, and refused tokens by reason).
#[derive(Debug)]
pub(crate) struct AllowHook {
    pub(crate) allow: Allow,
    pub(crate) metrics: std::sync::Arc<crate::metrics::Metrics>,
    pub(crate) replicas: Option<std::sync::Arc<dyn crate::replicas::Replicas>>,
}

impl Authorize for AllowHook {
    fn authorize(&self, peer: &PeerIdentity, method: &str, metadata: &[u8]) -> Result<(), Denied> {
        if let Some(verdict) = self
            .replicas
            .as_ref()
            .and_then(|r| r.authorize(peer, method, metadata))
        {
            if verdict.is_err() {
                self.metrics.refused(method);
            }
            return verdict;
        }
        let verdict = self.allow.authorize(
            &peer.node_id(),
            peer.public_key(),
            method,
            metadata,
            now_unix_s(),
        );
        match verdict {
            Ok(_) => Ok(()),
            Err(refusal) => {
                self.metrics.refused(method);
                if let Some(reason) = refusal.token_reason() {
                    self.metrics.token_refused(reason);
                }
                Err(Denied::new(refusal.to_string()))
            }
        }
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
    fn a_bom_is_skipped_and_a_twice_listed_or_non_hex_id_is_refused() {
        let allow = Allow::parse(id(9), &format!("\u{feff}{} write\n", id(1))).unwrap();
        assert!(allow.check(&id(1), "node/v1/put").is_ok());
        let twice = format!("{} read\n# x\n{} admin\n", id(1), id(1));
        let err = Allow::parse(id(9), &twice).unwrap_err().to_string();
        assert!(
            err.contains("line 3") && err.contains("lines 1 and 3"),
            "{err}"
        );
        for not_hex in ["nonsense", &"g".repeat(64)] {
            let err = Allow::parse(id(9), &format!("{not_hex} read"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("is not hex"), "{err}");
        }
    }

    #[test]
    fn a_one_channel_token_grants_no_method_that_acts_on_the_whole_node() {
        use crate::call_token::encode_metadata;
        use net_mesh_rpc::Identity;
        use net_mesh_rpc::token::{PermissionToken, Scope, TokenClaims};

        let node = Identity::generate_ephemeral().unwrap();
        let peer = Identity::generate_ephemeral().unwrap();
        let allow = Allow::only(node.node_id());
        let admin_on = |channel: TokenChannel| {
            PermissionToken::mint(
                &node,
                TokenClaims {
                    subject: peer.public_key().to_bytes(),
                    scope: Scope::READ | Scope::WRITE | Scope::ADMIN,
                    channel,
                    issuer_generation: 0,
                    not_before: 1_000,
                    not_after: 2_000,
                    delegation_depth: 0,
                    nonce: 1,
                },
            )
            .unwrap()
        };
        let one = encode_metadata("photos", &[admin_on(TokenChannel::named("photos"))]);
        let every = encode_metadata("photos", &[admin_on(TokenChannel::Any)]);
        let call = |method: Method, metadata: &[u8]| {
            allow.authorize(
                &peer.node_id(),
                peer.public_key().to_bytes(),
                method.name(),
                metadata,
                1_500,
            )
        };
        for method in Method::ALL {
            assert!(call(method, &every).is_ok(), "{method:?}");
            let verdict = call(method, &one);
            if method.acts_on_node() {
                let refusal = verdict.unwrap_err();
                assert_eq!(refusal.token_reason(), Some("wrong_channel"), "{method:?}");
                assert!(refusal.to_string().contains("whole node"), "{refusal}");
            } else {
                assert!(verdict.is_ok(), "{method:?}: {verdict:?}");
            }
        }
        assert!(Method::Gc.acts_on_node() && Method::TokenRevoke.acts_on_node());
        assert!(!Method::Put.acts_on_node() && !Method::Remove.acts_on_node());
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
