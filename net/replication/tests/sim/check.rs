//! The invariants checked on every seed, and the forged messages the simulation sends.
//!
//! - every acknowledged pin or unpin is in every member's log at the index it was
//!   acknowledged with (where the log still holds it), acknowledgements come in log order,
//!   and every member's pin set is what the acknowledged operations leave (an operation whose
//!   outcome the client never learned may have happened or not, the same on every member);
//! - after healing, the members converge: the same applied log id, the same pin set, logs
//!   that agree at every index they both hold, and (when nothing was purged) a pin set equal
//!   to replaying the log;
//! - at most one leader per term across every observation of every member;
//! - a message from a node that is no member is refused, one carrying a stale term rejected,
//!   and nothing they carried (entries, snapshots, terms) reaches any member;
//! - the group ends with exactly the target voters and no other node.

use std::collections::{BTreeMap, BTreeSet};

use net_mesh_engine::BlobRef;
use net_mesh_replication::log_store::LogStore;
use net_mesh_replication::network::Reply;
use net_mesh_replication::state_machine::{SnapshotBody, SnapshotPin};
use net_mesh_replication::tables::{
    NAMESPACE, STATE_TABLE, StateRow, encode_row, read_channel_row,
};
use net_mesh_replication::{PinOp, Replication, TypeConfig, raft_id, stored_applied};
use net_mesh_rpc::rpc::ErrorKind;
use net_mesh_rpc::{Identity, NodeId, RpcError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, VoteRequest,
};
use openraft::storage::RaftLogReader;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, SnapshotMeta, Vote};

use super::rng::mix;
use super::{CHANNEL, Cluster, FORGED_TERM};

/// A client operation on blob number `k`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Pin(usize),
    Unpin(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `propose_*` returned this log index: committed, the write must never be lost.
    Acked(u64),
    /// Refused, failed or timed out: it may or may not be in the log.
    Unknown,
}

#[derive(Debug, Clone, Copy)]
pub struct Attempt {
    pub op: Op,
    pub outcome: Outcome,
}

/// What the sampler and the forged messages saw.
#[derive(Debug, Default)]
pub struct Observations {
    /// Every node seen as leader of each term (by itself, or by a member's committed vote).
    /// Every node seen as leader of each term, with when it was first seen (virtual time)
    /// and by whom (the member itself, or a member whose committed vote names it).
    pub leaders: BTreeMap<u64, BTreeMap<u64, (tokio::time::Instant, String)>>,
    pub max_term: u64,
    pub violations: Vec<String>,
}

pub fn pin_name(k: usize) -> String {
    format!("pin-{k}")
}

fn forged_name(seq: u64) -> String {
    format!("forged-{seq}")
}

fn is_forged(name: &str) -> bool {
    name.starts_with("forged-")
}

fn denied<T>(r: &Result<T, RpcError>) -> bool {
    matches!(r, Err(e) if e.kind == ErrorKind::PermissionDenied)
}

fn show<T: std::fmt::Debug>(r: &Result<Reply<T>, RpcError>) -> String {
    match r {
        Ok(reply) => format!("{reply:?}"),
        Err(e) => format!("error {e}"),
    }
}

