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
//! callers wait for it.
//! A failed call reports itself with [`Sessions::call_failed`]: the session is closed and
//! dialed afresh only when the member sent nothing at all while the call waited (a member
//! that answered other calls meanwhile is alive, and closing its session would fail every
//! channel's calls on it for one call's timeout or refusal). The node's last channel to stop
//! closes them all ([`Sessions::close_all`]), so a node running no channel holds none.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use net_mesh_rpc::rpc::SessionError;
use net_mesh_rpc::{Endpoint, NodeAddr, NodeId, Session};

use crate::fetch::DIAL_TIMEOUT;

/// One lane of live sessions (raft or data), one per member address.
#[derive(Debug, Clone)]
pub(crate) struct Sessions {
    endpoint: Endpoint,
    live: Arc<Mutex<HashMap<NodeAddr, Slot>>>,
}

/// The session to one member, if dialed; locked while it is being dialed.
type Slot = Arc<tokio::sync::Mutex<Option<Session>>>;

/// A session taken for a call, with what the member had sent on it when the call began.
#[derive(Debug, Clone)]
pub(crate) struct Held {
    pub(crate) session: Session,
    frames_before: u64,
}

impl Sessions {
    pub(crate) fn new(endpoint: Endpoint) -> Sessions {
        Sessions {
            endpoint,
            live: Arc::default(),
        }
    }

    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    fn slot(&self, addr: &NodeAddr) -> Slot {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.entry(addr.clone()).or_default().clone()
    }

    /// The live session to `addr` (pinned to its node id), dialed if there is none.
    pub(crate) async fn get(&self, addr: &NodeAddr) -> Result<Held, SessionError> {
        let slot = self.slot(addr);
        let mut held = slot.lock().await;
        let session = match held.as_ref().filter(|s| s.end_reason().is_none()) {
            Some(s) => s.clone(),
            None => {
                // A member that drops SYNs would hold the slot for the kernel's connect
                // retries (~2 minutes): every channel's calls to it wait on this dial.
                let dialed = tokio::time::timeout(DIAL_TIMEOUT, self.endpoint.connect_node(addr))
                    .await
                    .map_err(|_| {
                        SessionError::Connect(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!("no session within {DIAL_TIMEOUT:?}"),
                        ))
                    })??;
                *held = Some(dialed.clone());
                dialed
            }
        };
        Ok(Held {
            frames_before: session.frames_received(),
            session,
        })
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
        if let Ok(mut current) = slot.try_lock()
            && current.as_ref().is_some_and(|s| s.same_as(session))
        {
            *current = None;
        }
    }

    /// Closes every held session (the node's last channel stopped); the next call dials.
    pub(crate) fn close_all(&self) {
        let slots: Vec<_> = {
            let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
            live.values().cloned().collect()
        };
        for slot in slots {
            // A slot being dialed right now is left to its dialer, whose call goes on (its
            // session stays in the slot, for the next `close_all`).
            if let Ok(mut held) = slot.try_lock()
                && let Some(s) = held.take()
            {
                s.close();
            }
        }
    }
}

/// The two lanes of one endpoint's sessions.
#[derive(Debug, Clone)]
pub(crate) struct Lanes {
    pub(crate) raft: Sessions,
    pub(crate) data: Sessions,
}

impl Lanes {
    pub(crate) fn new(endpoint: &Endpoint) -> Lanes {
        Lanes {
            raft: Sessions::new(endpoint.clone()),
            data: Sessions::new(endpoint.clone()),
        }
    }

    /// The node id of the endpoint the lanes dial from.
    pub(crate) fn node_id(&self) -> NodeId {
        self.data.endpoint.identity().node_id()
    }

    pub(crate) fn close_all(&self) {
        self.raft.close_all();
        self.data.close_all();
    }
}
