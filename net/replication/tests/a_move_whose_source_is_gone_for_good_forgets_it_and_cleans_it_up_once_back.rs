//! H-2, never stuck, for a source gone for good (a dead node replaced): the move runs to
//! `Left` without it, and its cleanup fails `Unreachable` on every resume. `forget_source`
//! then ends the move at `SourceForgotten`: the coordinator is free for another move of the
//! channel (refused `Busy` before), the group writes on with the target, and the source's
//! copy stays. Once the source is back, the members refuse its raft messages as a
//! non-member's, and it reports its copy as no longer the group's
//! ([`ReplicatedChannel::excluded`]) while the members do not. Resuming the forgotten move
//! asks it again: it removes
//! its copy (`CleanedUp`), also after a newer move replaced the coordinator's row (the first
//! move begun again by its id). `forget_source` refuses a move that has not reached `Left`
//! and an id that is not bound. Another node answering at the source's address is not the
//! source gone (`WrongNode`, not `Unreachable`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod moves_support;
mod support;

use std::sync::Arc;
use std::time::Duration;

use moves_support::*;
use net_mesh_replication::{MoveConfig, MoveError, MovePhase, MoveSpec, ReplicatedChannel};
use net_mesh_rpc::rpc::server::Router;
use net_mesh_rpc::{Endpoint, Identity};
use support::{CHANNEL, Serving, pin_set};

/// A group of three with five pins and a move of A's replica to the newcomer B, bound on A
/// and B (B joined), begun on the leader; then A goes away for good (its group stopped,
/// nobody reaches it). Holds the members, their positions, the move and the groups that run.
struct Gone {
    _root: tempfile::TempDir,
    members: Vec<MoveMember>,
    leader: usize,
    a: usize,
    other: usize,
    b: usize,
    first: MoveSpec,
    running: Running,
}

/// The groups still running: the leader's, the other voter's and B's.
struct Running {
    leader: Arc<ReplicatedChannel>,
    other: Arc<ReplicatedChannel>,
    b: Arc<ReplicatedChannel>,
}

impl Running {
    async fn stop(self) {
        for ch in [self.b, self.leader, self.other] {
            ch.shutdown().await.unwrap();
        }
    }
}

async fn source_gone_at_left() -> Gone {
    let root = tempfile::tempdir().unwrap();
    let config = MoveConfig {
        call_timeout: Duration::from_secs(2),
        handoff: Duration::from_secs(5),
        ..MoveConfig::default()
    };
    let (mut members, channels, leader) = three_and_a_newcomer(root.path(), config).await;
    let (a, other, b) = ((leader + 1) % 3, (leader + 2) % 3, 3);
    pin_on_leader(&members[leader], &channels[leader], 5).await;
    support::wait_until("A holds the five pins", || {
        (pin_set(&members[a].store).len() == 5).then_some(())
    })
    .await;
    let first = spec(&members[a], &members[b], &members[leader]);
    members[a].moves.bind(&first).await.unwrap();
    members[b].moves.bind(&first).await.unwrap();
    let voters: Vec<_> = members[..3].iter().map(|m| m.addr.clone()).collect();
    let b_channel = members[b].join(&voters).await;

    // A is gone: its group stops and nobody reaches it.
    channels[a].shutdown().await.unwrap();
    members[a].moves.detach(CHANNEL);
    members[a].pause().await;

    let k = &members[leader];
    k.moves.begin(&first).await.unwrap();
    let mut phases = Vec::new();
    let err = k
        .moves
        .resume(CHANNEL, None, |e| phases.push(e.phase))
        .await
        .unwrap_err();
    assert!(matches!(err, MoveError::Unreachable { .. }), "{err:?}");
    assert_eq!(
        phases,
        [
            MovePhase::LearnerAdded,
            MovePhase::CaughtUp,
            MovePhase::CutOver,
            MovePhase::Left
        ]
    );
    Gone {
        _root: root,
        running: Running {
            leader: channels[leader].clone(),
            other: channels[other].clone(),
            b: b_channel,
        },
        members,
        leader,
        a,
        other,
        b,
        first,
    }
}

