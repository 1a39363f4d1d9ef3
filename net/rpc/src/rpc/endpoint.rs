//! The endpoint: an identity, the routers it exposes, its budgets; dials (optionally pinned to a
//! node id) and accepts sessions, and runs the accept loop.
//!
//! The accept loop ([`Endpoint::serve`]) admits in stages, each with its own cap, so no kind of
//! connection can crowd out the others: a source address may hold at most
//! `max_sessions_per_addr` handshakes plus sessions; handshakes run in their own slot pool
//! (`max_handshakes`, each holding a small fixed allocation and bounded by the handshake
//! timeout); an established session needs a session slot (`max_sessions`, clamped to the file
//! descriptors the process may open) and its identity may hold at most
//! `max_sessions_per_identity`. An `accept` error backs off (longer for `EMFILE`/`ENFILE`, when
//! the process or system is out of descriptors) instead of spinning, and the loop keeps going.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::budget::NodeBudgets;
use super::server::Router;
use super::session::{Session, SessionError, SessionShared, lock, spawn_tasks};
use super::{Config, Metrics};
use crate::handshake::{self, HandshakeError, Local};
use crate::identity::{Identity, NodeAddr, NodeId};
use crate::transport;

/// File descriptors kept free for everything that is not a session (listeners, files, logs).
const FD_RESERVE: u64 = 64;

/// An identity plus the handlers it serves; dials and accepts sessions.
#[derive(Debug, Clone)]
pub struct Endpoint {
    identity: Identity,
    /// Served on sessions this endpoint accepts.
    router: Arc<Router>,
    /// Exposed on sessions this endpoint dials (empty unless set).
    dialed_router: Arc<Router>,
    config: Arc<Config>,
    metrics: Arc<Metrics>,
    budgets: Arc<NodeBudgets>,
}

impl Endpoint {
    /// An endpoint serving `router` to peers that dial it (use `Router::new()` for a pure
    /// client). Sessions this endpoint dials expose nothing unless
    /// [`Endpoint::with_dialed_router`] says otherwise.
    pub fn new(identity: Identity, router: Router, config: Config) -> Self {
        let metrics = Arc::new(Metrics::default());
        let budgets = Arc::new(NodeBudgets::new(
            (config.node_recv_budget, config.peer_recv_budget),
            (config.node_send_budget, config.peer_send_budget),
            metrics.clone(),
        ));
        Endpoint {
            identity,
            router: Arc::new(router),
            dialed_router: Arc::new(Router::new()),
            config: Arc::new(config),
            metrics,
            budgets,
        }
    }

    /// The router exposed to peers on sessions this endpoint dials (calls travel both ways on
    /// a session). By default those sessions serve nothing: every call gets `UnknownMethod`.
    pub fn with_dialed_router(mut self, router: Router) -> Self {
        self.dialed_router = Arc::new(router);
        self
    }

