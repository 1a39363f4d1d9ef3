//! Members for replica-move tests: like `support::Member` (a real store, a real nRPC endpoint
//! on 127.0.0.1 serving the storage node's methods and the replication methods), plus the
//! node's [`Moves`] with `move/v1/*` on the same router and its admission in the hook; and a
//! three-member channel with a fourth node ready to join it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use net_mesh_engine::Store;
use net_mesh_node::Node;
use net_mesh_node::call_token::encode_metadata;
use net_mesh_replication::tables::{NAMESPACE, STATE_TABLE, StateRow, read_channel_row};
use net_mesh_replication::{
    MoveConfig, MoveSpec, Moves, ReplicatedChannel, Replication, ReplicationConfig, raft_id,
};
use net_mesh_rpc::rpc::client::CallOptions;
use net_mesh_rpc::rpc::{Denied, Router};
use net_mesh_rpc::{Endpoint, Identity, NodeAddr, PeerIdentity, RpcError};

use crate::support::{CHANNEL, Serving, open_store, peer_allow, wait_until};

/// A member with its replica moves.
pub struct MoveMember {
    pub identity: Identity,
    pub dir: PathBuf,
    pub addr: NodeAddr,
    pub replication: Replication,
    pub moves: Moves,
    pub endpoint: Endpoint,
    pub store: Arc<Store>,
    serving: Serving,
}

impl MoveMember {
    /// Starts a member on `port` (0: any free port); its moves wait as `config` says.
    pub async fn start(identity: Identity, dir: PathBuf, port: u16, config: MoveConfig) -> Self {
        let store = open_store(&dir);
        let replication = Replication::new();
        let moves = Moves::with_config(store.clone(), identity.node_id(), config);
        let node = Node::new(store.clone(), identity.node_id()).unwrap();
        let allow = peer_allow(&identity);
        let router: Router = moves.routes(replication.routes(node.router(allow.clone())));
        let (hook_replication, hook_moves) = (replication.clone(), moves.clone());
        let router = router.authorize(
            move |peer: &PeerIdentity, method: &str, metadata: &[u8]| -> Result<(), Denied> {
                if let Some(verdict) = hook_replication.authorize_call(peer, method, metadata) {
                    return verdict;
                }
                if let Some(verdict) = hook_moves.authorize_call(peer, method, metadata) {
                    return verdict;
                }
                allow
                    .authorize(
                        &peer.node_id(),
                        peer.public_key(),
                        method,
                        metadata,
                        net_mesh_node::call_token::now_unix_s(),
                    )
                    .map(|_| ())
                    .map_err(|r| Denied::new(r.to_string()))
            },
        );
        let endpoint = Endpoint::new(identity.clone(), router, net_mesh_node::node_config());
        let (serving, addr) = Serving::start(&endpoint, port).await;
        MoveMember {
            identity,
            dir,
            addr,
            replication,
            moves,
            endpoint,
            store,
            serving,
        }
    }

    /// Stops serving; gives back what a restart needs.
    pub async fn stop(self) -> (Identity, PathBuf, u16) {
        let port = self.serving.stop().await;
        (self.identity, self.dir, port)
    }

    /// Stops serving (nobody reaches it), keeping its store, channels and moves.
    pub async fn pause(&mut self) {
        self.serving.pause().await;
    }

    /// Serves again on the same port after [`MoveMember::pause`].
    pub async fn resume(&mut self) {
        self.serving.resume().await;
    }

    /// Joins the test channel (admitting `members` until it learns the membership) and
    /// attaches it to this member's moves.
    pub async fn join(&self, members: &[NodeAddr]) -> Arc<ReplicatedChannel> {
        self.join_with(members, &ReplicationConfig::default()).await
    }

    /// [`MoveMember::join`] with `config` (e.g. election timeouts of its own).
    pub async fn join_with(
        &self,
        members: &[NodeAddr],
        config: &ReplicationConfig,
    ) -> Arc<ReplicatedChannel> {
        let ch = Arc::new(
            ReplicatedChannel::join(
                &self.replication,
                self.store.clone(),
                CHANNEL,
                members,
                self.endpoint.clone(),
                config,
            )
            .await
            .unwrap(),
        );
        self.moves.attach(ch.clone());
        ch
    }

    /// Opens the test channel again from this member's store (after its group was stopped)
    /// and attaches it to this member's moves.
    pub async fn open(&self) -> Arc<ReplicatedChannel> {
        let ch = Arc::new(
            ReplicatedChannel::open(
                &self.replication,
                self.store.clone(),
                CHANNEL,
                self.endpoint.clone(),
                &ReplicationConfig::default(),
            )
            .await
            .unwrap(),
        );
        self.moves.attach(ch.clone());
        ch
    }

    /// Sends a raw `move/v1/*` call for the test channel to `to`.
    pub async fn call<
        Req: serde::Serialize,
        Resp: serde::de::DeserializeOwned + serde::Serialize,
    >(
        &self,
        to: &NodeAddr,
        method: &str,
        req: &Req,
    ) -> Result<Resp, RpcError> {
        let session = self.endpoint.connect_node(to).await.unwrap();
        let opts = CallOptions::with_timeout(Duration::from_secs(10))
            .metadata(encode_metadata(CHANNEL, &[]));
        session.call_unary(method, req, opts).await
    }
}

