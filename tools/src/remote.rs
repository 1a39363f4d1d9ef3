//! The CLI's side of a node: the identity it connects as, a small runtime, and one session
//! dialed pinned to the node's id (another node answering is refused before anything of ours is
//! sent), carrying the permission token chain of `--token`/`--token-file` on every call. Node
//! errors carry their class, so `?` turns them into the same exit codes as local failures.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use net_mesh_engine::{BlobRef, ErrorClass};
use net_mesh_node::NodeClient;
use net_mesh_node::proto::{BandwidthClass, BlobSpec};
use net_mesh_rpc::handshake::HandshakeError;
use net_mesh_rpc::rpc::{Config, Router, SessionError};
use net_mesh_rpc::token::{PermissionToken, chain_from_text};
use net_mesh_rpc::{Endpoint, Identity, NodeAddr};
use serde_bytes::ByteBuf;
use tokio::runtime::{Handle, Runtime};

use crate::Ctx;
use crate::output::{CliError, CliResult, ErrorContext};

/// A runtime for the CLI's network work (two workers: the CLI is one client).
pub fn runtime() -> CliResult<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .with_class(ErrorClass::Io, || "starting the async runtime")
}

/// Why a dial failed: another node answered (final), or the connection failed (worth a retry).
#[derive(Debug)]
pub enum DialError {
    Pinned(CliError),
    Failed(CliError),
}

impl From<DialError> for CliError {
    fn from(e: DialError) -> CliError {
        match e {
            DialError::Pinned(e) | DialError::Failed(e) => e,
        }
    }
}

/// An open session: the client and the endpoint that dialed it (kept alive with it).
struct Connected {
    client: Arc<NodeClient>,
    _endpoint: Endpoint,
}

/// A node the CLI talks to: who we are, where it is, and the session if one is open.
pub struct Remote {
    /// Declared before the runtime so the session goes first.
    connected: Option<Connected>,
    identity: Identity,
    /// The token chain every call carries (empty: none).
    token: Vec<PermissionToken>,
    /// The bandwidth class of the transfers (reads, pulls, puts).
    class: BandwidthClass,
    /// The channel every call acts on.
    channel: String,
    addr: NodeAddr,
    runtime: Runtime,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("addr", &self.addr.to_string())
            .field("connected", &self.connected.is_some())
            .finish()
    }
}

impl Remote {
    /// The identity and runtime for talking to `addr`; nothing is dialed yet.
    pub fn new(ctx: &Ctx, addr: &NodeAddr) -> CliResult<Remote> {
        let identity = crate::identity::load_or_create(&ctx.dir, &ctx.identity)?;
        let token = token_chain(ctx)?;
        Ok(Remote {
            connected: None,
            identity,
            token,
            class: BandwidthClass::Foreground,
            channel: ctx.channel.clone(),
            addr: addr.clone(),
            runtime: runtime()?,
        })
    }

    /// Sets the bandwidth class of the transfers (before the session is dialed).
    pub fn with_class(mut self, class: BandwidthClass) -> Remote {
        self.class = class;
        self
    }

    pub fn class(&self) -> BandwidthClass {
        self.class
    }

    /// [`Remote::new`] and a session to the node.
    pub fn connect(ctx: &Ctx, addr: &NodeAddr) -> CliResult<Remote> {
        let mut remote = Remote::new(ctx, addr)?;
        remote.client()?;
        Ok(remote)
    }

