//! Fuzz harness of the decoders this crate runs on bytes from the network and from disk, kept
//! in the library so the `fuzz/` target (`raft_messages`) stays thin and `cargo test` runs the
//! same checks.
//!
//! The first byte says what the rest is ([`Kind`]):
//! - a `raft/v1/*` or `move/v1/*` request body or answer, decoded as nRPC decodes a unary
//!   message ([`Encoded::decode`]), then put through the checks its handler runs before
//!   anything else sees it (the same functions);
//! - a value of one of the `raft` extension's tables, or a snapshot's body, decoded with
//!   [`decode_row`] (the log's entries with the log store's own decoder), then put through the
//!   checks its reader runs.
//!
//! Every value that decodes must encode (nRPC encodes a message with postcard; a row with
//! [`encode_row`]) as exactly the input: the decoders accept one encoding of each value. A
//! broken round trip is the only panic: it is how the harness reports a bug.

use net_mesh_rpc::rpc::Encoded;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::fetch::{PinnedRequest, PinnedState};
use crate::log_store::decode_entry;
use crate::moves::{
    AbandonReply, AbandonRequest, CleanupReply, CleanupRequest, HandoffState, StateRequest,
};
use crate::network::{
    Reply, receive_chunk, request_blob_ref, well_formed, well_formed_snapshot, within_snapshot_len,
};
use crate::node_replicas::Proposed;
use crate::prefetch::{PrefetchRequest, Prefetched};
use crate::state_machine::{SNAPSHOT, SnapshotBody, wanted_pins};
use crate::tables::{
    LOG_META_TABLE, LogMetaRow, MOVES_TABLE, MoveRow, PENDING_SNAPSHOT_TABLE, PREFETCH_TABLE,
    PREVIOUS_HANDOFF_TABLE, PendingSnapshotRow, PrefetchRow, STATE_TABLE, StateRow, VOTE_TABLE,
    VoteRow, check_handoff, decode_row, encode_row,
};
use crate::types::{PinOp, TypeConfig};

/// What the bytes after the first are decoded as (the first byte is the variant's number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `raft/v1/append` request, then the handler's shape check.
    AppendRequest = 0,
    /// `raft/v1/vote` request.
    VoteRequest = 1,
    /// `raft/v1/snapshot` request, then the handler's meta and length checks.
    SnapshotRequest = 2,
    /// `raft/v1/prefetch` request, then the handler's blob ref check.
    PrefetchRequest = 3,
    /// `raft/v1/propose` request, then the handler's and the proposal's checks.
    ProposeRequest = 4,
    /// `move/v1/cleanup` request.
    CleanupRequest = 5,
    /// `move/v1/state` request.
    StateRequest = 6,
    /// `raft/v1/append` answer.
    AppendAnswer = 7,
    /// `raft/v1/vote` answer.
    VoteAnswer = 8,
    /// `raft/v1/snapshot` answer.
    SnapshotAnswer = 9,
    /// `raft/v1/prefetch` answer.
    PrefetchAnswer = 10,
    /// `raft/v1/propose` answer.
    ProposeAnswer = 11,
    /// `move/v1/cleanup` answer.
    CleanupAnswer = 12,
    /// `move/v1/state` answer.
    StateAnswer = 13,
    /// A value of `log_v1` (a log entry).
    LogEntry = 14,
    /// A value of `vote_v1`.
    VoteRow = 15,
    /// A value of `log_meta_v1`.
    LogMetaRow = 16,
    /// A value of `state_v1`.
    StateRow = 17,
    /// A value of `prefetch_v1`.
    PrefetchRow = 18,
    /// A value of `moves_v1`, then its bounds.
    MoveRow = 19,
    /// A snapshot's body, then each pin's blob ref (what installing it decodes).
    SnapshotBody = 20,
    /// A value of `pending_snapshot_v1`, then its bounds.
    PendingSnapshotRow = 21,
    /// A value of `moves_previous_handoff_v1`, then its bounds.
    PreviousHandoffRow = 22,
    /// `raft/v1/pinned` request.
    PinnedRequest = 23,
    /// `raft/v1/pinned` answer.
    PinnedAnswer = 24,
    /// `move/v1/abandon` request.
    AbandonRequest = 25,
    /// `move/v1/abandon` answer.
    AbandonAnswer = 26,
}