    /// This endpoint's counters.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// This endpoint's identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// This endpoint's settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    fn local(&self) -> Local<'_> {
        Local {
            identity: &self.identity,
            capabilities: self.config.capabilities.clone(),
        }
    }

    /// Dials `addr` and runs the initiator handshake, accepting whichever node answers.
    pub async fn connect(&self, addr: SocketAddr) -> Result<Session, SessionError> {
        self.connect_pinned(addr, None).await
    }

    /// Dials `addr`; with `expected = Some(id)` the handshake fails with
    /// `HandshakeError::UnexpectedPeer` before this side's identity is sent when the responder
    /// proves another node id.
    pub async fn connect_pinned(
        &self,
        addr: SocketAddr,
        expected: Option<NodeId>,
    ) -> Result<Session, SessionError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(SessionError::Connect)?;
        self.connect_stream(stream, expected).await
    }

    /// Runs the initiator handshake on a stream this side connected itself (e.g. from a chosen
    /// source address), optionally pinned like [`Endpoint::connect_pinned`].
    pub async fn connect_stream(
        &self,
        mut stream: TcpStream,
        expected: Option<NodeId>,
    ) -> Result<Session, SessionError> {
        set_socket_options(&stream, &self.config);
        let established = handshake::initiate(
            &mut stream,
            self.local(),
            expected,
            self.config.handshake_timeout,
        )
        .await;
        self.start(stream, established, self.dialed_router.clone())
    }

    /// Dials a `NODEID@HOST:PORT` address (resolving the host), pinned to its node id.
    pub async fn connect_node(&self, addr: &NodeAddr) -> Result<Session, SessionError> {
        let resolved = tokio::net::lookup_host(addr.host_port.as_str())
            .await
            .map_err(SessionError::Connect)?;
        let mut last = None;
        for socket_addr in resolved {
            match self.connect_pinned(socket_addr, Some(addr.node_id)).await {
                Ok(session) => return Ok(session),
                // Another node answering is final: never try the next address with our identity.
                Err(e @ SessionError::Handshake(HandshakeError::UnexpectedPeer { .. })) => {
                    return Err(e);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            SessionError::Connect(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{} resolved to no address", addr.host_port),
            ))
        }))
    }

    /// Runs the responder handshake on an accepted stream (no admission caps; see
    /// [`Endpoint::serve`]).
    pub async fn accept_stream(&self, mut stream: TcpStream) -> Result<Session, SessionError> {
        set_socket_options(&stream, &self.config);
        let established =
            handshake::respond(&mut stream, self.local(), self.config.handshake_timeout).await;
        self.start(stream, established, self.router.clone())
    }

    /// Accepts one connection from `listener` and handshakes it.
    pub async fn accept(&self, listener: &TcpListener) -> Result<Session, SessionError> {
        let (stream, _) = listener.accept().await.map_err(SessionError::Connect)?;
        self.accept_stream(stream).await
    }

    /// Accept loop (see the module docs): every admitted connection is handshaken and served on
    /// its own task until `stop` fires; then sessions are closed and the loop returns.
    pub async fn serve(&self, listener: TcpListener, stop: CancellationToken) {
        if self.config.raise_fd_limit
            && let Err(e) = raise_fd_limit()
        {
            tracing::info!(error = %e, "could not raise the file-descriptor limit");
        }
        let limits = Arc::new(ServeLimits::new(&self.config));
        tracing::debug!(
            sessions = limits.max_sessions,
            handshakes = limits.max_handshakes,
            "nRPC serve limits"
        );
        let mut backoff = Backoff::default();
        loop {
            let accepted = tokio::select! {
                _ = stop.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            let (stream, addr) = match accepted {
                Ok(accepted) => {
                    backoff.reset();
                    accepted
                }
                Err(e) => {
                    Metrics::bump(&self.metrics.accept_errors);
                    let pause = backoff.next(&e);
                    tracing::warn!(error = %e, ?pause, "nRPC accept failed; backing off");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(pause) => continue,
                    }
                }
            };
            if limits.sessions.available_permits() == 0 {
                // No session could be established now: spend nothing on a handshake.
                Metrics::bump(&self.metrics.sessions_refused);
                tracing::debug!(%addr, "nRPC connection refused: max_sessions open");
                continue;
            }
            let Some(addr_slot) = limits.addr_slot(addr.ip()) else {
                Metrics::bump(&self.metrics.sessions_refused_addr);
                tracing::debug!(%addr, "nRPC connection refused: source address at its cap");
                continue;
            };
            let Ok(handshake_slot) = limits.handshakes.clone().try_acquire_owned() else {
                Metrics::bump(&self.metrics.handshakes_refused);
                tracing::debug!(%addr, "nRPC connection refused: all handshake slots taken");
                continue;
            };
            let endpoint = self.clone();
            let stop = stop.clone();
            let limits = limits.clone();
            tokio::spawn(async move {
                let _addr_slot = addr_slot;
                endpoint
                    .serve_one(stream, addr, handshake_slot, &limits, stop)
                    .await;
            });
        }
    }

    /// Handshakes one admitted connection, takes its session slots and serves it until it ends.
    async fn serve_one(
        &self,
        mut stream: TcpStream,
        addr: SocketAddr,
        handshake_slot: OwnedSemaphorePermit,
        limits: &ServeLimits,
        stop: CancellationToken,
    ) {
        let established = {
            let _slot = handshake_slot;
            Metrics::gauge_up(&self.metrics.pending_handshakes);
            set_socket_options(&stream, &self.config);
            let established =
                handshake::respond(&mut stream, self.local(), self.config.handshake_timeout).await;
            Metrics::gauge_down(&self.metrics.pending_handshakes);
            established
        };
        let established = match established {
            Ok(established) => established,
            Err(e) => {
                Metrics::bump(&self.metrics.handshake_failures);
                tracing::info!(%addr, error = %e, "nRPC handshake failed");
                return;
            }
        };
        let Ok(_session_slot) = limits.sessions.clone().try_acquire_owned() else {
            Metrics::bump(&self.metrics.sessions_refused);
            tracing::info!(%addr, "nRPC session refused: max_sessions open");
            return;
        };
        let Some(_identity_slot) = limits.identity_slot(established.peer.node_id()) else {
            Metrics::bump(&self.metrics.sessions_refused_identity);
            tracing::info!(%addr, peer = %established.peer.node_id(), "nRPC session refused: identity at its cap");
            return;
        };
        let Ok(session) = self.start(stream, Ok(established), self.router.clone()) else {
            return;
        };
        tokio::select! {
            _ = stop.cancelled() => session.close(),
            _ = session.closed() => {}
        }
        // Slots are released once the session's tasks (and with them its socket) are gone.
        session.shared.tasks_ended().await;
    }

    fn start(
        &self,
        stream: TcpStream,
        established: Result<handshake::Established, HandshakeError>,
        router: Arc<Router>,
    ) -> Result<Session, SessionError> {
        let established = match established {
            Ok(established) => established,
            Err(e) => {
                Metrics::bump(&self.metrics.handshake_failures);
                tracing::info!(error = %e, "nRPC handshake failed");
                return Err(e.into());
            }
        };
        Metrics::bump(&self.metrics.sessions_opened);
        let (read, write) = stream.into_split();
        let (sender, receiver) = transport::split(established.transport, read, write);
        let shared = SessionShared::new(
            established.peer,
            self.config.clone(),
            self.metrics.clone(),
            router,
            self.budgets.clone(),
        );
        spawn_tasks(&shared, sender, receiver);
        Ok(Session { shared })
    }
}

