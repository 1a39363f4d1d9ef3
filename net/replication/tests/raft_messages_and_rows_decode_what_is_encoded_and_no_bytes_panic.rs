//! The fuzz harness of the crate's decoders (`net_mesh_replication::fuzzing`, the `raft_messages`
//! fuzz target) run on real values: every `raft/v1/*` and `move/v1/*` request and answer and
//! every extension row, encoded as the crate encodes them, is accepted (decoded, checked, and
//! the same after a round trip); values the handlers or readers refuse decode and are refused;
//! and the same encodings cut at every length, with a byte changed, and random bytes never
//! make it panic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::{BTreeMap, BTreeSet, HashSet};

use net_mesh_engine::BlobRef;
use net_mesh_replication::fetch::{PinnedRequest, PinnedState};
use net_mesh_replication::fuzzing::{Kind, Outcome, fuzz_decode};
use net_mesh_replication::moves::{AbandonReply, AbandonRequest};
use net_mesh_replication::network::Reply;
use net_mesh_replication::node_replicas::Proposed;
use net_mesh_replication::prefetch::{PrefetchRequest, Prefetched};
use net_mesh_replication::state_machine::{SnapshotBody, SnapshotPin};
use net_mesh_replication::tables::{
    LogMetaRow, MAX_HANDOFF_NODES, MAX_HOST_PORT_LEN, MAX_SNAPSHOT_ID_LEN, MoveNode, MoveRow,
    PendingSnapshotRow, PrefetchRow, StateRow, VoteRow, encode_row,
};
use net_mesh_replication::types::{Entry, MAX_SNAPSHOT_LEN};
use net_mesh_replication::{
    CleanupReply, CleanupRequest, HandoffState, Member, MovePhase, PinOp, StateRequest, TypeConfig,
};
use openraft::error::SnapshotMismatch;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{
    CommittedLeaderId, EntryPayload, LogId, Membership, SnapshotMeta, SnapshotSegmentId,
    StoredMembership, Vote,
};
use serde::Serialize;

const TERM: u64 = 3;
const LEADER: u64 = 0x0101_0101_0101_0101;

fn log_id(index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(TERM, LEADER), index)
}

fn blob_ref() -> Vec<u8> {
    BlobRef::Small {
        hash: [7; 32],
        size: 5,
    }
    .encode()
}

fn member(b: u8) -> Member {
    Member {
        node_id: [b; 32],
        host_port: format!("127.0.0.1:{}", 7000 + u16::from(b)),
    }
}

fn membership() -> Membership<u64, Member> {
    Membership::new(
        vec![BTreeSet::from([1, 2, 3])],
        BTreeMap::from([
            (1, member(1)),
            (2, member(2)),
            (3, member(3)),
            (4, member(4)),
        ]),
    )
}

fn pin(name: &str) -> PinOp {
    PinOp::Pin {
        blob_ref: blob_ref(),
        name: name.to_string(),
    }
}

fn entries(first: u64) -> Vec<Entry> {
    let payloads = [
        EntryPayload::Blank,
        EntryPayload::Normal(pin("photos/a")),
        EntryPayload::Membership(membership()),
        EntryPayload::Normal(PinOp::Unpin { blob_id: [9; 32] }),
    ];
    payloads
        .into_iter()
        .zip(first..)
        .map(|(payload, index)| Entry {
            log_id: log_id(index),
            payload,
        })
        .collect()
}

fn append(entries: Vec<Entry>) -> AppendEntriesRequest<TypeConfig> {
    AppendEntriesRequest {
        vote: Vote::new_committed(TERM, LEADER),
        prev_log_id: Some(log_id(4)),
        entries,
        leader_commit: Some(log_id(4)),
    }
}

fn snapshot_body(blob_ref: Vec<u8>) -> SnapshotBody {
    SnapshotBody {
        pins: vec![
            SnapshotPin {
                name: "photos/a".into(),
                blob_ref,
            },
            SnapshotPin {
                name: "empty".into(),
                blob_ref: BlobRef::Small {
                    hash: [0; 32],
                    size: 0,
                }
                .encode(),
            },
        ],
    }
}

