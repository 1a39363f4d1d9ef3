//! `net-mesh serve`: the data dir's store served as a storage node. Once it accepts connections
//! it prints exactly one line on stdout, its `NODE_ADDR` (`NODEID@HOST:PORT`, the address it
//! actually bound), and logs to stderr; SIGTERM, SIGINT or SIGHUP stops accepting, lets live uploads
//! checkpoint, stops the replicated channels, and exits 0. The replicated channels the store
//! holds start with it (`channel create NAME --replicas` makes new ones).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use net_mesh_engine::{ErrorClass, Store, StoreConfig};
use net_mesh_node::{Allow, AllowError, AllowFile, Node, NodeConfig};
use net_mesh_replication::{NodeReplicas, ReplicationConfig};
use net_mesh_rpc::{Identity, NodeAddr, NodeId};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::Ctx;
use crate::output::{CliError, CliResult, ErrorContext};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; NODE_ADDR shows the one bound)
    #[arg(long, value_name = "HOST:PORT")]
    listen: String,
    /// Peers allowed besides the node's own identity (always admin): one per line,
    /// `NODEID read|write|admin` (write implies read, admin implies both), `#` comments.
    /// Without it, only the node's own identity is served. Read once at startup: restart the
    /// node to apply edits
    #[arg(long, value_name = "FILE")]
    allow: Option<PathBuf>,
    /// Accept permission tokens issued by NODEID (chains rooted at it) besides the node's own
    /// identity, which is always trusted; repeatable. A token lets its subject call what it
    /// grants on its channel even where the allow file does not
    #[arg(long = "trust", value_name = "NODEID")]
    trust: Vec<NodeId>,
    /// Clock difference tolerated at both ends of a token's validity window
    #[arg(long, value_name = "DURATION", default_value = "60s",
          value_parser = crate::gc::parse_duration)]
    token_skew: Duration,
    /// Serve the node's metrics in the Prometheus text format at http://HOST:PORT/metrics
    #[arg(long, value_name = "HOST:PORT")]
    metrics: Option<String>,
    /// Bytes per second all transfers share (puts received, reads sent, pulls fetched), in SI
    /// units: `200M` = 200,000,000 bytes/s (K, M, G, T; decimals allowed). Background
    /// transfers yield to foreground ones. Default: unlimited
    #[arg(long, value_name = "RATE", value_parser = net_mesh_node::bandwidth::parse_rate)]
    bandwidth: Option<u64>,
    /// Bytes per second of --bandwidth that realtime transfers take without waiting behind
    /// the others (beyond it they compete as foreground). Default: none
    #[arg(long, value_name = "RATE", requires = "bandwidth",
          value_parser = net_mesh_node::bandwidth::parse_rate)]
    realtime_reserve: Option<u64>,
}

/// How long a stopping node waits for its store workers after the uploads checkpointed.
const WORKER_GRACE: Duration = Duration::from_secs(10);

pub fn run(args: ServeArgs, ctx: &Ctx) -> CliResult {
    if ctx.node.is_some() {
        return Err(CliError::msg(
            ErrorClass::Usage,
            "`serve` serves the local data dir; drop --node",
        ));
    }
    // Checked before anything is created (the identity, the store).
    check_address("--listen", &args.listen)?;
    if let Some(at) = &args.metrics {
        check_address("--metrics", at)?;
    }
    {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        // openraft narrates every vote and append at INFO: only its warnings reach the log.
        let filter = tracing_subscriber::filter::Targets::new()
            .with_default(tracing::Level::INFO)
            .with_target("openraft", tracing::Level::WARN);
        let _ = tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_target(false),
            )
            .with(filter)
            .try_init();
    }
    // The allow file is read before anything is created: a bad one leaves the data dir as it was.
    let allow_file = match &args.allow {
        None => AllowFile::default(),
        Some(path) => AllowFile::load(path).map_err(|e| {
            let class = match &e {
                AllowError::Io { .. } => ErrorClass::Io,
                AllowError::Line { .. } => ErrorClass::Usage,
            };
            CliError::new(class, e)
        })?,
    };
    let identity = crate::identity::load_or_create(&ctx.dir, &ctx.identity)?;
    let allow = Allow::from_file(identity.node_id(), allow_file);
    let allow = args
        .trust
        .iter()
        .fold(allow, |allow, issuer| allow.trust(*issuer))
        .with_skew(args.token_skew.as_secs());
    let store = crate::open::open(&ctx.dir, StoreConfig::default())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .with_class(ErrorClass::Io, || "starting the async runtime")?;
    let served = runtime.block_on(serve(store, identity, allow, &args));
    runtime.shutdown_timeout(WORKER_GRACE);
    served
}