/// Socket options every session gets: no Nagle delay, keepalive, `TCP_USER_TIMEOUT` (the stall
/// timeout) and the configured congestion control.
pub(crate) fn set_socket_options(stream: &TcpStream, config: &Config) {
    let _ = stream.set_nodelay(true);
    let sock = socket2::SockRef::from(stream);
    if let Some(idle) = config.keepalive {
        let interval = (idle / 3).max(Duration::from_secs(1));
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(idle)
            .with_interval(interval)
            .with_retries(3);
        if let Err(e) = sock.set_tcp_keepalive(&keepalive) {
            tracing::warn!(error = %e, "TCP keepalive not set");
        }
    }
    if let Err(e) = sock.set_tcp_user_timeout(Some(config.stall_timeout)) {
        tracing::warn!(error = %e, "TCP_USER_TIMEOUT not set");
    }
    if let Some(name) = &config.tcp_congestion
        && let Err(e) = sock.set_tcp_congestion(name.as_bytes())
    {
        tracing::warn!(congestion = %name, error = %e, "TCP congestion control not set");
    }
}

/// Raises this process's soft file-descriptor limit to its hard limit (where the OS allows it)
/// and returns the soft limit now in force.
pub fn raise_fd_limit() -> std::io::Result<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let current = limit.current.unwrap_or(u64::MAX);
    // An unlimited hard limit still has a kernel ceiling; 1 Mi descriptors is plenty.
    let target = limit.maximum.unwrap_or(1 << 20);
    if current >= target {
        return Ok(current);
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(target),
            maximum: limit.maximum,
        },
    )
    .map_err(std::io::Error::from)?;
    Ok(target)
}

