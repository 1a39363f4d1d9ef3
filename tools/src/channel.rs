//! `net-mesh channel create NAME` / `channel ls`: the channels of the local store, or of a node
//! (`--node`; creating needs admin there). A channel is a named namespace of pins (`blob
//! --channel`); `default` exists everywhere. Creating one that exists changes nothing and says
//! so (exit 0); an invalid name is a usage error (exit 2).
//!
//! `channel create NAME --replicas NODE_ADDR,... --node NODE_ADDR` makes a replicated channel
//! whose members are the `--node` and the listed nodes (the caller needs admin on each: every
//! member is told the same member list; run again with the same members it changes nothing,
//! with others it is refused); `channel status NAME --node NODE_ADDR` shows its group
//! as that member sees it.

use std::time::{Duration, Instant};

use net_mesh_engine::{ErrorClass, StoreConfig};
use net_mesh_node::proto::{MoveBind, MoveDone, MoveRun, ReplicaStatus};
use net_mesh_rpc::NodeAddr;
use serde_json::json;

use crate::Ctx;
use crate::outln;
use crate::output::{CliError, CliResult};
use crate::remote::{DialError, Remote};

/// Crash point of `channel move`: the source and the target bound (the target joined), the
/// coordinator not asked yet.
pub const FAILPOINT_AFTER_BIND: &str = "cli.channel_move.after_bind";

