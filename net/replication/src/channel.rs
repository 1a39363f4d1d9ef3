//! [`ReplicatedChannel`]: one channel's Raft group on this node, and the API a node uses to
//! write to it (propose, status, shutdown).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use net_mesh_engine::codec::Hash;
use net_mesh_engine::index::{blob_id, check_pin_name};
use net_mesh_engine::{BlobRef, Store};
use net_mesh_rpc::{Endpoint, NodeAddr, NodeId};
use openraft::error::{ClientWriteError, RaftError};
use openraft::{Config, Raft, RaftNetworkFactory, ServerState, SnapshotPolicy};
use tokio_util::sync::CancellationToken;

use crate::error::{ProposeError, ReplicationError};
use crate::fetch::{FetchCounts, FetchStats, Fetcher};
use crate::log_store::LogStore;
use crate::network::{Group, Network, Replication};
use crate::prefetch::{MAX_PREFETCHES_PER_CHANNEL, PrefetchServer};
use crate::sessions::Sessions;
use crate::state_machine::{InstallGate, StateMachine, missing_roots};
use crate::tables::{NAMESPACE, STATE_TABLE, StateRow, read_channel_row};
use crate::types::{
    LogId, MAX_PAYLOAD_ENTRIES, Member, PinOp, SNAPSHOT_CHUNK_LEN, TypeConfig, member_map, raft_id,
};
use crate::unheard::LeaderHeard;

/// Timing of a channel's group.
#[derive(Debug, Clone)]
pub struct ReplicationConfig {
    pub heartbeat: Duration,
    /// A follower that hears no leader for a random time in this range starts an election.
    pub election_timeout: (Duration, Duration),
    /// A snapshot (the channel's pin set, read from the store) is built after this many
    /// applied entries since the last one.
    pub snapshot_every: u64,
    /// Log entries already covered by a snapshot that are kept (the rest are purged). A
    /// member that needs a purged entry catches up by installing the leader's snapshot.
    pub keep_after_snapshot: u64,
    /// How long [`ReplicatedChannel::add_learner`] waits for the learner to catch up.
    pub learner_catch_up: Duration,
    /// Whether the leader makes a pin's objects durable on a majority of the voters before
    /// proposing it (docs/REPLICATION.md §5). Off, an acknowledged pin whose bytes only the
    /// leader held is lost with the leader's disk; only tests of apply-time fetching turn
    /// it off.
    pub quorum_durable: bool,
    /// How long the leader waits for one voter's prefetch (dial and call).
    pub prefetch_timeout: Duration,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            heartbeat: Duration::from_millis(150),
            election_timeout: (Duration::from_millis(750), Duration::from_millis(1500)),
            snapshot_every: 5000,
            keep_after_snapshot: 1000,
            learner_catch_up: Duration::from_secs(60),
            quorum_durable: true,
            prefetch_timeout: Duration::from_secs(60),
        }
    }
}

impl ReplicationConfig {
    fn raft_config(&self, channel: &str) -> Result<Arc<Config>, ReplicationError> {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let config = Config {
            cluster_name: format!("net-mesh channel {channel}"),
            heartbeat_interval: ms(self.heartbeat),
            election_timeout_min: ms(self.election_timeout.0),
            election_timeout_max: ms(self.election_timeout.1),
            max_payload_entries: MAX_PAYLOAD_ENTRIES,
            snapshot_max_chunk_size: SNAPSHOT_CHUNK_LEN,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_every),
            max_in_snapshot_log_to_keep: self.keep_after_snapshot,
            ..Config::default()
        };
        if self.snapshot_every == 0 {
            return Err(ReplicationError::Config(
                "snapshot_every must be at least 1".into(),
            ));
        }
        config
            .validate()
            .map(Arc::new)
            .map_err(|e| ReplicationError::Config(e.to_string()))
    }
}