fn snapshot(offset: u64) -> InstallSnapshotRequest<TypeConfig> {
    InstallSnapshotRequest {
        vote: Vote::new_committed(TERM, LEADER),
        meta: SnapshotMeta {
            last_log_id: Some(log_id(8)),
            last_membership: StoredMembership::new(Some(log_id(6)), membership()),
            snapshot_id: "3-8".into(),
        },
        offset,
        data: encode_row(&snapshot_body(blob_ref())).unwrap(),
        done: true,
    }
}

fn move_row(host_port: &str) -> MoveRow {
    MoveRow {
        id: 300,
        from: MoveNode {
            node_id: [1; 32],
            host_port: "a.example:7000".into(),
        },
        to: MoveNode {
            node_id: [2; 32],
            host_port: host_port.into(),
        },
        coordinator: [3; 32],
        phase: MovePhase::CutOver,
        started_unix_ms: 1_700_000_000_000,
        cutover: Some(7),
    }
}

/// The kind's byte, then the message as nRPC encodes it (postcard).
fn message(kind: Kind, value: &impl Serialize) -> (Kind, Vec<u8>) {
    let mut input = vec![kind.byte()];
    input.extend(postcard::to_allocvec(value).unwrap());
    (kind, input)
}

/// The kind's byte, then the row as the crate stores it.
fn row(kind: Kind, value: &impl Serialize) -> (Kind, Vec<u8>) {
    let mut input = vec![kind.byte()];
    input.extend(encode_row(value).unwrap());
    (kind, input)
}

fn valid_inputs() -> Vec<(Kind, Vec<u8>)> {
    let mismatch = SnapshotMismatch {
        expect: SnapshotSegmentId {
            id: "3-8".into(),
            offset: 0,
        },
        got: SnapshotSegmentId {
            id: "3-8".into(),
            offset: 1024,
        },
    };
    vec![
        message(Kind::AppendRequest, &append(entries(5))),
        message(Kind::AppendRequest, &append(Vec::new())),
        message(
            Kind::VoteRequest,
            &VoteRequest::new(Vote::new(TERM, LEADER), Some(log_id(8))),
        ),
        message(Kind::SnapshotRequest, &snapshot(0)),
        message(
            Kind::PrefetchRequest,
            &PrefetchRequest {
                blob_ref: blob_ref(),
            },
        ),
        message(Kind::ProposeRequest, &pin("photos/a")),
        message(Kind::ProposeRequest, &PinOp::Unpin { blob_id: [9; 32] }),
        message(
            Kind::CleanupRequest,
            &CleanupRequest {
                id: 300,
                cutover: 7,
            },
        ),
        message(Kind::StateRequest, &StateRequest { id: 300 }),
        message(
            Kind::AppendAnswer,
            &Reply::Ok(AppendEntriesResponse::<u64>::Success),
        ),
        message(
            Kind::AppendAnswer,
            &Reply::Ok(AppendEntriesResponse::<u64>::PartialSuccess(Some(log_id(
                6,
            )))),
        ),
        message(
            Kind::AppendAnswer,
            &Reply::<AppendEntriesResponse<u64>>::Stopped("shut down".into()),
        ),
        message(
            Kind::VoteAnswer,
            &Reply::Ok(VoteResponse::new(
                Vote::new(TERM, LEADER),
                Some(log_id(8)),
                true,
            )),
        ),
        message(
            Kind::SnapshotAnswer,
            &Reply::Ok(InstallSnapshotResponse {
                vote: Vote::new_committed(TERM, LEADER),
            }),
        ),
        message(
            Kind::SnapshotAnswer,
            &Reply::<InstallSnapshotResponse<u64>>::SnapshotMismatch(mismatch),
        ),
        message(
            Kind::PrefetchAnswer,
            &Reply::Ok(Prefetched {
                objects: 3,
                bytes: 1 << 20,
            }),
        ),
        message(Kind::ProposeAnswer, &Proposed::Committed(9)),
        message(
            Kind::ProposeAnswer,
            &Proposed::NotLeader(Some("a.example:7000".into())),
        ),
        message(
            Kind::CleanupAnswer,
            &CleanupReply::Cleaned { pins_removed: 2 },
        ),
        message(Kind::CleanupAnswer, &CleanupReply::AlreadyCleaned),
        message(
            Kind::StateAnswer,
            &HandoffState {
                applied: Some(8),
                voters: vec![[1; 32], [2; 32]],
                learners: vec![[4; 32]],
            },
        ),
        row(Kind::LogEntry, &entries(5)[1]),
        row(Kind::LogEntry, &entries(5)[2]),
        row(
            Kind::VoteRow,
            &VoteRow {
                vote: Vote::new_committed(TERM, LEADER),
            },
        ),
        row(
            Kind::LogMetaRow,
            &LogMetaRow {
                last_purged: Some(log_id(4)),
            },
        ),
        row(
            Kind::StateRow,
            &StateRow {
                last_applied: Some(log_id(8)),
                membership: StoredMembership::new(Some(log_id(6)), membership()),
            },
        ),
        row(Kind::StateRow, &StateRow::default()),
        row(
            Kind::PrefetchRow,
            &PrefetchRow {
                roots: vec![[7; 32], [7; 32]],
                expires_unix_ms: 1_700_000_600_000,
            },
        ),
        row(Kind::MoveRow, &move_row("b.example:7000")),
        row(Kind::SnapshotBody, &snapshot_body(blob_ref())),
        row(Kind::SnapshotBody, &SnapshotBody::default()),
        row(Kind::PendingSnapshotRow, &pending_row("2-8")),
        row(Kind::PreviousHandoffRow, &handoff(3)),
        message(Kind::PinnedRequest, &PinnedRequest { blob_id: [7; 32] }),
        message(
            Kind::PinnedAnswer,
            &Reply::Ok(PinnedState {
                applied: Some(8),
                pinned: false,
            }),
        ),
        message(
            Kind::PinnedAnswer,
            &Reply::Ok(PinnedState {
                applied: None,
                pinned: true,
            }),
        ),
        message(Kind::AbandonRequest, &AbandonRequest { id: 300 }),
        message(Kind::AbandonAnswer, &AbandonReply::Released),
        message(
            Kind::AbandonAnswer,
            &AbandonReply::Removed { pins_removed: 2 },
        ),
        message(Kind::AbandonAnswer, &AbandonReply::AlreadyAbandoned),
        row(
            Kind::MoveRow,
            &MoveRow {
                phase: MovePhase::Abandoned,
                ..move_row("b.example:7000")
            },
        ),
    ]
}