impl Kind {
    /// Every kind, in the order of their numbers.
    pub const ALL: [Kind; 27] = [
        Kind::AppendRequest,
        Kind::VoteRequest,
        Kind::SnapshotRequest,
        Kind::PrefetchRequest,
        Kind::ProposeRequest,
        Kind::CleanupRequest,
        Kind::StateRequest,
        Kind::AppendAnswer,
        Kind::VoteAnswer,
        Kind::SnapshotAnswer,
        Kind::PrefetchAnswer,
        Kind::ProposeAnswer,
        Kind::CleanupAnswer,
        Kind::StateAnswer,
        Kind::LogEntry,
        Kind::VoteRow,
        Kind::LogMetaRow,
        Kind::StateRow,
        Kind::PrefetchRow,
        Kind::MoveRow,
        Kind::SnapshotBody,
        Kind::PendingSnapshotRow,
        Kind::PreviousHandoffRow,
        Kind::PinnedRequest,
        Kind::PinnedAnswer,
        Kind::AbandonRequest,
        Kind::AbandonAnswer,
    ];

    /// The first byte of an input of this kind.
    pub fn byte(self) -> u8 {
        self as u8
    }

    fn of(byte: u8) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.byte() == byte)
    }
}

/// What the harness made of an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The first byte names no [`Kind`] (or there is none).
    NoKind,
    /// The rest does not decode as the kind.
    Undecoded,
    /// It decodes, and the checks that follow decoding refuse it.
    Refused,
    /// It decodes and passes every check.
    Accepted,
}