/// A member's replication as the leader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberStatus {
    pub addr: NodeAddr,
    /// The last log index known to be on that member (the leader's own: its last log index);
    /// `None` when this node is not the leader or has not heard from it.
    pub matched: Option<u64>,
    /// How far `matched` is behind the leader's last log index.
    pub lag: Option<u64>,
    /// Whether it votes (in either configuration of a joint membership); a learner (a move's
    /// target before the cutover) does not.
    pub voter: bool,
}

/// A channel's replication as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelStatus {
    pub channel: String,
    pub members: Vec<MemberStatus>,
    pub leader: Option<NodeAddr>,
    pub is_leader: bool,
    pub term: u64,
    /// The quorum-committed index as far as this node knows it: on the leader, the highest
    /// index a majority of voters has matched; elsewhere, the last index applied here.
    pub committed: Option<u64>,
    /// The last index applied to this node's pins.
    pub applied: Option<u64>,
    /// This node's last log index (may hold entries not yet committed).
    pub last_log_index: Option<u64>,
    /// Entries in this node's log not yet applied here.
    pub pending_apply: u64,
    /// The last log index covered by this node's latest snapshot (built or installed).
    pub snapshot: Option<u64>,
    /// The last log index purged from this node's log.
    pub purged: Option<u64>,
    /// Snapshots installed here since the channel was opened (sent by a leader because this
    /// node needed entries it no longer had).
    pub snapshots_installed: u64,
    /// Objects this node fetched from other members for pins it applied (or snapshots it
    /// installed), and the failures on the way.
    pub fetched: FetchCounts,
    /// Objects this node fetched for leaders' prefetch requests (held until their pins are
    /// applied), and the requests it could not serve.
    pub prefetched: FetchCounts,
    /// Voters whose latest answer to this node's raft messages refused it as a member (see
    /// [`ReplicatedChannel::excluded`]).
    pub refused_by: Vec<NodeAddr>,
}

/// One channel replicated on this node.
pub struct ReplicatedChannel {
    pub(crate) channel: String,
    pub(crate) raft: Raft<TypeConfig>,
    pub(crate) replication: Replication,
    pub(crate) store: Arc<Store>,
    /// Snapshots installed by this channel's state machine.
    installs: Arc<AtomicU64>,
    /// How long `add_learner` waits for the learner to catch up.
    pub(crate) learner_catch_up: Duration,
    /// Fetches for pins this node applies.
    fetched: Arc<FetchStats>,
    /// Stops fetching (an entry waiting for its objects) and every state machine commit at
    /// shutdown.
    stop: CancellationToken,
    /// Held by every state machine commit ([`StateMachine::commit_lock`]).
    commits: Arc<std::sync::Mutex<()>>,
    /// This node's endpoint (moves dial with it).
    pub(crate) endpoint: Endpoint,
    /// The data path's sessions to the other members (shared with the node's other channels):
    /// prefetch requests, fetches, writes forwarded to the leader.
    pub(crate) sessions: Sessions,
    /// Bounds the prefetch rounds this node runs at once as a leader.
    pub(crate) prefetch_slots: tokio::sync::Semaphore,
    pub(crate) prefetch_timeout: Duration,
    quorum_durable: bool,
    /// Fetches for other members' prefetch requests.
    pub(crate) prefetched: Arc<FetchStats>,
    /// When this node last heard from the group's leader ([`crate::unheard`]).
    leader_heard: Arc<LeaderHeard>,
    /// How long a learner goes unheard before it asks the voters whether they take it.
    stalled_after: Duration,
}

impl std::fmt::Debug for ReplicatedChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicatedChannel")
            .field("channel", &self.channel)
            .field("store", &self.store.dir())
            .finish()
    }
}

impl ReplicatedChannel {
    /// Creates the channel's group with `members` (which must include this endpoint's node),
    /// or opens it if this store already holds its state. Every member runs `create` with the
    /// same list; the channel is created in the store when missing.
    pub async fn create(
        replication: &Replication,
        store: Arc<Store>,
        channel: &str,
        members: &[NodeAddr],
        endpoint: Endpoint,
        config: &ReplicationConfig,
    ) -> Result<ReplicatedChannel, ReplicationError> {
        let network = Network::new(replication, &endpoint, channel);
        let heartbeat = config.heartbeat;
        let c = Self::create_with_network(
            replication,
            store,
            channel,
            members,
            endpoint,
            config,
            network.clone(),
        )
        .await?;
        c.ask_voters_while_unheard(network, heartbeat);
        Ok(c)
    }

