//! Changing who replicates a channel (the steps a replica move is made of): adding a learner
//! and waiting until it has caught up, then replacing the voters (openraft's joint
//! consensus). Both run only on the leader. The membership travels in the channel's log like
//! any entry, is persisted with it (and in `state_v1` once applied), and is what
//! [`ReplicatedChannel::open`] restores; admission (`raft/v1/*`) follows it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use net_mesh_rpc::NodeAddr;
use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::metrics::WaitError;
use openraft::{ChangeMembers, ServerState};

use crate::channel::ReplicatedChannel;
use crate::error::MembershipError;
use crate::types::{Member, member_map, raft_id};

type WriteError = RaftError<u64, ClientWriteError<u64, Member>>;

impl ReplicatedChannel {
    /// Adds `learner` to the group as a learner (it receives the log but does not vote) and
    /// returns once it holds everything committed when it was added: the returned log index
    /// (of the membership entry that added it). The learner's node must have joined
    /// ([`ReplicatedChannel::join`]) to answer. After `ReplicationConfig::learner_catch_up`
    /// without catching up: [`MembershipError::CatchUpTimeout`] (it stays a learner). Only on
    /// the leader; adding a node already in the group re-adds it (no change).
    pub async fn add_learner(&self, learner: &NodeAddr) -> Result<u64, MembershipError> {
        let id = raft_id(&learner.node_id);
        let target = self.add_learner_entry(learner).await?;
        let started = Instant::now();
        let waited = self
            .raft
            .wait(Some(self.learner_catch_up))
            .metrics(
                |m| {
                    m.state != ServerState::Leader
                        || m.replication
                            .as_ref()
                            .and_then(|r| r.get(&id).cloned().flatten())
                            .is_some_and(|l| l.index >= target)
                },
                "the learner to catch up",
            )
            .await;
        match waited {
            Ok(m) if m.state == ServerState::Leader => Ok(target),
            Ok(_) => Err(self.not_leader()),
            Err(WaitError::Timeout(..)) => Err(MembershipError::CatchUpTimeout {
                channel: self.channel.clone(),
                learner: learner.clone(),
                matched: self.matched(id),
                target,
                waited: started.elapsed(),
            }),
            Err(WaitError::ShuttingDown) => Err(MembershipError::Stopped {
                channel: self.channel.clone(),
                reason: "shutting down".into(),
            }),
        }
    }

    /// Adds `learner` as a learner and returns the log index of that membership entry once it
    /// is committed, without waiting for the learner to catch up.
    pub(crate) async fn add_learner_entry(
        &self,
        learner: &NodeAddr,
    ) -> Result<u64, MembershipError> {
        let id = raft_id(&learner.node_id);
        let known = self.membership_nodes();
        if let Some(other) = known.get(&id).filter(|m| !m.is(&learner.node_id)) {
            return Err(self.usage(format!(
                "node {} has the raft id {id:#018x} of member {}",
                learner.node_id,
                other.node_id_hex()
            )));
        }
        let resp = self
            .raft
            .add_learner(id, Member::from_addr(learner), false)
            .await
            .map_err(|e| self.membership_error(e))?;
        Ok(resp.log_id.index)
    }

    /// Removes `learner` from the group and returns the log index of that membership entry
    /// once it is committed. Only on the leader; a voter of either configuration is refused
    /// (openraft removes learners only), so this never changes a quorum.
    pub(crate) async fn remove_learner(&self, learner: &NodeAddr) -> Result<u64, MembershipError> {
        let id = raft_id(&learner.node_id);
        let resp = self
            .raft
            .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
            .await
            .map_err(|e| self.membership_error(e))?;
        Ok(resp.log_id.index)
    }

    /// The voters of the latest membership this node knows (every configuration of a joint
    /// one), and the log index of that membership's entry.
    pub(crate) fn voters(&self) -> (BTreeSet<u64>, Option<u64>) {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        (
            metrics.membership_config.voter_ids().collect(),
            metrics.membership_config.log_id().map(|l| l.index),
        )
    }

    /// The voter sets of the group's latest membership: one, or two while a membership change
    /// is between openraft's joint entry and its final one (the old voters, then the new).
    pub(crate) fn voter_configs(&self) -> Vec<BTreeSet<u64>> {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_joint_config()
            .clone()
    }