/// The bytes docs/REPLICATION.md §8 gives for `move/v1/abandon` and the `Abandoned` phase.
#[test]
fn abandon_messages_and_phase_golden_bytes() {
    fn bytes(value: &impl Serialize) -> Vec<u8> {
        postcard::to_allocvec(value).unwrap()
    }
    assert_eq!(bytes(&AbandonRequest { id: 300 }), [0xac, 0x02]);
    assert_eq!(bytes(&AbandonReply::Released), [0]);
    assert_eq!(bytes(&AbandonReply::Removed { pins_removed: 2 }), [1, 2]);
    assert_eq!(bytes(&AbandonReply::AlreadyAbandoned), [2]);
    assert_eq!(bytes(&MovePhase::Abandoned), [6]);
    assert_eq!(MovePhase::Abandoned.name(), "abandoned");
}

fn handoff(voters: usize) -> HandoffState {
    HandoffState {
        applied: Some(9),
        voters: vec![[2; 32]; voters],
        learners: vec![[3; 32]],
    }
}

fn pending_row(snapshot_id: &str) -> PendingSnapshotRow {
    PendingSnapshotRow {
        last_log_id: Some(log_id(8)),
        membership: StoredMembership::new(Some(log_id(6)), membership()),
        snapshot_id: snapshot_id.into(),
        body: encode_row(&snapshot_body(blob_ref())).unwrap(),
    }
}