/// Three members running the test channel (attached to their moves) and a fourth, started
/// but not in the group. Returns the members, the three channels and the leader's position.
pub async fn three_and_a_newcomer(
    root: &std::path::Path,
    config: MoveConfig,
) -> (Vec<MoveMember>, Vec<Arc<ReplicatedChannel>>, usize) {
    group_and_outsiders(root, config, 3, 1).await
}

/// `voters` members running the test channel (attached to their moves) and `outsiders` more,
/// started but not in the group (seeds 1, 2, … in that order). Returns the members, the
/// group's channels and the leader's position.
pub async fn group_and_outsiders(
    root: &std::path::Path,
    config: MoveConfig,
    voters: u8,
    outsiders: u8,
) -> (Vec<MoveMember>, Vec<Arc<ReplicatedChannel>>, usize) {
    let mut members = Vec::new();
    for i in 0..voters + outsiders {
        let identity = Identity::from_seed([i + 1; 32]);
        members
            .push(MoveMember::start(identity, root.join(format!("m{i}")), 0, config.clone()).await);
    }
    let group = usize::from(voters);
    let all: Vec<NodeAddr> = members[..group].iter().map(|m| m.addr.clone()).collect();
    let mut channels = Vec::new();
    for m in &members[..group] {
        let ch = Arc::new(
            ReplicatedChannel::create(
                &m.replication,
                m.store.clone(),
                CHANNEL,
                &all,
                m.endpoint.clone(),
                &ReplicationConfig::default(),
            )
            .await
            .unwrap(),
        );
        m.moves.attach(ch.clone());
        channels.push(ch);
    }
    let refs: Vec<&ReplicatedChannel> = channels.iter().map(|c| c.as_ref()).collect();
    let leader = crate::support::wait_for_leader(&refs).await;
    (members, channels, leader)
}

/// The applied state's (voters, learners) of the test channel in `store`, as full node ids.
pub fn applied_membership(store: &Store) -> (BTreeSet<[u8; 32]>, BTreeSet<[u8; 32]>) {
    let Some(row) = store
        .read_extension(NAMESPACE, |r| {
            read_channel_row::<StateRow>(r, STATE_TABLE, CHANNEL)
        })
        .unwrap()
    else {
        return (BTreeSet::new(), BTreeSet::new());
    };
    let m = row.membership.membership();
    let full = |id: u64| m.get_node(&id).unwrap().node_id;
    (
        m.voter_ids().map(full).collect(),
        m.learner_ids().map(full).collect(),
    )
}

/// Waits until `store`'s applied membership has exactly `voters` and no learner.
pub async fn wait_for_voters(store: &Store, voters: &[&NodeAddr]) {
    let want: BTreeSet<[u8; 32]> = voters.iter().map(|a| *a.node_id.as_bytes()).collect();
    wait_until("the applied membership to be the target voters", || {
        let (v, l) = applied_membership(store);
        (v == want && l.is_empty()).then_some(())
    })
    .await;
}

/// Waits until each of `members[on]` has applied exactly the voters `members[voters]` and no
/// learner.
pub async fn wait_for_voters_on(members: &[MoveMember], on: &[usize], voters: &[usize]) {
    let want: Vec<&NodeAddr> = voters.iter().map(|i| &members[*i].addr).collect();
    for i in on {
        wait_for_voters(&members[*i].store, &want).await;
    }
}

/// The move of the test channel from `from` to `to`, coordinated by `coordinator`.
pub fn spec(from: &MoveMember, to: &MoveMember, coordinator: &MoveMember) -> MoveSpec {
    let s = MoveSpec::new(
        CHANNEL,
        from.addr.clone(),
        to.addr.clone(),
        coordinator.identity.node_id(),
    );
    assert_ne!(raft_id(&from.addr.node_id), raft_id(&to.addr.node_id));
    s
}

/// Pins `count` small blobs (`pin 0`, `pin 1`, …, named `pin-0`, …) stored on the leader,
/// each acknowledged before the next.
pub async fn pin_on_leader(leader: &MoveMember, channel: &ReplicatedChannel, count: u32) {
    for i in 0..count {
        let r = leader
            .store
            .store(format!("pin {i}").as_bytes())
            .unwrap()
            .blob_ref;
        channel.propose_pin(&r, &format!("pin-{i}")).await.unwrap();
    }
}

/// Checks that the move of A's replica to B finished, in a group led by `leader` whose other
/// voter is `other` (positions in `members`): the leader, the other voter and B each hold the
/// voters leader, other, B; A holds no pin; B holds the leader's pins.
pub async fn moved_to_b(members: &[MoveMember], leader: usize, other: usize, a: usize, b: usize) {
    wait_for_voters_on(members, &[leader, other, b], &[leader, other, b]).await;
    assert!(crate::support::pin_set(&members[a].store).is_empty());
    wait_until("B holds the leader's pins", || {
        let (on_b, on_leader) = (
            crate::support::pin_set(&members[b].store),
            crate::support::pin_set(&members[leader].store),
        );
        (on_b == on_leader).then_some(())
    })
    .await;
}