    /// Makes `voters` the group's voters: each must already be in the group (a voter, or a
    /// learner added with [`ReplicatedChannel::add_learner`]); voters not listed leave the
    /// group (they are not kept as learners), learners not listed stay learners. Runs
    /// openraft's joint consensus (old and new voters both must agree on the joint
    /// configuration, then the new one alone) and returns the log index of the final
    /// membership entry once it is committed. Only on the leader.
    pub async fn change_membership(&self, voters: &[NodeAddr]) -> Result<u64, MembershipError> {
        let wanted = member_map(voters).map_err(|e| self.usage(e.to_string()))?;
        let known = self.membership_nodes();
        for (id, member) in &wanted {
            match known.get(id) {
                Some(m) if m.node_id == member.node_id => {}
                Some(m) => {
                    return Err(self.usage(format!(
                        "node {} has the raft id {id:#018x} of member {}",
                        member.node_id_hex(),
                        m.node_id_hex()
                    )));
                }
                None => {
                    return Err(self.usage(format!(
                        "node {} is not in the group: add it as a learner first",
                        member.node_id_hex()
                    )));
                }
            }
        }
        let ids: BTreeSet<u64> = wanted.keys().copied().collect();
        let resp = self
            .raft
            .change_membership(ChangeMembers::ReplaceAllVoters(ids), false)
            .await
            .map_err(|e| self.membership_error(e))?;
        Ok(resp.log_id.index)
    }

    /// The nodes of the latest membership this node knows (voters and learners).
    pub(crate) fn membership_nodes(&self) -> BTreeMap<u64, Member> {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .nodes()
            .map(|(id, m)| (*id, m.clone()))
            .collect()
    }

    /// The last log index the leader knows to be on member `id`.
    pub(crate) fn matched(&self, id: u64) -> Option<u64> {
        self.raft
            .metrics()
            .borrow()
            .replication
            .as_ref()
            .and_then(|r| r.get(&id).cloned().flatten())
            .map(|l| l.index)
    }

    fn usage(&self, reason: String) -> MembershipError {
        MembershipError::Usage {
            channel: self.channel.clone(),
            reason,
        }
    }

    fn not_leader(&self) -> MembershipError {
        MembershipError::NotLeader {
            channel: self.channel.clone(),
            leader: self.status().leader,
        }
    }

    fn membership_error(&self, e: WriteError) -> MembershipError {
        let channel = self.channel.clone();
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
                MembershipError::NotLeader {
                    channel,
                    leader: f.leader_node.and_then(|m| m.addr()),
                }
            }
            RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => match e {
                ChangeMembershipError::InProgress(e) => MembershipError::Busy {
                    channel,
                    reason: e.to_string(),
                },
                ChangeMembershipError::EmptyMembership(e) => MembershipError::Usage {
                    channel,
                    reason: e.to_string(),
                },
                ChangeMembershipError::LearnerNotFound(e) => MembershipError::Usage {
                    channel,
                    reason: e.to_string(),
                },
            },
            RaftError::Fatal(e) => MembershipError::Stopped {
                channel,
                reason: e.to_string(),
            },
        }
    }
}

/// Watches `raft` every `heartbeat` until `stop`, and ends a joint membership that its
/// proposer left: while this member leads, a joint membership (the old voters and the new)
/// that it has applied and still finds the group's latest after `left_after` is replaced by
/// its new voters alone, the final entry openraft's `change_membership` would have proposed
/// next. A cutover cut off between the two entries (its coordinator stopped, its call dropped)
/// would otherwise leave the group joint, needing both quorums, until a coordinator that leads
/// resumes the move, and a group led by the move's target has none (a target never
/// coordinates its own move). The final entry is what the cutover asked for, so finishing it
/// here decides nothing new. `left_after` is far longer than a proposer takes between its two
/// entries (they are proposed back to back).
pub(crate) async fn finish_left_joint(
    raft: openraft::Raft<crate::types::TypeConfig>,
    heartbeat: std::time::Duration,
    left_after: std::time::Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    let metrics = raft.metrics();
    // The joint entry this member leads with, and since when (tokio's clock: virtual in the
    // simulation, like the heartbeat).
    let mut seen: Option<(u64, tokio::time::Instant)> = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(heartbeat) => {}
        }
        let joint = {
            let m = metrics.borrow();
            let configs = m.membership_config.membership().get_joint_config();
            let entry = m.membership_config.log_id().map(|l| l.index);
            let applied = m.last_applied.map(|l| l.index);
            match (configs.last(), entry) {
                (Some(newest), Some(entry))
                    if m.state == ServerState::Leader
                        && configs.len() > 1
                        && applied.is_some_and(|a| a >= entry) =>
                {
                    Some((entry, newest.clone()))
                }
                _ => None,
            }
        };
        let Some((entry, newest)) = joint else {
            seen = None;
            continue;
        };
        let since = match seen {
            Some((e, since)) if e == entry => since,
            _ => {
                seen = Some((entry, tokio::time::Instant::now()));
                continue;
            }
        };
        if since.elapsed() < left_after {
            continue;
        }
        tracing::info!(
            entry,
            voters = ?newest,
            "a joint membership left by its proposer: proposing its new voters"
        );
        let proposed = tokio::select! {
            _ = stop.cancelled() => return,
            r = raft.change_membership(ChangeMembers::ReplaceAllVoters(newest), false) => r,
        };
        if let Err(e) = proposed {
            tracing::warn!(entry, "finishing the joint membership failed: {e}");
        }
        seen = None;
    }
}