/// Delivers the forged messages to `to` (node `to_id`, whose term was `term` just before) and
/// returns what went wrong: a non-member's append, vote and snapshot (with a term no member
/// reaches) must be refused; so must `member`'s append, vote and snapshot that speak for the
/// callee (a vote naming it, at that far term); `member`'s own append, vote and snapshot with
/// the term before `term` must be rejected (or refused, if `member` has left meanwhile).
pub async fn forge(
    to: &Replication,
    to_id: NodeId,
    blob: &BlobRef,
    seq: u64,
    term: u64,
    member: Option<NodeId>,
) -> Vec<String> {
    let mut bad = Vec::new();
    let outsider = Identity::from_seed([0xEE; 32]).node_id();
    let log_id =
        |term: u64, node: u64, index: u64| LogId::new(CommittedLeaderId::new(term, node), index);
    let append = |term: u64, node: u64| AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new_committed(term, node),
        prev_log_id: None,
        // Well formed (the first entry follows `prev_log_id`): a malformed one is refused
        // before openraft sees it, which would hide what the term check does.
        entries: vec![Entry {
            log_id: log_id(term, node, 0),
            payload: EntryPayload::Normal(PinOp::Pin {
                blob_ref: blob.encode(),
                name: forged_name(seq),
            }),
        }],
        leader_commit: Some(log_id(term, node, 0)),
    };
    let vote = |term: u64, node: u64| {
        VoteRequest::new(Vote::new(term, node), Some(log_id(term, node, 1 << 40)))
    };
    let snapshot = |term: u64, node: u64| InstallSnapshotRequest::<TypeConfig> {
        vote: Vote::new_committed(term, node),
        // Well formed too (a membership a leader logs, before its last log id).
        meta: SnapshotMeta {
            last_log_id: Some(log_id(term, node, 1 << 40)),
            last_membership: openraft::StoredMembership::new(
                Some(log_id(term, node, 0)),
                openraft::Membership::new(vec![std::collections::BTreeSet::from([node])], None),
            ),
            snapshot_id: forged_name(seq),
        },
        offset: 0,
        data: encode_row(&SnapshotBody {
            pins: vec![SnapshotPin {
                name: forged_name(seq),
                blob_ref: blob.encode(),
            }],
        })
        .unwrap(),
        done: true,
    };

    // From a node that is no member, with a term far ahead.
    let out = raft_id(&outsider);
    let far = FORGED_TERM + seq;
    let r = to
        .deliver_append(&outsider, CHANNEL, append(far, out))
        .await;
    if !denied(&r) {
        bad.push(format!(
            "a non-member's append was not refused: {}",
            show(&r)
        ));
    }
    let r = to.deliver_vote(&outsider, CHANNEL, vote(far, out)).await;
    if !denied(&r) {
        bad.push(format!("a non-member's vote was not refused: {}", show(&r)));
    }
    let r = to
        .deliver_snapshot(&outsider, CHANNEL, snapshot(far, out))
        .await;
    if !denied(&r) {
        bad.push(format!(
            "a non-member's snapshot was not refused: {}",
            show(&r)
        ));
    }

    let Some(member) = member else { return bad };
    // From a member, speaking for the callee (its leadership or candidacy), far ahead.
    let callee = raft_id(&to_id);
    let r = to
        .deliver_append(&member, CHANNEL, append(far, callee))
        .await;
    if !denied(&r) {
        bad.push(format!(
            "a member's append in the callee's name was not refused: {}",
            show(&r)
        ));
    }
    let r = to.deliver_vote(&member, CHANNEL, vote(far, callee)).await;
    if !denied(&r) {
        bad.push(format!(
            "a member's vote in the callee's name was not refused: {}",
            show(&r)
        ));
    }
    let r = to
        .deliver_snapshot(&member, CHANNEL, snapshot(far, callee))
        .await;
    if !denied(&r) {
        bad.push(format!(
            "a member's snapshot in the callee's name was not refused: {}",
            show(&r)
        ));
    }

    // From a member, with a term older than the callee's.
    if term < 2 {
        return bad;
    }
    let stale = term - 1;
    let mid = raft_id(&member);
    let r = to
        .deliver_append(&member, CHANNEL, append(stale, mid))
        .await;
    let rejected = matches!(&r, Ok(Reply::Ok(AppendEntriesResponse::HigherVote(_))));
    if !rejected && !denied(&r) {
        bad.push(format!(
            "an append of stale term {stale} was not rejected: {}",
            show(&r)
        ));
    }
    let r = to.deliver_vote(&member, CHANNEL, vote(stale, mid)).await;
    let rejected = matches!(&r, Ok(Reply::Ok(v)) if !v.vote_granted);
    if !rejected && !denied(&r) {
        bad.push(format!(
            "a vote of stale term {stale} was granted: {}",
            show(&r)
        ));
    }
    let r = to
        .deliver_snapshot(&member, CHANNEL, snapshot(stale, mid))
        .await;
    let rejected = matches!(&r, Ok(Reply::Ok(s)) if s.vote.leader_id().get_term() > stale);
    if !rejected && !denied(&r) {
        bad.push(format!(
            "a snapshot of stale term {stale} was not rejected: {}",
            show(&r)
        ));
    }
    bad
}

/// One member's persisted state at the end.
struct Final {
    applied: Option<(u64, u64)>,
    state: StateRow,
    pins: BTreeMap<[u8; 32], String>,
    log: BTreeMap<u64, Entry<TypeConfig>>,
}