/// Decodes `data` as its first byte says (see the module docs); panics only on a value that
/// does not survive its encoder.
pub fn fuzz_decode(data: &[u8]) -> Outcome {
    let Some((kind, body)) = data
        .split_first()
        .and_then(|(&byte, body)| Some((Kind::of(byte)?, body)))
    else {
        return Outcome::NoKind;
    };
    match kind {
        Kind::AppendRequest => {
            message::<AppendEntriesRequest<TypeConfig>>(kind, body, |req| well_formed(req).is_ok())
        }
        Kind::VoteRequest => message::<VoteRequest<u64>>(kind, body, |_| true),
        Kind::SnapshotRequest => message::<InstallSnapshotRequest<TypeConfig>>(kind, body, |req| {
            let taken = well_formed_snapshot(req).is_ok() && within_snapshot_len(req).is_ok();
            if taken {
                // The handler then puts the chunk together with the ones before it.
                let mut receiving = None;
                let _ = receive_chunk(&mut receiving, req);
                let _ = receive_chunk(&mut receiving, req);
            }
            taken
        }),
        Kind::PrefetchRequest => {
            message::<PrefetchRequest>(kind, body, |req| request_blob_ref(&req.blob_ref).is_ok())
        }
        Kind::ProposeRequest => message::<PinOp>(kind, body, |op| {
            let blob_ref_ok = match op {
                PinOp::Pin { blob_ref, .. } => request_blob_ref(blob_ref).is_ok(),
                PinOp::Unpin { .. } => true,
            };
            blob_ref_ok && op.check().is_ok()
        }),
        Kind::CleanupRequest => message::<CleanupRequest>(kind, body, |_| true),
        Kind::StateRequest => message::<StateRequest>(kind, body, |_| true),
        Kind::AppendAnswer => message::<Reply<AppendEntriesResponse<u64>>>(kind, body, |_| true),
        Kind::VoteAnswer => message::<Reply<VoteResponse<u64>>>(kind, body, |_| true),
        Kind::SnapshotAnswer => {
            message::<Reply<InstallSnapshotResponse<u64>>>(kind, body, |_| true)
        }
        Kind::PrefetchAnswer => message::<Reply<Prefetched>>(kind, body, |_| true),
        Kind::ProposeAnswer => message::<Proposed>(kind, body, |_| true),
        Kind::CleanupAnswer => message::<CleanupReply>(kind, body, |_| true),
        Kind::StateAnswer => message::<HandoffState>(kind, body, |_| true),
        Kind::LogEntry => {
            let Ok(entry) = decode_entry(body) else {
                return Outcome::Undecoded;
            };
            round_trip(kind, body, &entry, |e| encode_row(e).ok());
            Outcome::Accepted
        }
        Kind::VoteRow => row::<VoteRow>(kind, VOTE_TABLE, body, |_| true),
        Kind::LogMetaRow => row::<LogMetaRow>(kind, LOG_META_TABLE, body, |_| true),
        Kind::StateRow => row::<StateRow>(kind, STATE_TABLE, body, |_| true),
        Kind::PrefetchRow => row::<PrefetchRow>(kind, PREFETCH_TABLE, body, |_| true),
        Kind::MoveRow => row::<MoveRow>(kind, MOVES_TABLE, body, |r| r.check().is_ok()),
        Kind::SnapshotBody => {
            row::<SnapshotBody>(kind, SNAPSHOT, body, |b| wanted_pins(b.clone()).is_ok())
        }
        Kind::PendingSnapshotRow => {
            row::<PendingSnapshotRow>(kind, PENDING_SNAPSHOT_TABLE, body, |r| r.check().is_ok())
        }
        Kind::PreviousHandoffRow => row::<HandoffState>(kind, PREVIOUS_HANDOFF_TABLE, body, |r| {
            check_handoff(r).is_ok()
        }),
        Kind::PinnedRequest => message::<PinnedRequest>(kind, body, |_| true),
        Kind::PinnedAnswer => message::<Reply<PinnedState>>(kind, body, |_| true),
        Kind::AbandonRequest => message::<AbandonRequest>(kind, body, |_| true),
        Kind::AbandonAnswer => message::<AbandonReply>(kind, body, |_| true),
    }
}

/// A unary request or answer: nRPC's decoding, the round trip, then `check`.
fn message<T: Serialize + DeserializeOwned>(
    kind: Kind,
    body: &[u8],
    check: impl FnOnce(&T) -> bool,
) -> Outcome {
    let decode = |bytes: &[u8]| Encoded::from(bytes.to_vec()).decode::<T>().ok();
    let Some(value) = decode(body) else {
        return Outcome::Undecoded;
    };
    round_trip(kind, body, &value, |v| postcard::to_allocvec(v).ok());
    verdict(check(&value))
}

/// A value of `table`: [`decode_row`], the round trip through [`encode_row`], then `check`.
fn row<T: Serialize + DeserializeOwned>(
    kind: Kind,
    table: &str,
    body: &[u8],
    check: impl FnOnce(&T) -> bool,
) -> Outcome {
    let decode = |bytes: &[u8]| decode_row::<T>(table, bytes).ok();
    let Some(value) = decode(body) else {
        return Outcome::Undecoded;
    };
    round_trip(kind, body, &value, |v| encode_row(v).ok());
    verdict(check(&value))
}

fn verdict(accepted: bool) -> Outcome {
    if accepted {
        Outcome::Accepted
    } else {
        Outcome::Refused
    }
}

/// Asserts that `value`, decoded from `input`, encodes as exactly `input`: a decoder accepts one
/// encoding of each value, the one its encoder writes.
#[allow(clippy::panic)] // fuzz harness: a panic is how a found bug is reported
fn round_trip<T>(kind: Kind, input: &[u8], value: &T, encode: impl Fn(&T) -> Option<Vec<u8>>) {
    let encoded = encode(value);
    assert!(
        encoded.as_deref() == Some(input),
        "{kind:?}: decoded from {input:02x?}, it encodes as {encoded:02x?}"
    );
}
