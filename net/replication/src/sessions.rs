//! The sessions a node's replicated channels reach the other members on: per member, one
//! pinned session for raft messages and one for the data path (prefetch requests, object
//! fetches, writes forwarded to the leader), shared by all the node's channels.
//!
//! A session carries any number of calls at once, and every call names its channel in its
//! metadata, so the channels share sessions instead of dialing their own: a member sees two
//! sessions from this node however many channels they share (its `max_sessions_per_identity`
//! would otherwise bound the channels two nodes can share), and a Noise handshake (~0.7 ms on
//! 127.0.0.1) is paid once per member, not per call or per channel. Raft messages keep a
//! session of their own so that a heartbeat never queues behind megabytes of objects.
//!
//! A session that ended (closed by either side, idle timeout, transport error) is replaced by a
//! fresh dial on the next call; one dial per member at a time (at most `DIAL_TIMEOUT`), the other
//! callers wait for it and share its outcome.
//! A failed call reports itself with [`Sessions::call_failed`]: the session is closed and
//! dialed afresh only when the member sent nothing at all while the call waited (a member
//! that answered other calls meanwhile is alive, and closing its session would fail every
//! channel's calls on it for one call's timeout or refusal). The node's last channel to stop
//! closes them all ([`LaneRefs::close_all`]), so a node running no channel holds none.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use net_mesh_rpc::rpc::SessionError;
use net_mesh_rpc::{Endpoint, NodeAddr, Session};

use crate::fetch::DIAL_TIMEOUT;

/// One lane of live sessions (raft or data), one per member address.
#[derive(Debug, Clone)]
pub(crate) struct Sessions {
    endpoint: Endpoint,
    live: Live,
    dial_timeout: Duration,
}

/// A lane's sessions, by member address.
type Live = Arc<LiveMap>;
type LiveMap = Mutex<HashMap<NodeAddr, Arc<Slot>>>;

/// The session to one member, if dialed; its state is locked while it is being dialed.
#[derive(Debug, Default)]
struct Slot {
    state: tokio::sync::Mutex<SlotState>,
    /// Dials that ended so far (a copy of `SlotState::dials_ended` readable without the lock).
    dials_ended: AtomicU64,
}

#[derive(Debug, Default)]
struct SlotState {
    session: Option<Session>,
    dials_ended: u64,
    /// Why the last dial failed (`None`: it succeeded, or none ended yet).
    last_failure: Option<String>,
}

/// A session taken for a call, with what the member had sent on it when the call began.
#[derive(Debug, Clone)]
pub(crate) struct Held {
    pub(crate) session: Session,
    frames_before: u64,
}

impl Held {
    fn new(session: Session) -> Held {
        Held {
            frames_before: session.frames_received(),
            session,
        }
    }
}

fn dial_failed(why: &str) -> SessionError {
    SessionError::Connect(std::io::Error::other(why.to_string()))
}

impl Sessions {
    pub(crate) fn new(endpoint: Endpoint) -> Sessions {
        Sessions::with_dial_timeout(endpoint, DIAL_TIMEOUT)
    }

    fn with_dial_timeout(endpoint: Endpoint, dial_timeout: Duration) -> Sessions {
        Sessions {
            endpoint,
            live: Arc::default(),
            dial_timeout,
        }
    }

    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    fn slot(&self, addr: &NodeAddr) -> Arc<Slot> {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.entry(addr.clone()).or_default().clone()
    }

    /// The live session to `addr` (pinned to its node id), dialed if there is none. A caller
    /// that waited for another's dial which failed gets that failure instead of dialing again
    /// (a member that drops SYNs would otherwise cost every waiting channel a whole dial
    /// timeout in turn).
    pub(crate) async fn get(&self, addr: &NodeAddr) -> Result<Held, SessionError> {
        let slot = self.slot(addr);
        let ended_before = slot.dials_ended.load(Ordering::Acquire);
        let mut state = slot.state.lock().await;
        if let Some(s) = state.session.as_ref().filter(|s| s.end_reason().is_none()) {
            return Ok(Held::new(s.clone()));
        }
        if state.dials_ended != ended_before
            && let Some(why) = &state.last_failure
        {
            return Err(dial_failed(why));
        }
        let dialed = tokio::time::timeout(self.dial_timeout, self.endpoint.connect_node(addr))
            .await
            .unwrap_or_else(|_| {
                Err(dial_failed(&format!(
                    "no session within {:?}",
                    self.dial_timeout
                )))
            });
        state.dials_ended = state.dials_ended.wrapping_add(1);
        slot.dials_ended.store(state.dials_ended, Ordering::Release);
        match dialed {
            Ok(session) => {
                state.last_failure = None;
                state.session = Some(session.clone());
                Ok(Held::new(session))
            }
            Err(e) => {
                state.last_failure = Some(e.to_string());
                Err(e)
            }
        }
    }

