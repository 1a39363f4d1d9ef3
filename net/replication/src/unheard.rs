//! A learner that hears nothing from its leader asks the voters whether they still take it.
//!
//! A voter removed while it was away learns it when it campaigns: the voters refuse its vote
//! requests as a non-member's, and [`crate::ReplicatedChannel::excluded`] reads those
//! refusals. A learner never campaigns, and once removed the leader sends it nothing: it
//! would hear no refusal, and openraft 0.9 still names it a leader (the leader of its last
//! committed vote; a learner never votes, so it keeps naming the leader that removed it).
//!
//! So every channel records when an append or a snapshot chunk from its leader last arrived
//! ([`LeaderHeard`]), and [`ask_voters_while_unheard`] watches the member: once it has been a
//! learner that heard nothing from its leader for [`crate::elect::stalled_after`], it asks
//! each voter of the membership it holds a member-only question (`raft/v1/pinned`, admitted
//! for learners and voters alike) and notes each answer as it notes those to its raft
//! messages ([`crate::Replication::refused_by`]): taken, or refused as a non-member; a voter
//! it cannot reach or that does not run the group says nothing. It asks again every
//! `stalled_after` while it stays unheard. Asking changes nothing on the voters, and the
//! answers only decide whether this node's copy is taken for stale (never a vote, never a
//! log entry): a learner merely cut off or slow hears "taken", or nothing, and stays a
//! member.

use std::sync::Mutex;
use std::time::Duration;

use openraft::Raft;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::network::Network;
use crate::types::{Member, TypeConfig};

/// When this node last heard from its channel's leader: an append taken by the group
/// (or one that conflicts with its log: the leader's still), or a snapshot chunk. Starts at
/// the channel's start.
#[derive(Debug)]
pub(crate) struct LeaderHeard {
    at: Mutex<Instant>,
}

impl LeaderHeard {
    pub(crate) fn new() -> LeaderHeard {
        LeaderHeard {
            at: Mutex::new(Instant::now()),
        }
    }

    pub(crate) fn mark(&self) {
        *self.at.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    /// How long ago this node last heard from its leader.
    pub(crate) fn since(&self) -> Duration {
        self.at.lock().unwrap_or_else(|p| p.into_inner()).elapsed()
    }
}

/// The voters (raft id and address) of the membership `raft` holds, if this node (`own`) is a
/// learner there; `None` if it is a voter, or not in it, or holds no membership yet.
fn voters_if_learner(raft: &Raft<TypeConfig>, own: u64) -> Option<Vec<(u64, Member)>> {
    let metrics = raft.metrics();
    let metrics = metrics.borrow();
    let membership = metrics.membership_config.membership();
    membership.get_node(&own)?;
    if membership.voter_ids().any(|v| v == own) {
        return None;
    }
    Some(
        membership
            .voter_ids()
            .filter_map(|id| membership.get_node(&id).map(|m| (id, m.clone())))
            .collect(),
    )
}

/// Watches `raft` (member `own`) every `heartbeat` until `stop`; see the module docs.
pub(crate) async fn ask_voters_while_unheard(
    raft: Raft<TypeConfig>,
    own: u64,
    network: Network,
    heard: std::sync::Arc<LeaderHeard>,
    heartbeat: Duration,
    stalled: Duration,
    stop: CancellationToken,
) {
    // When the next round of questions is due while this node stays unheard.
    let mut next_round: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(heartbeat) => {}
        }
        let Some(voters) = voters_if_learner(&raft, own) else {
            next_round = None;
            continue;
        };
        if heard.since() < stalled {
            next_round = None;
            continue;
        }
        if next_round.is_some_and(|at| Instant::now() < at) {
            continue;
        }
        tracing::debug!(
            "a learner that heard from no leader for {stalled:?}: asking the voters whether \
             they take it"
        );
        let mut asks = JoinSet::new();
        for (id, member) in voters {
            let network = network.clone();
            asks.spawn(async move { network.ask_membership(id, &member, stalled).await });
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = asks.join_all() => {}
        }
        next_round = Some(Instant::now() + stalled);
    }
}