/// The process's soft file-descriptor limit.
fn fd_limit() -> u64 {
    rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(1 << 20)
}

/// The default `Config::max_sessions`: no cap beyond what the file-descriptor limit allows
/// (applied by [`Endpoint::serve`] when it starts, after raising the limit).
pub(crate) fn default_max_sessions() -> usize {
    usize::MAX
}

/// Handshake and session slots that fit the file-descriptor limit: a quarter of the free
/// descriptors at most for handshakes, the rest for sessions (one descriptor each).
fn fd_slots(config: &Config) -> (usize, usize) {
    let free = usize::try_from(fd_limit().saturating_sub(FD_RESERVE)).unwrap_or(usize::MAX);
    let handshakes = config.max_handshakes.min(free / 4).max(1);
    let sessions = config
        .max_sessions
        .min(free.saturating_sub(handshakes))
        .max(1);
    (handshakes, sessions)
}

/// Source-address key for the per-address cap: the IPv4 address, or the /64 of an IPv6 one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum AddrKey {
    V4([u8; 4]),
    V6([u8; 8]),
}

impl AddrKey {
    fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => AddrKey::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => AddrKey::V4(v4.octets()),
                None => {
                    let mut prefix = [0u8; 8];
                    prefix.copy_from_slice(v6.octets().get(..8).unwrap_or(&[0; 8]));
                    AddrKey::V6(prefix)
                }
            },
        }
    }
}

/// The admission caps of one `serve` loop.
#[derive(Debug)]
struct ServeLimits {
    max_sessions: usize,
    max_handshakes: usize,
    per_addr: usize,
    per_identity: usize,
    handshakes: Arc<Semaphore>,
    sessions: Arc<Semaphore>,
    by_addr: Arc<Mutex<HashMap<AddrKey, usize>>>,
    by_identity: Arc<Mutex<HashMap<NodeId, usize>>>,
}

impl ServeLimits {
    fn new(config: &Config) -> Self {
        let (max_handshakes, max_sessions) = fd_slots(config);
        ServeLimits {
            max_sessions,
            max_handshakes,
            per_addr: config.max_sessions_per_addr.max(1),
            per_identity: config.max_sessions_per_identity.max(1),
            handshakes: Arc::new(Semaphore::new(max_handshakes)),
            sessions: Arc::new(Semaphore::new(max_sessions)),
            by_addr: Arc::default(),
            by_identity: Arc::default(),
        }
    }

    fn addr_slot(&self, ip: IpAddr) -> Option<CountSlot<AddrKey>> {
        CountSlot::take(&self.by_addr, AddrKey::of(ip), self.per_addr)
    }

    fn identity_slot(&self, id: NodeId) -> Option<CountSlot<NodeId>> {
        CountSlot::take(&self.by_identity, id, self.per_identity)
    }
}

/// One unit of a per-key count, given back when dropped.
struct CountSlot<K: std::hash::Hash + Eq + Copy> {
    counts: Arc<Mutex<HashMap<K, usize>>>,
    key: K,
}

impl<K: std::hash::Hash + Eq + Copy> CountSlot<K> {
    fn take(counts: &Arc<Mutex<HashMap<K, usize>>>, key: K, cap: usize) -> Option<Self> {
        let mut map = lock(counts);
        let count = map.entry(key).or_insert(0);
        if *count >= cap {
            return None;
        }
        *count = count.saturating_add(1);
        Some(CountSlot {
            counts: counts.clone(),
            key,
        })
    }
}

impl<K: std::hash::Hash + Eq + Copy> Drop for CountSlot<K> {
    fn drop(&mut self) {
        let mut map = lock(&self.counts);
        if let Some(count) = map.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                map.remove(&self.key);
            }
        }
    }
}

/// Back-off between failed `accept` calls: from 1 ms doubling to 100 ms for per-connection
/// errors, from 50 ms doubling to 1 s when out of descriptors or memory.
#[derive(Debug, Default)]
struct Backoff {
    current: Duration,
}