async fn phase_on(member: &MoveMember) -> MovePhase {
    member.moves.record(CHANNEL).await.unwrap().unwrap().phase
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_whose_source_is_gone_for_good_forgets_it_and_cleans_it_up_once_back() {
    let Gone {
        _root,
        mut members,
        running,
        leader,
        a,
        other,
        b,
        first,
    } = source_gone_at_left().await;
    let k = &members[leader];

    // Never forgotten by itself: run again, it fails the same way and stays at `Left`.
    let err = k.moves.resume(CHANNEL, None, |_| {}).await.unwrap_err();
    assert!(matches!(err, MoveError::Unreachable { .. }), "{err:?}");
    assert_eq!(phase_on(k).await, MovePhase::Left);

    // Another node answering at the source's address is not the source gone: `WrongNode`,
    // which the node never takes as a reason to forget it.
    let port: u16 = members[a]
        .addr
        .host_port
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let impostor = Endpoint::new(
        Identity::from_seed([0xee; 32]),
        Router::new(),
        net_mesh_node::node_config(),
    );
    let (impostor, _) = Serving::start(&impostor, port).await;
    let err = k.moves.resume(CHANNEL, None, |_| {}).await.unwrap_err();
    assert!(matches!(err, MoveError::WrongNode { .. }), "{err:?}");
    assert_eq!(phase_on(k).await, MovePhase::Left);
    impostor.stop().await;

    // Another id is not forgotten.
    let err = k
        .moves
        .forget_source(CHANNEL, first.id + 1, |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, MoveError::Usage { .. }), "{err:?}");
    assert_eq!(phase_on(k).await, MovePhase::Left);

    let mut events = Vec::new();
    let record = k
        .moves
        .forget_source(CHANNEL, first.id, |e| events.push(e.clone()))
        .await
        .unwrap();
    assert_eq!(record.phase, MovePhase::SourceForgotten);
    assert_eq!(phase_on(k).await, MovePhase::SourceForgotten);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].phase, MovePhase::SourceForgotten);
    assert!(
        events[0].detail.contains(&members[a].addr.to_string()),
        "{}",
        events[0].detail
    );
    // Forgotten again: the same record, nothing else.
    let again = k
        .moves
        .forget_source(CHANNEL, first.id, |_| {})
        .await
        .unwrap();
    assert_eq!(again, record);

    // The group writes on with the target; the source keeps its copy meanwhile.
    pin_on_leader(&members[leader], &running.leader, 1).await;
    wait_for_voters_on(&members, &[leader, other, b], &[leader, other, b]).await;
    assert_eq!(pin_set(&members[a].store).len(), 5);

    // The source is back (its group open again). Its own state still names it a voter, but
    // once it asks for votes, both voters it knows refuse it: its copy is not the group's.
    members[a].resume().await;
    let back = members[a].open().await;
    assert_eq!(back.excluded(), None, "before it heard from anyone");
    let why = support::wait_until("the source sees it was left out", || back.excluded()).await;
    let refused_by: Vec<String> = back
        .status()
        .refused_by
        .iter()
        .map(|a| a.to_string())
        .collect();
    for voter in [leader, other] {
        let addr = members[voter].addr.to_string();
        assert!(why.contains(&addr), "{why}");
        assert!(refused_by.contains(&addr), "{refused_by:?}");
    }
    for ch in [&running.leader, &running.other, &running.b] {
        assert_eq!(ch.excluded(), None);
        assert!(ch.status().refused_by.is_empty());
    }
    // The forgotten move, resumed, asks it again.
    let k = &members[leader];
    let mut phases = Vec::new();
    let done = k
        .moves
        .resume(CHANNEL, None, |e| phases.push(e.phase))
        .await
        .unwrap();
    assert_eq!(done.phase, MovePhase::CleanedUp);
    assert_eq!(phases, [MovePhase::CleanedUp]);
    assert_eq!(phase_on(&members[a]).await, MovePhase::CleanedUp);
    moved_to_b(&members, leader, other, a, b).await;

    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forgotten_source_leaves_its_coordinator_free_for_another_move() {
    let Gone {
        _root,
        members,
        running,
        leader,
        a,
        other,
        first,
        ..
    } = source_gone_at_left().await;
    let k = &members[leader];
    // The next move of the channel: the other voter's replica to A's node.
    let second = MoveSpec {
        id: first.id + 1,
        ..spec(&members[other], &members[a], k)
    };
    let busy = k.moves.begin(&second).await.unwrap_err();
    assert!(matches!(busy, MoveError::Busy { .. }), "{busy:?}");
    assert_eq!(phase_on(k).await, MovePhase::Left);

    k.moves
        .forget_source(CHANNEL, first.id, |_| {})
        .await
        .unwrap();
    let bound = k.moves.begin(&second).await.unwrap();
    assert_eq!((bound.id, bound.phase), (second.id, MovePhase::Bound));
    // Replaced here, the first move is no longer there to forget; the second is not at `Left`.
    let err = k
        .moves
        .forget_source(CHANNEL, first.id, |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, MoveError::Usage { .. }), "{err:?}");
    let err = k
        .moves
        .forget_source(CHANNEL, second.id, |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, MoveError::Usage { .. }), "{err:?}");

    running.stop().await;
}

/// The coordinator moved on before the source came back: a newer move of the channel replaced
/// its row (begun, then abandoned). The forgotten move, begun again by its id, is bound at
/// `CutOver` (the group is past it), reaches `Left` again and has the source, back now,
/// remove its copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forgotten_source_back_after_its_coordinator_moved_on_is_cleaned_up_by_the_same_move() {
    let Gone {
        _root,
        mut members,
        running,
        leader,
        a,
        other,
        first,
        ..
    } = source_gone_at_left().await;
    let k = &members[leader];
    k.moves
        .forget_source(CHANNEL, first.id, |_| {})
        .await
        .unwrap();
    let second = MoveSpec {
        id: first.id + 1,
        ..spec(&members[other], &members[a], k)
    };
    k.moves.begin(&second).await.unwrap();
    // Its source was never bound and its target is away: only the coordinator's row ends.
    k.moves.abandon(&second).await.unwrap_err();
    let on_k = k.moves.record(CHANNEL).await.unwrap().unwrap();
    assert_eq!((on_k.id, on_k.phase), (second.id, MovePhase::Abandoned));

    members[a].resume().await;
    members[a].open().await;
    assert_eq!(pin_set(&members[a].store).len(), 5);
    let k = &members[leader];
    let bound = k.moves.begin(&first).await.unwrap();
    assert_eq!((bound.id, bound.phase), (first.id, MovePhase::CutOver));
    let mut phases = Vec::new();
    let done = k
        .moves
        .resume(CHANNEL, None, |e| phases.push(e.phase))
        .await
        .unwrap();
    assert_eq!(done.phase, MovePhase::CleanedUp);
    assert_eq!(phases, [MovePhase::Left, MovePhase::CleanedUp]);
    assert!(pin_set(&members[a].store).is_empty());
    assert_eq!(phase_on(&members[a]).await, MovePhase::CleanedUp);

    running.stop().await;
}