/// Checks a `HOST:PORT` flag: a usage error (exit 2) unless it is a host (a name, an IPv4
/// address or a bracketed IPv6 one) and a port 0-65535; a host that does not resolve is an I/O
/// error (exit 1).
fn check_address(flag: &str, at: &str) -> CliResult {
    let usage = |why: &str| {
        CliError::msg(
            ErrorClass::Usage,
            format!("{flag} {at:?}: {why}; expected HOST:PORT (e.g. 127.0.0.1:7000, [::1]:7000)"),
        )
    };
    if at.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(());
    }
    let Some((host, port)) = at.rsplit_once(':') else {
        return Err(usage("no port"));
    };
    if port.parse::<u16>().is_err() {
        return Err(usage("the port is not a number 0-65535"));
    }
    if host.is_empty() || host.contains(':') || host.chars().any(char::is_whitespace) {
        return Err(usage("not a host"));
    }
    std::net::ToSocketAddrs::to_socket_addrs(at)
        .map(|_| ())
        .with_class(ErrorClass::Io, || {
            format!("{flag} {at}: resolving the host")
        })
}

async fn serve(store: Store, identity: Identity, allow: Allow, args: &ServeArgs) -> CliResult {
    let own = identity.node_id();
    let (listener, local) = net_mesh_node::bind(&args.listen)
        .await
        .with_class(ErrorClass::Io, || format!("listening on {}", args.listen))?;
    let metrics_listener = match &args.metrics {
        None => None,
        Some(at) => Some(
            tokio::net::TcpListener::bind(at.as_str())
                .await
                .with_class(ErrorClass::Io, || format!("serving metrics on {at}"))?,
        ),
    };
    // Signals are caught before NODE_ADDR is printed: whoever reads it may stop us at once.
    let mut terminate =
        signal(SignalKind::terminate()).with_class(ErrorClass::Io, || "catching SIGTERM")?;
    let mut interrupt =
        signal(SignalKind::interrupt()).with_class(ErrorClass::Io, || "catching SIGINT")?;
    // The terminal that started the node went away (or a supervisor's reload signal): the
    // node stops as on SIGTERM rather than dying mid-upload.
    let mut hangup =
        signal(SignalKind::hangup()).with_class(ErrorClass::Io, || "catching SIGHUP")?;
    let config = NodeConfig {
        bandwidth: args.bandwidth,
        realtime_reserve: args.realtime_reserve.unwrap_or(0),
        ..NodeConfig::default()
    };
    let store = Arc::new(store);
    let replicas = {
        let store = Arc::clone(&store);
        tokio::task::spawn_blocking(move || {
            NodeReplicas::new(store, own, ReplicationConfig::default())
        })
        .await
        .with_class(ErrorClass::Io, || "reading the replicated channels")?
        .context_classified("reading the replicated channels")?
    };
    let node = Node::with_config(store, own, config).context_classified("starting the node")?;
    node.set_replicas(replicas);
    let stop = CancellationToken::new();
    if let Some(listener) = metrics_listener {
        if let Ok(at) = listener.local_addr() {
            tracing::info!("metrics on http://{at}/metrics");
        }
        tokio::spawn(crate::metrics_http::serve(
            listener,
            Arc::clone(&node),
            stop.clone(),
        ));
    }
    let addr = NodeAddr {
        node_id: own,
        host_port: local.to_string(),
    };
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{addr}")
            .and_then(|()| stdout.flush())
            .with_class(ErrorClass::Io, || "writing stdout")?;
    }
    tracing::info!("serving {} as node {own}", node.store().dir().display());
    let watcher = {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = terminate.recv() => tracing::info!("SIGTERM: stopping"),
                _ = interrupt.recv() => tracing::info!("SIGINT: stopping"),
                _ = hangup.recv() => tracing::info!("SIGHUP: stopping"),
                () = stop.cancelled() => {}
            }
            stop.cancel();
        })
    };
    net_mesh_node::serve(Arc::clone(&node), identity, allow, listener, stop.clone()).await;
    stop.cancel();
    let _ = watcher.await;
    match node.live_uploads() {
        0 => tracing::info!("stopped"),
        n => tracing::warn!(
            "stopped with {n} uploads still running; they resume from their last checkpoint"
        ),
    }
    Ok(())
}