    /// Opens the channel's group from this store's state (after a restart).
    pub async fn open(
        replication: &Replication,
        store: Arc<Store>,
        channel: &str,
        endpoint: Endpoint,
        config: &ReplicationConfig,
    ) -> Result<ReplicatedChannel, ReplicationError> {
        let network = Network::new(replication, &endpoint, channel);
        let heartbeat = config.heartbeat;
        let c = Self::open_with_network(
            replication,
            store,
            channel,
            endpoint,
            config,
            network.clone(),
        )
        .await?;
        c.ask_voters_while_unheard(network, heartbeat);
        Ok(c)
    }

    /// Joins an existing group as a new member (the first step of a replica move): starts the
    /// channel's group on this node with no membership, to be added by the leader with
    /// [`ReplicatedChannel::add_learner`]. Until the leader's log or snapshot tells it the
    /// membership, it admits raft calls only from `members` (the group's current members, as
    /// the operator who starts the move names them). If this store already holds the
    /// channel's state, this is [`ReplicatedChannel::open`].
    pub async fn join(
        replication: &Replication,
        store: Arc<Store>,
        channel: &str,
        members: &[NodeAddr],
        endpoint: Endpoint,
        config: &ReplicationConfig,
    ) -> Result<ReplicatedChannel, ReplicationError> {
        let network = Network::new(replication, &endpoint, channel);
        let heartbeat = config.heartbeat;
        let c = Self::join_with_network(
            replication,
            store,
            channel,
            members,
            endpoint,
            config,
            network.clone(),
        )
        .await?;
        c.ask_voters_while_unheard(network, heartbeat);
        Ok(c)
    }

    /// [`ReplicatedChannel::create`] whose raft messages go through `network` instead of
    /// the node's shared nRPC sessions from `endpoint` (which still carry the data path:
    /// fetches and prefetches). For in-process simulations of a group (`tests/sim`); a node uses
    /// `create`. A learner of such a group that hears nothing from its leader asks the
    /// voters nothing ([`crate::unheard`]: the question is not one of openraft's messages).
    #[doc(hidden)]
    pub async fn create_with_network<N: RaftNetworkFactory<TypeConfig>>(
        replication: &Replication,
        store: Arc<Store>,
        channel: &str,
        members: &[NodeAddr],
        endpoint: Endpoint,
        config: &ReplicationConfig,
        network: N,
    ) -> Result<ReplicatedChannel, ReplicationError> {
        let own = endpoint.identity().node_id();
        let map = member_map(members)?;
        if !map.values().any(|m| m.is(&own)) {
            return Err(ReplicationError::Membership(format!(
                "this node ({own}) is not in the member list"
            )));
        }
        let c = Self::start(
            replication,
            store,
            channel,
            endpoint,
            config,
            members,
            network,
        )
        .await?;
        let initialized = match c.raft.is_initialized().await {
            Ok(initialized) => initialized,
            Err(e) => {
                // The group started and holds its place in the node: stop it before failing.
                let _ = c.shutdown().await;
                return Err(ReplicationError::Raft(e.to_string()));
            }
        };
        if !initialized {
            // Every member writes the same first membership entry; a member that has heard
            // from another first refuses, which is fine.
            if let Err(e) = c.raft.initialize(map).await {
                tracing::debug!(channel, error = %e, "initialize refused");
            }
        }
        Ok(c)
    }

    /// [`ReplicatedChannel::open`] over `network` (see
    /// [`ReplicatedChannel::create_with_network`]).
    #[doc(hidden)]
    pub async fn open_with_network<N: RaftNetworkFactory<TypeConfig>>(
        replication: &Replication,
        store: Arc<Store>,
        channel: &str,
        endpoint: Endpoint,
        config: &ReplicationConfig,
        network: N,
    ) -> Result<ReplicatedChannel, ReplicationError> {
        let has_state = has_state(&store, channel).await?;
        if !has_state {
            return Err(ReplicationError::NotReplicated(channel.to_string()));
        }
        Self::start(replication, store, channel, endpoint, config, &[], network).await
    }