    /// The session's client, dialing first if there is none.
    pub fn client(&mut self) -> Result<Arc<NodeClient>, DialError> {
        if let Some(c) = &self.connected {
            return Ok(Arc::clone(&c.client));
        }
        let config = Config {
            capabilities: net_mesh_node::client::client_capabilities(),
            ..Config::default()
        };
        let endpoint = {
            let _guard = self.runtime.enter();
            Endpoint::new(self.identity.clone(), Router::new(), config)
        };
        let addr = &self.addr;
        let session = self
            .runtime
            .block_on(endpoint.connect_node(addr))
            .map_err(|e| match e {
                SessionError::Handshake(HandshakeError::UnexpectedPeer { expected, found }) => {
                    DialError::Pinned(CliError::msg(
                        ErrorClass::Io,
                        format!(
                            "{} is node {found}, not the pinned {expected}: refused before \
                             anything was sent",
                            addr.host_port
                        ),
                    ))
                }
                e => DialError::Failed(CliError::msg(
                    ErrorClass::Io,
                    format!("connecting to node {addr}: {e}"),
                )),
            })?;
        let client = Arc::new(
            NodeClient::from_session(session)
                .with_token(&self.token)
                .with_class(self.class)
                .with_channel(&self.channel)
                .map_err(|e| DialError::Failed(e.into()))?,
        );
        self.connected = Some(Connected {
            client: Arc::clone(&client),
            _endpoint: endpoint,
        });
        Ok(client)
    }

    /// Drops the session (the next [`Remote::client`] dials again).
    pub fn disconnect(&mut self) {
        if let Some(connected) = self.connected.take() {
            let _guard = self.runtime.enter();
            drop(connected);
        }
    }

    /// Runs `work` to its end on the runtime.
    pub fn block_on<F: Future>(&self, work: F) -> F::Output {
        self.runtime.block_on(work)
    }

    pub fn handle(&self) -> &Handle {
        self.runtime.handle()
    }

    /// The node's address as given.
    pub fn addr(&self) -> &NodeAddr {
        &self.addr
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        self.disconnect();
    }
}

/// The chain of `--token` or `--token-file` (one line of text; surrounding whitespace and the
/// line end are dropped), or none. Text that is not a chain is a usage error.
fn token_chain(ctx: &Ctx) -> CliResult<Vec<PermissionToken>> {
    let (text, source) = match (&ctx.token, &ctx.token_file) {
        (Some(text), _) => (text.clone(), "--token".to_string()),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).with_class(ErrorClass::Io, || {
                format!("reading token file {}", path.display())
            })?;
            (text, format!("token file {}", path.display()))
        }
        (None, None) => return Ok(Vec::new()),
    };
    let line = text.trim();
    if line.lines().nth(1).is_some() {
        return Err(CliError::msg(
            ErrorClass::Usage,
            format!("{source}: a token chain is one line of text"),
        ));
    }
    chain_from_text(line).with_class(ErrorClass::Usage, || format!("{source}: not a token chain"))
}

/// How a blob is named on the command line, for the node: a full ref (`nm1…`), or the hex
/// prefix of a pinned blob's id (a pin row's full id included).
pub fn spec(text: &str) -> CliResult<BlobSpec> {
    if text.starts_with("nm1") {
        let blob_ref = BlobRef::from_text(text)
            .with_class(ErrorClass::Usage, || format!("invalid blob ref {text:?}"))?;
        return Ok(BlobSpec::Ref(ByteBuf::from(blob_ref.encode())));
    }
    Ok(BlobSpec::IdPrefix(text.to_string()))
}

/// The ref a command-line blob names on the node (the node checks the caller may read first).
pub fn resolve(remote: &mut Remote, text: &str) -> CliResult<BlobRef> {
    let spec = spec(text)?;
    let client = remote.client()?;
    let (blob_ref, _) = remote.block_on(client.resolve(&spec))?;
    Ok(blob_ref)
}

/// The wait before retry `attempt` (1-based): 200 ms doubling, at most 5 s.
pub fn backoff(attempt: u32) -> Duration {
    let factor = 1u32 << attempt.saturating_sub(1).min(5);
    Duration::from_millis(200)
        .saturating_mul(factor)
        .min(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let waits: Vec<u64> = (1..=8).map(|a| backoff(a).as_millis() as u64).collect();
        assert_eq!(waits, [200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
    }
}