async fn read_final(store: &std::sync::Arc<net_mesh_engine::Store>) -> Result<Final, String> {
    let applied = stored_applied(store, CHANNEL).map_err(|e| e.to_string())?;
    let state = store
        .read_extension(NAMESPACE, |r| {
            read_channel_row::<StateRow>(r, STATE_TABLE, CHANNEL)
        })
        .map_err(|e| e.to_string())?
        .unwrap_or_default();
    let pins = store
        .pins_in(CHANNEL)
        .map_err(|e| e.to_string())?
        .pins
        .into_iter()
        .map(|(id, pin)| (id, pin.name))
        .collect();
    let mut reader = LogStore::new(store.clone(), CHANNEL);
    let log = reader
        .try_get_log_entries(0..u64::MAX)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|e| (e.log_id.index, e))
        .collect();
    Ok(Final {
        applied,
        state,
        pins,
        log,
    })
}

fn expected_op(cluster: &Cluster, op: Op) -> PinOp {
    match op {
        Op::Pin(k) => PinOp::Pin {
            blob_ref: cluster.blobs[k].encode(),
            name: pin_name(k),
        },
        Op::Unpin(k) => PinOp::Unpin {
            blob_id: net_mesh_replication::ReplicatedChannel::blob_id(&cluster.blobs[k]),
        },
    }
}