    /// [`ReplicatedChannel::join`] over `network` (see
    /// [`ReplicatedChannel::create_with_network`]).
    #[doc(hidden)]
    pub async fn join_with_network<N: RaftNetworkFactory<TypeConfig>>(
        replication: &Replication,
        store: Arc<Store>,
        channel: &str,
        members: &[NodeAddr],
        endpoint: Endpoint,
        config: &ReplicationConfig,
        network: N,
    ) -> Result<ReplicatedChannel, ReplicationError> {
        member_map(members)?;
        if has_state(&store, channel).await? {
            return Self::open_with_network(replication, store, channel, endpoint, config, network)
                .await;
        }
        Self::start(
            replication,
            store,
            channel,
            endpoint,
            config,
            members,
            network,
        )
        .await
    }

    async fn start<N: RaftNetworkFactory<TypeConfig>>(
        replication: &Replication,
        store: Arc<Store>,
        channel: &str,
        endpoint: Endpoint,
        config: &ReplicationConfig,
        bootstrap: &[NodeAddr],
        network: N,
    ) -> Result<ReplicatedChannel, ReplicationError> {
        {
            let store = store.clone();
            let ch = channel.to_string();
            tokio::task::spawn_blocking(move || store.create_channel(&ch))
                .await
                .map_err(|e| ReplicationError::Raft(e.to_string()))??;
        }
        let claim = Arc::new(
            replication
                .claim_open(channel)
                .ok_or_else(|| ReplicationError::AlreadyOpen(channel.to_string()))?,
        );
        let own = raft_id(&endpoint.identity().node_id());
        let stop = replication.closing().child_token();
        let sessions = replication.lanes(&endpoint).data;
        let fetcher = Fetcher::new(
            sessions.clone(),
            replication.member_streams(),
            tokio::runtime::Handle::current(),
            stop.clone(),
        );
        let fetched = fetcher.stats();
        let leader_from = Arc::new(AtomicU64::new(0));
        let gate = InstallGate::new(stop.clone());
        let state_machine = StateMachine::new(store.clone(), channel)
            .with_fetcher(fetcher)
            .with_leader_source(leader_from.clone())
            .with_install_gate(gate.clone())
            .with_stop(stop.clone());
        {
            let sm = state_machine.clone();
            // The finish holds the claim too: it runs on if this call is dropped, and no
            // other open may start meanwhile.
            let claim = claim.clone();
            tokio::task::spawn_blocking(move || {
                let finished = sm.finish_interrupted_install();
                drop(claim);
                finished
            })
            .await
            .map_err(|e| ReplicationError::Raft(e.to_string()))?
            .map_err(|e| ReplicationError::Raft(e.to_string()))?;
        }
        let prefetch = Arc::new(PrefetchServer::new(
            store.clone(),
            channel,
            Fetcher::new(
                sessions.clone(),
                replication.member_streams(),
                tokio::runtime::Handle::current(),
                stop.clone(),
            ),
        ));
        let prefetched = prefetch.stats();
        let installs = state_machine.installs();
        let commits = state_machine.commit_lock();
        let raft = Raft::new(
            own,
            config.raft_config(channel)?,
            network,
            LogStore::new(store.clone(), channel).with_install_gate(gate),
            state_machine.clone(),
        )
        .await
        .map_err(|e| ReplicationError::Raft(e.to_string()))?;
        let leader_heard = Arc::new(LeaderHeard::new());
        let group = Group {
            raft: raft.clone(),
            bootstrap: bootstrap.iter().map(|a| a.node_id).collect(),
            prefetch,
            leader_from,
            leader_heard: leader_heard.clone(),
            state_machine,
            receiving: Arc::default(),
            preparing: Arc::default(),
        };
        if !replication.insert(channel, group) {
            let _ = raft.shutdown().await;
            return Err(ReplicationError::AlreadyOpen(channel.to_string()));
        }
        tokio::spawn(crate::elect::break_split_votes(
            raft.clone(),
            own,
            config.heartbeat,
            config.election_timeout.1,
            stop.clone(),
        ));
        let stalled_after = crate::elect::stalled_after(config.election_timeout.1);
        tokio::spawn(crate::membership::finish_left_joint(
            raft.clone(),
            config.heartbeat,
            stalled_after,
            stop.clone(),
        ));
        Ok(ReplicatedChannel {
            channel: channel.to_string(),
            raft,
            replication: replication.clone(),
            store,
            installs,
            learner_catch_up: config.learner_catch_up,
            fetched,
            stop,
            commits,
            endpoint,
            sessions,
            prefetch_slots: tokio::sync::Semaphore::new(MAX_PREFETCHES_PER_CHANNEL),
            prefetch_timeout: config.prefetch_timeout,
            quorum_durable: config.quorum_durable,
            prefetched,
            leader_heard,
            stalled_after,
        })
    }