/// Values that decode and that a handler or reader refuses.
fn refused_inputs() -> Vec<(Kind, Vec<u8>)> {
    let mut gap = entries(5);
    gap.remove(1);
    let mut ahead = append(entries(5));
    ahead.vote = Vote::new_committed(TERM - 1, LEADER);
    let mut late_membership = snapshot(0);
    late_membership.meta.last_membership = StoredMembership::new(Some(log_id(9)), membership());
    vec![
        // Entries 5, 7, 8 do not follow 4 one after another.
        message(Kind::AppendRequest, &append(gap)),
        // Entries of a term above the sender's vote.
        message(Kind::AppendRequest, &ahead),
        // A pin whose blob ref does not decode.
        message(
            Kind::AppendRequest,
            &append(vec![Entry {
                log_id: log_id(5),
                payload: EntryPayload::Normal(PinOp::Pin {
                    blob_ref: vec![0xff; 8],
                    name: "x".into(),
                }),
            }]),
        ),
        message(Kind::SnapshotRequest, &late_membership),
        // A chunk ending past the largest snapshot.
        message(Kind::SnapshotRequest, &snapshot(MAX_SNAPSHOT_LEN)),
        message(
            Kind::PrefetchRequest,
            &PrefetchRequest {
                blob_ref: vec![0xff; 8],
            },
        ),
        message(Kind::ProposeRequest, &pin(&"n".repeat(1025))),
        row(Kind::MoveRow, &move_row(&"h".repeat(MAX_HOST_PORT_LEN + 1))),
        row(Kind::SnapshotBody, &snapshot_body(vec![0xff; 8])),
        row(
            Kind::PendingSnapshotRow,
            &pending_row(&"s".repeat(MAX_SNAPSHOT_ID_LEN + 1)),
        ),
        row(Kind::PreviousHandoffRow, &handoff(MAX_HANDOFF_NODES)),
    ]
}

#[test]
fn every_kind_is_numbered_by_its_place() {
    for (i, kind) in Kind::ALL.into_iter().enumerate() {
        assert_eq!(usize::from(kind.byte()), i, "{kind:?}");
    }
    assert_eq!(fuzz_decode(&[]), Outcome::NoKind);
    assert_eq!(fuzz_decode(&[Kind::ALL.len() as u8, 0]), Outcome::NoKind);
    assert_eq!(fuzz_decode(&[0xff]), Outcome::NoKind);
}

#[test]
fn every_value_the_crate_encodes_is_accepted() {
    let inputs = valid_inputs();
    for (kind, input) in &inputs {
        assert_eq!(
            fuzz_decode(input),
            Outcome::Accepted,
            "{kind:?} {input:02x?}"
        );
    }
    let covered: HashSet<u8> = inputs.iter().map(|(k, _)| k.byte()).collect();
    for kind in Kind::ALL {
        assert!(covered.contains(&kind.byte()), "no valid {kind:?}");
    }
}

#[test]
fn values_a_handler_or_reader_refuses_decode_and_are_refused() {
    for (kind, input) in refused_inputs() {
        assert_eq!(
            fuzz_decode(&input),
            Outcome::Refused,
            "{kind:?} {input:02x?}"
        );
    }
}

#[test]
fn cut_changed_and_random_bytes_never_panic() {
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    let mut count = |o: Outcome| *outcomes.entry(format!("{o:?}")).or_default() += 1;
    let inputs: Vec<Vec<u8>> = valid_inputs()
        .into_iter()
        .chain(refused_inputs())
        .map(|(_, input)| input)
        .collect();
    for input in &inputs {
        for len in 0..input.len() {
            count(fuzz_decode(&input[..len]));
        }
        for at in 1..input.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut changed = input.clone();
                changed[at] ^= flip;
                count(fuzz_decode(&changed));
            }
        }
        let mut longer = input.clone();
        longer.push(0);
        count(fuzz_decode(&longer));
    }
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for kind in Kind::ALL {
        for len in 0..200 {
            let mut input = vec![kind.byte()];
            // Small values most of the time, so lengths and tags are often in range.
            input.extend((0..len).map(|_| {
                let r = next();
                if r % 4 == 0 {
                    r as u8
                } else {
                    (r >> 8) as u8 % 4
                }
            }));
            count(fuzz_decode(&input));
        }
    }
    // Some of each: the harness decoded, refused and failed to decode along the way.
    for outcome in ["Undecoded", "Refused", "Accepted"] {
        assert!(
            outcomes.get(outcome).is_some_and(|&n| n > 0),
            "no {outcome} in {outcomes:?}"
        );
    }
}