/// Channel subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ChannelCmd {
    /// Create a channel (1..=64 bytes of a-z 0-9 - _ . not starting with .)
    Create {
        name: String,
        /// Make it a replicated channel whose members are the --node and these nodes
        /// (NODE_ADDR,NODE_ADDR,...; admin needed on each)
        #[arg(long, value_name = "NODE_ADDR,...", value_delimiter = ',')]
        replicas: Vec<NodeAddr>,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Move a replicated channel's replica from one node to another (drain --from): the target
    /// joins as a learner, catches up, the voters change, the source leaves and removes its
    /// copy. Each phase is persisted on the coordinator (the leader the --node names, or
    /// another member once the target leads); a move that fails part-way resumes from its
    /// phase when run again with the --id it printed, on whichever member coordinates then.
    /// Admin needed on the coordinator, the source and the target
    Move {
        name: String,
        /// The member that leaves (NODE_ADDR)
        #[arg(long, value_name = "NODE_ADDR")]
        from: NodeAddr,
        /// The node that joins (NODE_ADDR)
        #[arg(long, value_name = "NODE_ADDR")]
        to: NodeAddr,
        /// The move to resume (as an earlier run printed it); default: a new move
        #[arg(long)]
        id: Option<u64>,
        /// Give the move --id up instead, before its cutover (a target that cannot catch up):
        /// the target leaves the group and removes its copy, the source keeps its copy and is
        /// free for another move (a move whose target was a member already never ran: both
        /// keep their copies). Run again to tell a node that was not reached
        #[arg(long, requires = "id")]
        abandon: bool,
        /// The source is gone for good (replace a dead node): a source that does not answer
        /// is not bound (another node answering at its address is refused), and once it left
        /// the group the move ends without its cleanup (phase source_forgotten). It keeps its
        /// copy until the same move (--id) runs again while it answers
        #[arg(long, conflicts_with = "abandon")]
        forget_source: bool,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Show a replicated channel's group as the --node sees it: members, leader, term,
    /// committed index, and (from the leader) each member's matched index and lag
    Status {
        name: String,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// List the channels with their pin counts
    Ls {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
}

/// One channel as listed.
struct Row {
    name: String,
    created_unix_ms: u64,
    pins: u64,
}

pub fn run(cmd: ChannelCmd, ctx: &Ctx) -> CliResult {
    match cmd {
        ChannelCmd::Create {
            name,
            replicas,
            json,
        } if !replicas.is_empty() => replicate(ctx, &name, replicas, json)?,
        ChannelCmd::Status { name, json } => status(ctx, &name, json)?,
        ChannelCmd::Move {
            name,
            from,
            to,
            id,
            abandon,
            forget_source,
            json,
        } => {
            let how = MoveHow {
                abandon,
                forget_source,
                json,
            };
            move_replica(ctx, &name, &from, &to, id, how)?
        }
        ChannelCmd::Create { name, json, .. } => {
            net_mesh_engine::index::check_channel_name(&name)
                .map_err(|e| CliError::msg(ErrorClass::Usage, e))?;
            let created = match &ctx.node {
                Some(addr) => {
                    let mut remote = Remote::connect(ctx, addr)?;
                    let client = remote.client()?;
                    remote.block_on(client.channel_create(&name))?
                }
                None => {
                    crate::open::open(&ctx.dir, StoreConfig::default())?.create_channel(&name)?
                }
            };
            if json {
                outln!("{}", json!({ "channel": name, "created": created }));
            } else if created {
                outln!("created channel {name}");
            } else {
                outln!("channel {name} exists");
            }
        }
        ChannelCmd::Ls { json } => {
            let rows: Vec<Row> = match &ctx.node {
                Some(addr) => {
                    let mut remote = Remote::connect(ctx, addr)?;
                    let client = remote.client()?;
                    remote
                        .block_on(client.channel_list())?
                        .into_iter()
                        .map(|c| Row {
                            name: c.name,
                            created_unix_ms: c.created_unix_ms,
                            pins: c.pins,
                        })
                        .collect()
                }
                None => crate::open::open(&ctx.dir, StoreConfig::default())?
                    .channels()?
                    .into_iter()
                    .map(|c| Row {
                        name: c.name,
                        created_unix_ms: c.created_unix_ms,
                        pins: c.pins,
                    })
                    .collect(),
            };
            if json {
                let rows: Vec<_> = rows
                    .iter()
                    .map(|r| {
                        json!({
                            "name": r.name,
                            "pins": r.pins,
                            "created_unix_ms": r.created_unix_ms,
                        })
                    })
                    .collect();
                outln!("{}", serde_json::Value::Array(rows));
            } else {
                for r in &rows {
                    outln!("{:<24} {:>8} pins", r.name, r.pins);
                }
            }
        }
    }
    Ok(())
}

/// How long `create --replicas` waits for the new group to elect its first leader.
const FIRST_LEADER_WAIT: Duration = Duration::from_secs(30);

fn replicate(ctx: &Ctx, name: &str, others: Vec<NodeAddr>, json: bool) -> CliResult {
    net_mesh_engine::index::check_channel_name(name)
        .map_err(|e| CliError::msg(ErrorClass::Usage, e))?;
    let Some(first) = &ctx.node else {
        return Err(CliError::msg(
            ErrorClass::Usage,
            "--replicas makes a replicated channel across nodes: name one of them with --node",
        ));
    };
    let mut members = vec![first.clone()];
    for m in others {
        if members.iter().any(|k| k.node_id == m.node_id) {
            return Err(CliError::msg(
                ErrorClass::Usage,
                format!("node {} is listed twice", m.node_id),
            ));
        }
        members.push(m);
    }
    // A member that runs the channel already is asked first: the same members again is a
    // no-op (every member answers "already"), another list is refused before any member is
    // told anything (a node not running it would start a group of its own).
    for member in &members {
        let mut remote = Remote::connect(ctx, member)?;
        let client = remote.client()?;
        let running = match remote
            .block_on(client.channel_status(name))
            .map_err(CliError::from)
        {
            Ok(status) => status,
            // Not replicated there (yet: a run cut off before it told every member).
            Err(e) if e.class() == Some(ErrorClass::NotFound) => continue,
            Err(e) => return Err(e),
        };
        let group: Vec<String> = running.members.iter().map(|m| m.addr.clone()).collect();
        let same = group.len() == members.len() && members.iter().all(|m| is_member(&group, m));
        if !same {
            return Err(CliError::msg(
                ErrorClass::Refused,
                format!(
                    "channel {name} is a replicated channel already, with other members: {} (as {member} sees it); a group changes its members by `channel move`",
                    group.join(", ")
                ),
            ));
        }
    }
    let mut started = Vec::with_capacity(members.len());
    for member in &members {
        let mut remote = Remote::connect(ctx, member)?;
        let client = remote.client()?;
        started.push(remote.block_on(client.channel_replicate(name, &members))?);
    }
    // The group is usable once it has a leader; wait (bounded) so a write right after works.
    let mut remote = Remote::connect(ctx, first)?;
    let client = remote.client()?;
    let deadline = Instant::now() + FIRST_LEADER_WAIT;
    let (leader, status) = loop {
        let status = remote.block_on(client.channel_status(name))?;
        if let Some(leader) = status.leader.clone() {
            break (leader, status);
        }
        if Instant::now() >= deadline {
            return Err(CliError::msg(
                ErrorClass::Busy,
                format!("channel {name}: no leader elected within {FIRST_LEADER_WAIT:?}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // The group's members as the --node holds them (what this run started, or what ran
    // already).
    let group: Vec<String> = status.members.iter().map(|m| m.addr.clone()).collect();
    let created = started.iter().any(|s| *s);
    if json {
        let rows: Vec<_> = group
            .iter()
            .map(|g| {
                let started = g.parse::<NodeAddr>().is_ok_and(|g| {
                    members
                        .iter()
                        .zip(&started)
                        .any(|(m, s)| *s && m.node_id == g.node_id)
                });
                json!({ "member": g, "started": started })
            })
            .collect();
        outln!(
            "{}",
            json!({
                "channel": name,
                "replicated": true,
                "created": created,
                "members": rows,
                "leader": leader,
            })
        );
    } else {
        let what = if created { "" } else { " exists" };
        outln!(
            "replicated channel {name}{what} on {} members: {}; leader {leader}",
            group.len(),
            group.join(", ")
        );
    }
    Ok(())
}

fn status(ctx: &Ctx, name: &str, json: bool) -> CliResult {
    let Some(addr) = &ctx.node else {
        return Err(CliError::msg(
            ErrorClass::Usage,
            "channel status shows a replicated channel's group: name a member with --node",
        ));
    };
    let mut remote = Remote::connect(ctx, addr)?;
    let client = remote.client()?;
    let s = remote.block_on(client.channel_status(name))?;
    if json {
        let members: Vec<_> = s
            .members
            .iter()
            .map(|m| {
                let voter = !is_learner(&s, &m.addr);
                json!({ "addr": m.addr, "voter": voter, "matched": m.matched, "lag": m.lag })
            })
            .collect();
        outln!(
            "{}",
            json!({
                "channel": s.channel,
                "leader": s.leader,
                "is_leader": s.is_leader,
                "term": s.term,
                "committed": s.committed,
                "applied": s.applied,
                "last_log_index": s.last_log_index,
                "pending_apply": s.pending_apply,
                "members": members,
                "move": s.bound_move.as_ref().map(|m| json!({
                    "id": m.id,
                    "from": m.from,
                    "to": m.to,
                    "coordinator": m.coordinator,
                    "phase": m.phase,
                })),
                "excluded": s.excluded,
            })
        );
        return Ok(());
    }
    let show = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    outln!(
        "channel {}  term {}  leader {}  committed {}  applied {}  pending {}",
        s.channel,
        s.term,
        s.leader.as_deref().unwrap_or("unknown"),
        show(s.committed),
        show(s.applied),
        s.pending_apply
    );
    for m in &s.members {
        let role = if s.leader.as_deref() == Some(m.addr.as_str()) {
            "  (leader)"
        } else if is_learner(&s, &m.addr) {
            "  (learner)"
        } else {
            ""
        };
        outln!(
            "  {}  matched {}  lag {}{role}",
            m.addr,
            show(m.matched),
            show(m.lag),
        );
    }
    if let Some(m) = &s.bound_move {
        outln!(
            "move {} bound here: {} -> {}, coordinator {}, phase {}",
            m.id,
            m.from,
            m.to,
            m.coordinator,
            m.phase
        );
    }
    if let Some(why) = &s.excluded {
        outln!("this node's copy is stale, it is no longer a member: {why}");
    }
    Ok(())
}

/// Who coordinates a move from `from` to `to`: the channel's leader, unless that is the
/// target itself (a voter once the membership change began; a target cannot coordinate its
/// own move); then another member, neither the target nor the source, as what is left after
/// the cutover needs no leader. `voters`: the group's voters (a learner coordinates nothing).
fn coordinator_for(
    leader: NodeAddr,
    voters: &[String],
    from: &NodeAddr,
    to: &NodeAddr,
) -> Option<NodeAddr> {
    if leader.node_id != to.node_id {
        return Some(leader);
    }
    voters
        .iter()
        .filter_map(|m| m.parse::<NodeAddr>().ok())
        .find(|m| m.node_id != to.node_id && m.node_id != from.node_id)
}

/// Who coordinates the abandon of a move from `from` to `to`: the channel's leader, unless
/// that is the target itself; then the source. A target leads only as a voter, i.e. once
/// the cutover began (the nodes then refuse the abandon: the move can only be finished) or
/// when the move never ran (the target was a voter beside the source already), whose
/// abandon changes nothing in the group and needs no leader; the source answers the abandon
/// in any case, so it is the one node always there to coordinate it.
fn abandon_coordinator(leader: NodeAddr, from: &NodeAddr, to: &NodeAddr) -> NodeAddr {
    if leader.node_id == to.node_id {
        from.clone()
    } else {
        leader
    }
}

/// Whether `node` (by node id) is among `members` (`NODE_ADDR`s).
fn is_member(members: &[String], node: &NodeAddr) -> bool {
    members
        .iter()
        .filter_map(|m| m.parse::<NodeAddr>().ok())
        .any(|m| m.node_id == node.node_id)
}

/// Whether the member printed as `addr` is one of `status`'s learners (by node id).
fn is_learner(status: &ReplicaStatus, addr: &str) -> bool {
    addr.parse::<NodeAddr>()
        .is_ok_and(|a| is_member(&status.learners, &a))
}

/// The members of `status` that vote (every member but its learners).
fn voters_of(status: &ReplicaStatus) -> Vec<String> {
    status
        .members
        .iter()
        .filter(|m| !is_learner(status, &m.addr))
        .map(|m| m.addr.clone())
        .collect()
}

/// `channel move`'s flags.
struct MoveHow {
    abandon: bool,
    forget_source: bool,
    json: bool,
}

fn move_replica(
    ctx: &Ctx,
    name: &str,
    from: &NodeAddr,
    to: &NodeAddr,
    id: Option<u64>,
    how: MoveHow,
) -> CliResult {
    let MoveHow {
        abandon,
        forget_source,
        json,
    } = how;
    let Some(addr) = &ctx.node else {
        return Err(CliError::msg(
            ErrorClass::Usage,
            "channel move runs on the channel's members: name one of them with --node",
        ));
    };
    if from.node_id == to.node_id {
        return Err(CliError::msg(
            ErrorClass::Usage,
            "--from and --to name the same node",
        ));
    }
    let status = {
        let mut remote = Remote::connect(ctx, addr)?;
        let client = remote.client()?;
        remote.block_on(client.channel_status(name))?
    };
    let Some(leader) = status.leader.clone() else {
        return Err(CliError::msg(
            ErrorClass::Busy,
            format!("channel {name} has no leader now; try again"),
        ));
    };
    let leader: NodeAddr = leader
        .parse()
        .map_err(|e| CliError::msg(ErrorClass::Io, format!("the leader {leader}: {e}")))?;
    let members: Vec<String> = status.members.iter().map(|m| m.addr.clone()).collect();
    let voters = voters_of(&status);
    // A new move's source must be a voter: checked before anything is bound (a source
    // refusing after the target was bound would leave the target joined, idle, and bound to
    // a move that cannot run, refusing other moves of the channel). A move resumed by its
    // --id is not checked: past its cutover the source is no longer a member.
    if id.is_none() && !is_member(&voters, from) {
        let why = if is_member(&members, from) {
            format!(
                "the source {from} is a learner of channel {name} (the target of a move not cut over yet), not a voter"
            )
        } else {
            format!(
                "the source {from} is not a member of channel {name} (members: {})",
                members.join(", ")
            )
        };
        return Err(CliError::msg(ErrorClass::Usage, why));
    }
    // Nor may a new move's target be a member already: the coordinator would refuse the move
    // only after the source and the target were bound to it.
    if id.is_none() && is_member(&members, to) {
        return Err(CliError::msg(
            ErrorClass::Usage,
            format!("{to} is already a member of {name}"),
        ));
    }
    let coordinator = if abandon {
        abandon_coordinator(leader, from, to)
    } else {
        coordinator_for(leader, &voters, from, to).ok_or_else(|| {
            CliError::msg(
                ErrorClass::Busy,
                format!(
                    "channel {name} is led by the move's target and has no other member to coordinate"
                ),
            )
        })?
    };
    let id = id.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    });
    let run = MoveRun {
        channel: name.to_string(),
        id,
        from: from.to_string(),
        to: to.to_string(),
        forget_source,
    };
    if abandon {
        // The node that began the move may no longer lead (or be gone): the source and the
        // target are rebound to the leader first (only a move bound there is; nothing new is
        // bound), and the leader takes the move over once the source answers it as its
        // coordinator. A rebind that fails (a node gone, the move abandoned there already) is
        // reported only if the abandon fails too: the abandon says who it did not reach.
        let rebind = MoveBind {
            channel: name.to_string(),
            id,
            from: from.to_string(),
            to: to.to_string(),
            coordinator: coordinator.to_string(),
            members: Vec::new(),
            rebind: true,
        };
        let mut not_rebound = Vec::new();
        for node in [from, to] {
            if node.node_id == coordinator.node_id {
                continue;
            }
            let rebound = Remote::connect(ctx, node).and_then(|mut remote| {
                let client = remote.client()?;
                Ok(remote.block_on(client.channel_move_bind(&rebind))?)
            });
            if let Err(e) = rebound {
                not_rebound.push(format!(
                    "net-mesh: {node} was not rebound to {coordinator}: {}",
                    e.one_line()
                ));
            }
        }
        let mut remote = Remote::connect(ctx, &coordinator)?;
        let client = remote.client()?;
        let done = remote
            .block_on(client.channel_move_abandon(&run))
            .inspect_err(|_| not_rebound.iter().for_each(|line| eprintln!("{line}")))?;
        return print_phases(
            name,
            id,
            from,
            to,
            &done,
            json,
            "abandoned the move of channel",
        );
    }
    if !json {
        outln!("move {id} of channel {name}: {from} -> {to}, coordinated by {coordinator}");
    }
    let bind = MoveBind {
        channel: name.to_string(),
        id,
        from: from.to_string(),
        to: to.to_string(),
        coordinator: coordinator.to_string(),
        members,
        rebind: false,
    };
    let resume_hint = || {
        eprintln!(
            "net-mesh: resume move {id} with `channel move {name} --from {from} --to {to} --id {id}`{}",
            if forget_source {
                ""
            } else {
                " (add --forget-source if the source is gone for good)"
            }
        )
    };
    // The target first: it refuses a channel it holds pins of outside the group, and a
    // refusal there leaves nothing bound anywhere. (The source, a member, refuses only if it
    // stopped running the group meanwhile; that leaves the target bound and joined, idle,
    // and the same move, by its --id, goes on from there.)
    for node in [to, from] {
        if node.node_id == coordinator.node_id {
            continue;
        }
        let mut remote = Remote::new(ctx, node)?;
        // Each error with whether the node did not answer (false: it answered, or another
        // node did at its address).
        let bound = match remote.client() {
            Err(DialError::Pinned(e)) => Err((false, e)),
            Err(DialError::Failed(e)) => Err((true, e)),
            Ok(client) => remote
                .block_on(client.channel_move_bind(&bind))
                .map_err(|e| {
                    let e = CliError::from(e);
                    (e.class() == Some(ErrorClass::Io), e)
                }),
        };
        match bound {
            // A source gone for good is not bound: the move needs it only for its cleanup.
            // Another node at its address is not "gone": the source may run elsewhere.
            Err((true, e)) if forget_source && node == from => {
                eprintln!(
                    "net-mesh: the source {from} does not answer ({}); the move goes on without it (--forget-source)",
                    e.one_line()
                );
            }
            Err((_, e)) => {
                resume_hint();
                return Err(e);
            }
            Ok(()) => {}
        }
    }
    net_mesh_segments::failpoint::hit(FAILPOINT_AFTER_BIND);
    let mut remote = Remote::connect(ctx, &coordinator)?;
    let client = remote.client()?;
    let done = remote
        .block_on(client.channel_move(&run))
        .inspect_err(|_| resume_hint())?;
    print_phases(name, id, from, to, &done, json, "moved channel")
}

/// Prints the phases a move call reached, then `what` (e.g. "moved channel") with the
/// channel and its two nodes; with `json`, one object.
fn print_phases(
    name: &str,
    id: u64,
    from: &NodeAddr,
    to: &NodeAddr,
    done: &MoveDone,
    json: bool,
    what: &str,
) -> CliResult {
    if json {
        let phases: Vec<_> = done
            .phases
            .iter()
            .map(|p| json!({ "phase": p.phase, "detail": p.detail }))
            .collect();
        outln!(
            "{}",
            json!({ "channel": name, "id": id, "from": from.to_string(), "to": to.to_string(), "phases": phases })
        );
    } else {
        for p in &done.phases {
            outln!("  {:<14} {}", p.phase, p.detail);
        }
        outln!("{what} {name} from {} to {}", from.node_id, to.node_id);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use net_mesh_rpc::Identity;

    use super::*;

    fn node(seed: u8) -> NodeAddr {
        NodeAddr {
            node_id: Identity::from_seed([seed; 32]).node_id(),
            host_port: format!("127.0.0.1:{}", 7000 + u16::from(seed)),
        }
    }

    #[test]
    fn the_leader_coordinates_unless_it_is_the_target() {
        let (a, k, o, b) = (node(4), node(1), node(2), node(3));
        let members: Vec<String> = [&b, &a, &k, &o].iter().map(|n| n.to_string()).collect();
        assert_eq!(
            coordinator_for(k.clone(), &members, &a, &b),
            Some(k.clone())
        );
        // The target leads: another member, never the source (still listed mid-change).
        assert_eq!(coordinator_for(b.clone(), &members, &a, &b), Some(k));
        let only = [b.to_string(), a.to_string()];
        assert_eq!(coordinator_for(b.clone(), &only, &a, &b), None);
    }

    #[test]
    fn the_source_coordinates_an_abandon_while_the_target_leads() {
        let (a, k, b) = (node(4), node(1), node(3));
        assert_eq!(abandon_coordinator(k.clone(), &a, &b), k);
        assert_eq!(abandon_coordinator(a.clone(), &a, &b), a);
        // The target leads (a move that never ran, or one past its cutover): the source
        // coordinates, also when another voter could.
        assert_eq!(abandon_coordinator(b.clone(), &a, &b), a);
    }

    #[test]
    fn a_learner_is_no_voter_and_coordinates_nothing() {
        let (a, b, l) = (node(4), node(3), node(5));
        let member = |n: &NodeAddr| net_mesh_node::proto::ReplicaMember {
            addr: n.to_string(),
            matched: None,
            lag: None,
        };
        let status = ReplicaStatus {
            channel: "photos".into(),
            members: vec![member(&b), member(&a), member(&l)],
            leader: Some(b.to_string()),
            is_leader: true,
            term: 3,
            committed: Some(9),
            applied: Some(9),
            last_log_index: Some(9),
            pending_apply: 0,
            // Printed with another address: matched by node id.
            learners: vec![format!("{}@10.0.0.9:1", l.node_id)],
            bound_move: None,
            excluded: None,
        };
        assert!(is_learner(&status, &l.to_string()));
        assert!(!is_learner(&status, &a.to_string()));
        let voters = voters_of(&status);
        assert_eq!(voters, [b.to_string(), a.to_string()]);
        // The target b leads and the only other voter is the source: no coordinator, even
        // though a learner is there.
        assert_eq!(coordinator_for(b.clone(), &voters, &a, &b), None);
        // An older node names no learners: every member votes.
        let older = ReplicaStatus {
            learners: Vec::new(),
            ..status
        };
        assert_eq!(voters_of(&older).len(), 3);
    }

    #[test]
    fn a_member_is_found_by_node_id_whatever_its_address() {
        let (a, b) = (node(1), node(2));
        let members = [a.to_string(), "not an address".to_string()];
        assert!(is_member(&members, &a));
        let moved = NodeAddr {
            host_port: "127.0.0.1:1".into(),
            ..a.clone()
        };
        assert!(is_member(&members, &moved));
        assert!(!is_member(&members, &b));
    }
}