impl Backoff {
    fn reset(&mut self) {
        self.current = Duration::ZERO;
    }

    fn next(&mut self, error: &std::io::Error) -> Duration {
        let exhausted = matches!(
            error.raw_os_error(),
            Some(code) if code == rustix::io::Errno::MFILE.raw_os_error()
                || code == rustix::io::Errno::NFILE.raw_os_error()
                || code == rustix::io::Errno::NOBUFS.raw_os_error()
                || code == rustix::io::Errno::NOMEM.raw_os_error()
        );
        let (floor, ceiling) = if exhausted {
            (Duration::from_millis(50), Duration::from_secs(1))
        } else {
            (Duration::from_millis(1), Duration::from_millis(100))
        };
        self.current = (self.current.saturating_mul(2)).clamp(floor, ceiling);
        self.current
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    async fn loopback_stream() -> TcpStream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stream, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        drop(accepted.unwrap());
        stream.unwrap()
    }

    fn congestion(stream: &TcpStream) -> String {
        let name = socket2::SockRef::from(stream).tcp_congestion().unwrap();
        String::from_utf8_lossy(&name)
            .trim_end_matches('\0')
            .to_string()
    }

    #[tokio::test]
    async fn configured_socket_options_reach_the_socket() {
        let stream = loopback_stream().await;
        let system_default = congestion(&stream);
        let config = Config {
            keepalive: Some(Duration::from_secs(12)),
            stall_timeout: Duration::from_millis(7500),
            ..Config::default()
        };
        set_socket_options(&stream, &config);
        assert_eq!(
            congestion(&stream),
            system_default,
            "None keeps the default"
        );
        assert!(stream.nodelay().unwrap());
        let sock = socket2::SockRef::from(&stream);
        assert!(sock.keepalive().unwrap());
        assert_eq!(sock.tcp_keepalive_time().unwrap(), Duration::from_secs(12));
        assert_eq!(
            sock.tcp_keepalive_interval().unwrap(),
            Duration::from_secs(4)
        );
        assert_eq!(sock.tcp_keepalive_retries().unwrap(), 3);
        assert_eq!(
            sock.tcp_user_timeout().unwrap(),
            Some(Duration::from_millis(7500))
        );

        let reno = Config {
            tcp_congestion: Some("reno".into()),
            ..Config::default()
        };
        set_socket_options(&stream, &reno);
        assert_eq!(congestion(&stream), "reno");

        // A name the kernel does not know leaves the socket as it was.
        let bogus = Config {
            tcp_congestion: Some("no-such-algorithm".into()),
            ..Config::default()
        };
        set_socket_options(&stream, &bogus);
        assert_eq!(congestion(&stream), "reno");
    }

    #[test]
    fn backoff_grows_and_is_longer_when_out_of_descriptors() {
        let emfile = std::io::Error::from_raw_os_error(rustix::io::Errno::MFILE.raw_os_error());
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionAborted);
        let mut b = Backoff::default();
        assert_eq!(b.next(&reset), Duration::from_millis(1));
        assert_eq!(b.next(&reset), Duration::from_millis(2));
        b.reset();
        let steps: Vec<_> = (0..7).map(|_| b.next(&emfile)).collect();
        assert_eq!(steps[0], Duration::from_millis(50));
        assert_eq!(steps[6], Duration::from_secs(1));
    }

    #[test]
    fn ipv6_sources_share_a_slot_per_64_and_mapped_ipv4_is_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(AddrKey::of(a), AddrKey::of(b));
        assert_ne!(AddrKey::of(a), AddrKey::of(c));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(AddrKey::of(mapped), AddrKey::V4([10, 0, 0, 1]));
    }

    #[test]
    fn fd_slots_fit_the_descriptor_limit() {
        let (handshakes, sessions) = fd_slots(&Config::default());
        let free = usize::try_from(fd_limit() - FD_RESERVE).unwrap();
        assert!(handshakes + sessions <= free);
        assert!(sessions >= 1 && handshakes >= 1);
    }
}