    /// Starts this member's watch for its leader's silence ([`crate::unheard`]): as a learner
    /// that heard nothing from its leader for `stalled_after`, it asks the voters over
    /// `network` whether they still take it.
    fn ask_voters_while_unheard(&self, network: Network, heartbeat: Duration) {
        let own = self.raft.metrics().borrow().id;
        tokio::spawn(crate::unheard::ask_voters_while_unheard(
            self.raft.clone(),
            own,
            network,
            self.leader_heard.clone(),
            heartbeat,
            self.stalled_after,
            self.stop.clone(),
        ));
    }

    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// Proposes pinning `blob_ref` under `name`. Returns the entry's log index once it is
    /// committed (on a quorum) and applied here. Only the leader proposes; its store must
    /// hold the blob's objects, and before proposing it makes them durable on a majority of
    /// the voters (itself included): [`ProposeError::NotDurable`] when too few voters could
    /// prefetch them, and nothing is proposed.
    pub async fn propose_pin(&self, blob_ref: &BlobRef, name: &str) -> Result<u64, ProposeError> {
        check_pin_name(name).map_err(|e| ProposeError::Usage(e.to_string()))?;
        let status = self.status();
        if !status.is_leader {
            return Err(ProposeError::NotLeader {
                channel: self.channel.clone(),
                leader: status.leader,
            });
        }
        // The leader pins only a blob whose every object it holds (checked before anything
        // is proposed, so a pin that could not apply here never enters the log).
        let store = self.store.clone();
        let wanted = blob_ref.clone();
        let missing = tokio::task::spawn_blocking(move || missing_roots(&store, &wanted))
            .await
            .map_err(|e| self.stopped(e))?
            .map_err(|e| self.stopped(e))?;
        if !missing.is_empty() {
            return Err(ProposeError::MissingObjects {
                channel: self.channel.clone(),
                missing,
            });
        }
        if self.quorum_durable {
            self.make_durable(blob_ref).await?;
        }
        self.propose(PinOp::Pin {
            blob_ref: blob_ref.encode(),
            name: name.to_string(),
        })
        .await
    }

    /// Proposes unpinning the blob with id `id` (see [`ReplicatedChannel::propose_pin`]).
    pub async fn propose_unpin(&self, id: &Hash) -> Result<u64, ProposeError> {
        self.propose(PinOp::Unpin { blob_id: *id }).await
    }

    /// The blob id a pin of `blob_ref` has (what [`ReplicatedChannel::propose_unpin`] takes).
    pub fn blob_id(blob_ref: &BlobRef) -> Hash {
        blob_id(blob_ref)
    }