    /// A call on `held` failed: if the member sent nothing on the session since the call
    /// began (or the session ended), the session is closed and the next call dials afresh;
    /// otherwise it stays, the other calls on it going on.
    pub(crate) fn call_failed(&self, addr: &NodeAddr, held: &Held) {
        let session = &held.session;
        if session.end_reason().is_none() && session.frames_received() != held.frames_before {
            return;
        }
        session.close();
        let slot = self.slot(addr);
        // A caller dialing right now holds the slot; its fresh session is not this one.
        if let Ok(mut state) = slot.state.try_lock()
            && state.session.as_ref().is_some_and(|s| s.same_as(session))
        {
            state.session = None;
        }
    }
}

/// Closes every session of a lane (the node's last channel stopped); the next call dials.
fn close_all(live: &Live) {
    let slots: Vec<_> = {
        let live = live.lock().unwrap_or_else(|p| p.into_inner());
        live.values().cloned().collect()
    };
    for slot in slots {
        // A slot being dialed right now is left to its dialer, whose call goes on (its
        // session stays in the slot, for the next `close_all`).
        if let Ok(mut state) = slot.state.try_lock()
            && let Some(s) = state.session.take()
        {
            s.close();
        }
    }
}

/// The two lanes of one endpoint's sessions.
#[derive(Debug, Clone)]
pub(crate) struct Lanes {
    pub(crate) raft: Sessions,
    pub(crate) data: Sessions,
}

/// What a node's `Replication` keeps of its lanes: weak handles of their sessions. It holds
/// neither the lanes' endpoint (whose router holds the `Replication`: a cycle that would keep
/// the node's store open) nor anything once no channel uses them (e.g. after a channel
/// failed to open); the channels hold the lanes.
#[derive(Debug, Default)]
pub(crate) struct LaneRefs {
    raft: Weak<LiveMap>,
    data: Weak<LiveMap>,
}

impl LaneRefs {
    /// The lanes the node's running channels use; a lane no channel holds is made anew.
    pub(crate) fn lanes(&mut self, endpoint: &Endpoint) -> Lanes {
        let lane = |held: &mut Weak<LiveMap>| {
            let live = held.upgrade().unwrap_or_else(|| {
                let live = Live::default();
                *held = Arc::downgrade(&live);
                live
            });
            Sessions {
                live,
                ..Sessions::new(endpoint.clone())
            }
        };
        Lanes {
            raft: lane(&mut self.raft),
            data: lane(&mut self.data),
        }
    }

    /// Closes every session of both lanes (the node's last channel stopped).
    pub(crate) fn close_all(&self) {
        for live in [self.raft.upgrade(), self.data.upgrade()]
            .into_iter()
            .flatten()
        {
            close_all(&live);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use net_mesh_rpc::Identity;
    use net_mesh_rpc::rpc::Config;
    use net_mesh_rpc::rpc::server::Router;

    use super::*;

    /// A member that accepts TCP connections and never says a word (its handshake never
    /// comes): eight calls wanting a session to it at once make one dial, and all eight fail
    /// when it times out. Dialing again for each waiter in turn would take eight connections
    /// and eight timeouts.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn callers_waiting_for_a_dial_that_fails_share_its_failure()
    -> Result<(), Box<dyn std::error::Error>> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let host_port = listener.local_addr()?.to_string();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counted = accepted.clone();
        let silent = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((conn, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                held.push(conn);
            }
        });
        let endpoint = Endpoint::new(
            Identity::from_seed([7; 32]),
            Router::new(),
            Config::default(),
        );
        let sessions = Sessions::with_dial_timeout(endpoint, Duration::from_secs(2));
        let addr = NodeAddr {
            node_id: Identity::from_seed([8; 32]).node_id(),
            host_port,
        };
        let call = || {
            let sessions = sessions.clone();
            let addr = addr.clone();
            tokio::spawn(async move { sessions.get(&addr).await.map(|_| ()) })
        };
        // The first call dials; the other seven come while its dial is under way.
        let mut calls = vec![call()];
        while accepted.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        calls.extend((0..7).map(|_| call()));
        for call in calls {
            let result = call.await?;
            assert!(result.is_err(), "a silent member gave a session");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "one dial for all eight");
        // Once the failure is known, a later caller dials again (the member may be back).
        assert!(sessions.get(&addr).await.is_err());
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        silent.abort();
        Ok(())
    }
}