impl Cluster {
    /// Checks every invariant on the healed, converged group.
    pub async fn check(&mut self) -> Result<(), String> {
        let mut bad: Vec<String> = Vec::new();
        {
            let obs = self.obs.lock().unwrap();
            bad.extend(obs.violations.iter().cloned());
            // openraft runs with its `single-term-leader` feature: a voter grants one vote
            // per term, so a term has at most one leader, whoever observed it.
            for (term, leaders) in &obs.leaders {
                if leaders.len() > 1 {
                    let named: Vec<String> = leaders
                        .iter()
                        .map(|(id, (_, how))| format!("{id:#x} ({how})"))
                        .collect();
                    bad.push(format!(
                        "term {term} has {} leaders: {}",
                        leaders.len(),
                        named.join(", ")
                    ));
                }
                self.summary.max_leaders_per_term =
                    self.summary.max_leaders_per_term.max(leaders.len());
            }
            if obs.max_term >= FORGED_TERM {
                bad.push(format!(
                    "a member reached term {}: a forged message was obeyed",
                    obs.max_term
                ));
            }
            self.summary.max_term = obs.max_term;
        }

        // Acknowledgements in log order.
        let acked: Vec<(u64, Op)> = self
            .attempts
            .iter()
            .filter_map(|a| match a.outcome {
                Outcome::Acked(i) => Some((i, a.op)),
                Outcome::Unknown => None,
            })
            .collect();
        for w in acked.windows(2) {
            if w[1].0 <= w[0].0 {
                bad.push(format!(
                    "acknowledged out of log order: {:?} then {:?}",
                    w[0], w[1]
                ));
            }
        }

        let mut finals = BTreeMap::new();
        for i in self.target.clone() {
            let store = self.nodes[i]
                .store
                .clone()
                .ok_or(format!("member {i} is down at the end"))?;
            finals.insert(i, read_final(&store).await?);
        }

        // The same applied log id and pin set everywhere.
        let first = finals.values().next().ok_or("no members")?;
        for (i, f) in &finals {
            if f.applied != first.applied || f.pins != first.pins {
                bad.push(format!(
                    "member {i} differs after healing: applied {:?} vs {:?}, {} pins vs {}",
                    f.applied,
                    first.applied,
                    f.pins.len(),
                    first.pins.len()
                ));
            }
        }
        self.summary.applied = first.applied.map_or(0, |a| a.1);

        // Every acknowledged operation in every log that still holds its index.
        for (index, op) in &acked {
            let want = expected_op(self, *op);
            for (i, f) in &finals {
                if let Some(e) = f.log.get(index) {
                    let ok = matches!(&e.payload, EntryPayload::Normal(got) if *got == want);
                    if !ok {
                        bad.push(format!(
                            "member {i}: acknowledged {op:?} at index {index}, the log holds {:?}",
                            e.payload
                        ));
                    }
                }
                if f.applied.is_none_or(|a| a.1 < *index) {
                    bad.push(format!(
                        "member {i}: acknowledged index {index} is not applied ({:?})",
                        f.applied
                    ));
                }
            }
        }

        // Logs agree wherever two members hold the same index.
        for (i, f) in &finals {
            for (j, g) in &finals {
                if j <= i {
                    continue;
                }
                for (index, e) in &f.log {
                    if let Some(o) = g.log.get(index)
                        && (o.log_id != e.log_id
                            || format!("{:?}", o.payload) != format!("{:?}", e.payload))
                    {
                        bad.push(format!(
                            "members {i} and {j} differ at index {index}: {e:?} vs {o:?}"
                        ));
                    }
                }
            }
        }

        // The pin set is what the acknowledged operations leave.
        let mut verdict: BTreeMap<usize, Option<bool>> = BTreeMap::new();
        for a in &self.attempts {
            match (a.op, a.outcome) {
                (Op::Pin(k), Outcome::Acked(_)) => {
                    verdict.insert(k, Some(true));
                }
                (Op::Pin(k), Outcome::Unknown) => {
                    verdict.insert(k, None);
                }
                (Op::Unpin(k), Outcome::Acked(_)) => {
                    verdict.insert(k, Some(false));
                }
                (Op::Unpin(k), Outcome::Unknown) => {
                    verdict.insert(k, None);
                }
            }
        }
        for (k, blob) in self.blobs.iter().enumerate() {
            let id = net_mesh_replication::ReplicatedChannel::blob_id(blob);
            let name = first.pins.get(&id);
            let present = name.is_some();
            match verdict.get(&k).copied().flatten() {
                Some(want) if want != present => bad.push(format!(
                    "blob {k}: pinned {present}, but the acknowledged operations leave it {}",
                    if want { "pinned" } else { "unpinned" }
                )),
                _ => {}
            }
            if !verdict.contains_key(&k) && present {
                bad.push(format!("blob {k} is pinned but was never proposed"));
            }
            if let Some(n) = name
                && *n != pin_name(k)
            {
                bad.push(format!("blob {k} pinned as {n:?}"));
            }
        }
        for (i, f) in &finals {
            if f.pins.values().any(|n| is_forged(n)) {
                bad.push(format!("member {i} holds a forged pin"));
            }
            let forged = f.log.values().any(|e| {
                matches!(&e.payload, EntryPayload::Normal(PinOp::Pin { name, .. }) if is_forged(name))
            });
            if forged {
                bad.push(format!("member {i}'s log holds a forged entry"));
            }
        }

        // Without purging, replaying the log gives the pin set.
        if !self.summary.snapshots {
            for (i, f) in &finals {
                let applied = f.applied.map_or(0, |a| a.1);
                let mut pins = BTreeMap::new();
                for (index, e) in &f.log {
                    if *index > applied {
                        break;
                    }
                    match &e.payload {
                        EntryPayload::Normal(PinOp::Pin { blob_ref, name }) => {
                            let r = BlobRef::decode(blob_ref).map_err(|e| e.to_string())?;
                            pins.insert(
                                net_mesh_replication::ReplicatedChannel::blob_id(&r),
                                name.clone(),
                            );
                        }
                        EntryPayload::Normal(PinOp::Unpin { blob_id }) => {
                            pins.remove(blob_id);
                        }
                        _ => {}
                    }
                }
                if pins != f.pins {
                    bad.push(format!(
                        "member {i}: replaying its log gives {} pins, it holds {}",
                        pins.len(),
                        f.pins.len()
                    ));
                }
            }
        }

        // Exactly the target membership.
        let target: BTreeSet<u64> = self
            .target
            .iter()
            .map(|i| raft_id(&self.nodes[*i].identity.node_id()))
            .collect();
        for (i, f) in &finals {
            let m = f.state.membership.membership();
            let voters: BTreeSet<u64> = m.voter_ids().collect();
            let nodes: BTreeSet<u64> = m.nodes().map(|(id, _)| *id).collect();
            if m.get_joint_config().len() != 1 || voters != target || nodes != target {
                bad.push(format!(
                    "member {i} ends with membership {m:?}, target voters {target:x?}"
                ));
            }
        }

        // A digest of the course the seed took.
        let mut d = mix(self.seed);
        for a in &self.attempts {
            let (kind, k) = match a.op {
                Op::Pin(k) => (1, k),
                Op::Unpin(k) => (2, k),
            };
            let o = match a.outcome {
                Outcome::Acked(i) => i,
                Outcome::Unknown => u64::MAX,
            };
            d = mix(d ^ kind ^ ((k as u64) << 8) ^ mix(o));
        }
        d = mix(d ^ self.summary.applied ^ ((first.pins.len() as u64) << 32));
        self.summary.digest = d;
        self.summary.messages = self.world.counts();

        if bad.is_empty() {
            Ok(())
        } else {
            Err(bad.join("\n"))
        }
    }
}