    async fn propose(&self, op: PinOp) -> Result<u64, ProposeError> {
        op.check().map_err(ProposeError::Usage)?;
        match self.raft.client_write(op).await {
            Ok(resp) => Ok(resp.log_id.index),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(ProposeError::NotLeader {
                    channel: self.channel.clone(),
                    leader: f.leader_node.and_then(|m| m.addr()),
                })
            }
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
                Err(ProposeError::Busy {
                    channel: self.channel.clone(),
                    reason: e.to_string(),
                })
            }
            Err(RaftError::Fatal(e)) => Err(self.stopped(e)),
        }
    }

    pub(crate) fn stopped(&self, e: impl std::fmt::Display) -> ProposeError {
        ProposeError::Stopped {
            channel: self.channel.clone(),
            reason: e.to_string(),
        }
    }

    /// The group as this node sees it now.
    pub fn status(&self) -> ChannelStatus {
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let is_leader = metrics.state == ServerState::Leader;
        let last_log_index = metrics.last_log_index;
        let matched_of = |id: &u64| -> Option<u64> {
            if !is_leader {
                return None;
            }
            if *id == metrics.id {
                return last_log_index;
            }
            metrics
                .replication
                .as_ref()
                .and_then(|r| r.get(id).cloned().flatten())
                .map(|l: LogId| l.index)
        };
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let members: Vec<MemberStatus> = membership
            .nodes()
            .filter_map(|(id, m): (&u64, &Member)| {
                let matched = matched_of(id);
                Some(MemberStatus {
                    addr: m.addr()?,
                    voter: voters.contains(id),
                    matched,
                    lag: match (last_log_index, matched) {
                        (Some(last), Some(m)) => Some(last.saturating_sub(m)),
                        (Some(last), None) if is_leader => Some(last.saturating_add(1)),
                        _ => None,
                    },
                })
            })
            .collect();
        let applied = metrics.last_applied.map(|l| l.index);
        let committed = if is_leader {
            // The highest index a majority of voters holds.
            let mut voter_matched: Vec<u64> = membership
                .voter_ids()
                .map(|id| matched_of(&id).unwrap_or(0))
                .collect();
            voter_matched.sort_unstable_by(|a, b| b.cmp(a));
            voter_matched.get(voter_matched.len() / 2).copied()
        } else {
            applied
        };
        let leader = metrics
            .current_leader
            .and_then(|id| membership.get_node(&id))
            .and_then(Member::addr);
        ChannelStatus {
            channel: self.channel.clone(),
            members,
            leader,
            is_leader,
            term: metrics.current_term,
            committed,
            applied,
            last_log_index,
            pending_apply: match (last_log_index, applied) {
                (Some(last), Some(a)) => last.saturating_sub(a),
                (Some(last), None) => last.saturating_add(1),
                _ => 0,
            },
            snapshot: metrics.snapshot.map(|l| l.index),
            purged: metrics.purged.map(|l| l.index),
            snapshots_installed: self.installs.load(Ordering::Relaxed),
            fetched: self.fetched.counts(),
            prefetched: self.prefetch_counts(),
            refused_by: self
                .replication
                .refused_by(&self.channel)
                .iter()
                .filter(|id| voters.contains(id))
                .filter_map(|id| membership.get_node(id).and_then(Member::addr))
                .collect(),
        }
    }

    /// Why this node's copy of the channel is no longer the group's, if it is not: the
    /// group's latest membership it holds leaves it out (it applied its own removal), or a
    /// majority of every voter configuration refuses it as a non-member (it was removed while
    /// it was away, e.g. a move's source forgotten as gone for good, or an abandoned move's
    /// target: its own state still names it). A voter hears those refusals to its raft
    /// messages and counts them while it knows no leader; a learner, which sends none and
    /// goes on naming the leader that removed it, asks the voters once it heard nothing from
    /// its leader for twice the longest election timeout, and counts their answers while it
    /// stays unheard ([`crate::unheard`]). Its pins are then stale. A member refused only
    /// while a change of voters is under way is taken again once the group settles, and then
    /// `None` again.
    pub fn excluded(&self) -> Option<String> {
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        // Joining: no membership yet.
        membership.nodes().next()?;
        if membership.get_node(&metrics.id).is_none() {
            return Some(format!(
                "the group's membership at log index {} leaves this node out",
                metrics
                    .membership_config
                    .log_id()
                    .map_or(0, |l: LogId| l.index)
            ));
        }
        let learner = !membership.voter_ids().any(|v| v == metrics.id);
        let hears_a_leader = if learner {
            self.leader_heard.since() < self.stalled_after
        } else {
            metrics.current_leader.is_some()
        };
        if hears_a_leader {
            return None;
        }
        let refused = self.replication.refused_by(&self.channel);
        let configs = membership.get_joint_config();
        let out = configs
            .iter()
            .all(|c| c.iter().filter(|id| refused.contains(id)).count() * 2 > c.len());
        out.then(|| {
            let names: Vec<String> = refused
                .iter()
                .filter_map(|id| membership.get_node(id).and_then(Member::addr))
                .map(|a| a.to_string())
                .collect();
            format!(
                "its voters {} refuse this node as a non-member",
                names.join(", ")
            )
        })
    }

    /// Waits until this channel's group stops on its own: openraft's core ended on a fatal
    /// error (a storage or state machine error, a panic) while nobody stopped the channel.
    /// Returns the error; `None` once the channel is shut down (also when a shutdown and an
    /// error race: the shutdown decides).
    pub async fn failed(&self) -> Option<String> {
        let mut metrics = self.raft.metrics();
        let why = tokio::select! {
            _ = self.stop.cancelled() => return None,
            seen = metrics.wait_for(|m| m.running_state.is_err()) => match seen {
                // openraft's text repeats the error's sources: the first is enough.
                Ok(m) => match &m.running_state {
                    Err(fatal) => {
                        let text = fatal.to_string();
                        text.split("; source:").next().unwrap_or_default().to_string()
                    }
                    Ok(()) => String::new(),
                },
                Err(_) => "the group's metrics ended".to_string(),
            },
        };
        (!self.stop.is_cancelled()).then_some(why)
    }

    /// The leader's node id, if this node knows one.
    pub fn leader(&self) -> Option<NodeId> {
        self.status().leader.map(|a| a.node_id)
    }

    /// Stops the group on this node (its state stays in the store; [`ReplicatedChannel::open`]
    /// resumes it) and stops serving its calls.
    ///
    /// Once it returns, nothing of the group writes to the store any more: openraft's core
    /// has stopped, and its state machine worker, which goes on with the commands queued
    /// before, commits nothing (every commit checks the stop under the commit lock, and a
    /// commit running meanwhile has ended). Only then can another open of the channel start.
    pub async fn shutdown(&self) -> Result<(), ReplicationError> {
        self.stop.cancel();
        let stopped = self
            .raft
            .shutdown()
            .await
            .map_err(|e| ReplicationError::Raft(e.to_string()));
        let commits = self.commits.clone();
        let _ = tokio::task::spawn_blocking(move || {
            drop(commits.lock().unwrap_or_else(|p| p.into_inner()));
        })
        .await;
        self.replication.remove(&self.channel);
        self.replication.close_sessions_if_idle();
        stopped
    }
}

/// Whether this store holds any replication state (applied state, log bounds, log entries)
/// for `channel`.
async fn has_state(store: &Arc<Store>, channel: &str) -> Result<bool, ReplicationError> {
    let store = store.clone();
    let ch = channel.to_string();
    tokio::task::spawn_blocking(move || {
        store.read_extension(NAMESPACE, |r| crate::tables::holds_state(r, &ch))
    })
    .await
    .map_err(|e| ReplicationError::Raft(e.to_string()))?
    .map_err(ReplicationError::from)
}

/// The applied state this store holds for `channel`: the last applied log index and term, if
/// anything was applied (read from `ext.raft.state_v1`).
pub fn stored_applied(
    store: &Store,
    channel: &str,
) -> Result<Option<(u64, u64)>, ReplicationError> {
    let row = store.read_extension(NAMESPACE, |r| {
        read_channel_row::<StateRow>(r, STATE_TABLE, channel)
    })?;
    Ok(row
        .and_then(|s| s.last_applied)
        .map(|l| (l.leader_id.term, l.index)))
}
