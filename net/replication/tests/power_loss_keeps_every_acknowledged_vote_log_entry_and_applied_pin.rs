//! Power cuts while a replicated channel's raft storage runs: the real `LogStore` and
//! `StateMachine`, called through openraft's storage-v2 traits (votes, appends, truncation of
//! a deposed leader's tail, purges, applies, a snapshot built and one installed) on a store whose segment files and index live on the simulated disk. At every
//! sync boundary and at seeded random points the store reopens and: the vote is the last
//! acknowledged one or one saved after it (never older); every acknowledged log entry is there
//! byte for byte, no acknowledged truncation or purge is undone, and every entry present is one
//! that was written at its index; the channel's pins and `state_v1` are one of the states an
//! apply or install could leave (a pin is there iff its entry is at or below `last_applied`),
//! never behind an acknowledged apply; a log purged past the applied state comes with the
//! stored snapshot that covers it (the next open installs it); every row decodes; fsck is
//! clean.
//!
//! An append counts as acknowledged when `RaftLogStorageExt::blocking_append` returns: the
//! call returned and its `LogFlushed` callback reported success (openraft makes that callback
//! only inside the crate, so the callback itself cannot be observed apart from the return).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

#[path = "../../../engine/tests/power_loss/mod.rs"]
mod power_loss;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;
use std::sync::Arc;

use net_mesh_engine::codec::Hash;
use net_mesh_engine::index::blob_id;
use net_mesh_engine::{BlobRef, Store, StoreConfig};
use net_mesh_replication::log_store::LogStore;
use net_mesh_replication::state_machine::{InstallGate, SnapshotBody, SnapshotPin, StateMachine};
use net_mesh_replication::tables::{
    LOG_META_TABLE, LOG_TABLE, LogMetaRow, NAMESPACE, STATE_TABLE, StateRow, VOTE_TABLE, VoteRow,
    decode_row, encode_row, read_channel_row, read_log_range, read_pending_snapshot,
};
use net_mesh_replication::types::{Entry, LogId, StoredMembership};
use net_mesh_replication::{Member, PinOp, extension};
use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::{
    CommittedLeaderId, EntryPayload, Membership, RaftSnapshotBuilder, SnapshotMeta, Vote,
};
use power_loss::{Effect, Recording, Status, Step, check_all, crash_points};
use tokio_util::sync::CancellationToken;

const CHANNEL: &str = "photos";

/// What the channel's pins and applied state are after some apply or install.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AppliedState {
    last_applied: Option<LogId>,
    /// `Debug` of the stored membership (openraft's type has no `Eq`).
    membership: String,
    pins: BTreeSet<Hash>,
}

impl Default for AppliedState {
    fn default() -> AppliedState {
        AppliedState {
            last_applied: None,
            membership: format!("{:?}", StoredMembership::default()),
            pins: BTreeSet::new(),
        }
    }
}

impl AppliedState {
    /// The state after applying `entry` to `self`.
    fn after(&self, entry: &Entry) -> AppliedState {
        let mut next = self.clone();
        next.last_applied = Some(entry.log_id);
        match &entry.payload {
            EntryPayload::Blank => {}
            EntryPayload::Membership(m) => {
                next.membership =
                    format!("{:?}", StoredMembership::new(Some(entry.log_id), m.clone()));
            }
            EntryPayload::Normal(PinOp::Pin { blob_ref, .. }) => {
                next.pins
                    .insert(blob_id(&BlobRef::decode(blob_ref).unwrap()));
            }
            EntryPayload::Normal(PinOp::Unpin { blob_id }) => {
                next.pins.remove(blob_id);
            }
        }
        next
    }
}

/// One storage call and what it writes.
#[derive(Debug, Clone)]
enum Call {
    Vote(Vote<u64>),
    /// Encoded entries by index.
    Append(Vec<(u64, Vec<u8>)>),
    Truncate(u64),
    /// What a purge drops: up to this log id (the one asked for, or the applied state if that
    /// is behind it and the log holds the index asked for).
    Purge(LogId),
    /// The states after each entry of one apply call, in order.
    Apply(Vec<AppliedState>),
    Install(AppliedState),
}

/// What may be stored at a cut: a value acknowledged last, plus what in-flight calls write.
#[derive(Debug, Clone)]
struct Possible<T>(Vec<T>);

impl<T: Clone + PartialEq> Possible<T> {
    fn new(initial: T) -> Possible<T> {
        Possible(vec![initial])
    }

    fn set(&mut self, status: Status, value: T) {
        match status {
            Status::Acked => self.0 = vec![value],
            Status::InFlight => {
                if !self.0.contains(&value) {
                    self.0.push(value);
                }
            }
            Status::NotStarted => {}
        }
    }

    fn allows(&self, value: &T) -> bool {
        self.0.contains(value)
    }
}

/// The workload: the store, its raft storage, and every call with when it was acknowledged.
struct Run {
    rec: Recording,
    rt: tokio::runtime::Runtime,
    calls: Vec<(Step, Call)>,
    /// The channel's state after the last apply or install.
    state: AppliedState,
}

impl Run {
    /// Runs one storage call to completion and records it (it must succeed).
    fn call<T, E: std::fmt::Debug>(
        &mut self,
        call: Call,
        work: impl std::future::Future<Output = Result<T, E>>,
    ) -> T {
        let started = self.rec.now();
        let out = self.rt.block_on(work).unwrap();
        self.rec
            .ack(started, vec![Effect::Other("raft storage call")]);
        let step = self.rec.steps.last().unwrap().clone();
        self.calls.push((step, call));
        out
    }

    fn append(&mut self, ls: &mut LogStore, entries: Vec<Entry>) {
        self.call(Call::Append(encoded(&entries)), ls.blocking_append(entries));
    }

    fn apply(&mut self, sm: &mut StateMachine, entries: Vec<Entry>) {
        let mut states = Vec::new();
        for e in &entries {
            self.state = self.state.after(e);
            states.push(self.state.clone());
        }
        self.call(Call::Apply(states), sm.apply(entries));
    }
}

fn leader(term: u64) -> CommittedLeaderId<u64> {
    CommittedLeaderId::new(term, term)
}

fn lid(term: u64, index: u64) -> LogId {
    LogId::new(leader(term), index)
}

fn entry(term: u64, index: u64, payload: EntryPayload<net_mesh_replication::TypeConfig>) -> Entry {
    Entry {
        log_id: lid(term, index),
        payload,
    }
}

fn pin(term: u64, index: u64, r: &BlobRef, name: &str) -> Entry {
    entry(
        term,
        index,
        EntryPayload::Normal(PinOp::Pin {
            blob_ref: r.encode(),
            name: name.into(),
        }),
    )
}

fn unpin(term: u64, index: u64, r: &BlobRef) -> Entry {
    entry(
        term,
        index,
        EntryPayload::Normal(PinOp::Unpin {
            blob_id: blob_id(r),
        }),
    )
}

fn members() -> Membership<u64, Member> {
    let nodes: BTreeMap<u64, Member> = (1..=3u8)
        .map(|i| {
            (
                u64::from(i),
                Member {
                    node_id: [i; 32],
                    host_port: format!("127.0.0.1:{}", 7000 + u16::from(i)),
                },
            )
        })
        .collect();
    Membership::new(vec![nodes.keys().copied().collect()], nodes)
}

fn encoded(entries: &[Entry]) -> Vec<(u64, Vec<u8>)> {
    entries
        .iter()
        .map(|e| (e.log_id.index, encode_row(e).unwrap()))
        .collect()
}

/// Distinct, incompressible-looking bytes for blob `i`.
fn blob_bytes(i: u64) -> Vec<u8> {
    let mut x = 0x5EED_0000 + i;
    (0..20_000 + i as usize * 3_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Checks the raft tables and the channel's pins of a reopened store against the calls.
fn check_raft(store: &Store, calls: &[(Step, Call)], cut: usize) -> Result<(), String> {
    let mut vote = Possible::new(None);
    let mut log: BTreeMap<u64, Possible<Option<Vec<u8>>>> = BTreeMap::new();
    let mut purged = Possible::new(None);
    let mut applied = Possible::new(AppliedState::default());
    let mut install_acked = false;
    for (_, call) in calls {
        if let Call::Append(rows) = call {
            for (i, _) in rows {
                log.entry(*i).or_insert_with(|| Possible::new(None));
            }
        }
    }
    for (step, call) in calls {
        let status = step.status(cut);
        if status == Status::NotStarted {
            break;
        }
        match call {
            Call::Vote(v) => vote.set(status, Some(*v)),
            Call::Append(rows) => {
                for (i, bytes) in rows {
                    log.get_mut(i).unwrap().set(status, Some(bytes.clone()));
                }
            }
            Call::Truncate(from) => {
                for (_, p) in log.range_mut(from..) {
                    p.set(status, None);
                }
            }
            Call::Purge(upto) => {
                for (_, p) in log.range_mut(..=upto.index) {
                    p.set(status, None);
                }
                purged.set(status, Some(*upto));
            }
            Call::Apply(states) => match status {
                Status::Acked => applied.set(status, states.last().unwrap().clone()),
                _ => {
                    for s in states {
                        applied.set(status, s.clone());
                    }
                }
            },
            Call::Install(s) => {
                install_acked = status == Status::Acked;
                applied.set(status, s.clone());
                // The install purges the log its snapshot covers in its own transaction.
                if let Some(last) = s.last_applied {
                    for (_, p) in log.range_mut(..=last.index) {
                        p.set(status, None);
                    }
                    purged.set(status, Some(last));
                }
            }
        }
    }

    let read = |what: &str, e: &dyn std::fmt::Display| format!("reading {what}: {e}");
    let stored_vote = store
        .read_extension(NAMESPACE, |r| {
            read_channel_row::<VoteRow>(r, VOTE_TABLE, CHANNEL)
        })
        .map_err(|e| read("the vote", &e))?
        .map(|row| row.vote);
    if !vote.allows(&stored_vote) {
        return Err(format!(
            "vote is {stored_vote:?}, expected one of {:?} (the last acknowledged or a later one)",
            vote.0
        ));
    }

    let rows = store
        .read_extension(NAMESPACE, |r| read_log_range(r, CHANNEL, 0, u64::MAX))
        .map_err(|e| read("the log", &e))?;
    let stored: BTreeMap<u64, Vec<u8>> = rows.into_iter().collect();
    for (i, bytes) in &stored {
        let e: Entry = decode_row(LOG_TABLE, bytes)
            .map_err(|e| format!("log entry {i} does not decode: {e}"))?;
        if e.log_id.index != *i {
            return Err(format!("log row {i} holds entry {}", e.log_id));
        }
    }
    for (i, p) in &log {
        let got = stored.get(i).cloned();
        if !p.allows(&got) {
            let say = |v: &Option<Vec<u8>>| match v {
                None => "absent".to_string(),
                Some(b) => format!("{}", decode_row::<Entry>(LOG_TABLE, b).unwrap().log_id),
            };
            return Err(format!(
                "log entry {i} is {}, expected {}",
                say(&got),
                p.0.iter().map(say).collect::<Vec<_>>().join(" or ")
            ));
        }
    }
    if let Some(i) = stored.keys().find(|i| !log.contains_key(i)) {
        return Err(format!("log entry {i} was never written"));
    }
    let meta = store
        .read_extension(NAMESPACE, |r| {
            read_channel_row::<LogMetaRow>(r, LOG_META_TABLE, CHANNEL)
        })
        .map_err(|e| read("the log meta", &e))?
        .unwrap_or_default();
    if !purged.allows(&meta.last_purged) {
        return Err(format!(
            "last purged is {:?}, expected one of {:?}",
            meta.last_purged, purged.0
        ));
    }

    let state = store
        .read_extension(NAMESPACE, |r| {
            read_channel_row::<StateRow>(r, STATE_TABLE, CHANNEL)
        })
        .map_err(|e| read("the applied state", &e))?
        .unwrap_or_default();
    // A log purged past the applied state (openraft cannot start from that) comes with the
    // snapshot that covers it, stored for the next open to install; an acknowledged install
    // leaves none.
    let pending = store
        .read_extension(NAMESPACE, |r| read_pending_snapshot(r, CHANNEL))
        .map_err(|e| read("the pending snapshot", &e))?;
    let index = |l: Option<LogId>| l.map(|l| l.index);
    if index(meta.last_purged) > index(state.last_applied)
        && pending
            .as_ref()
            .is_none_or(|p| index(p.last_log_id) < index(meta.last_purged))
    {
        return Err(format!(
            "log purged to {:?} past the applied {:?}, with no stored snapshot covering it",
            index(meta.last_purged),
            index(state.last_applied)
        ));
    }
    if install_acked && pending.is_some() {
        return Err("an acknowledged install left its snapshot pending".into());
    }
    let listing = store
        .pins_in(CHANNEL)
        .map_err(|e| read("the channel's pins", &e))?;
    if let Some(bad) = listing.bad.first() {
        return Err(format!(
            "a pin row of the channel does not decode: {}",
            bad.error
        ));
    }
    for (_, p) in &listing.pins {
        power_loss::fetch(store, &p.blob_ref)
            .map_err(|e| format!("a pin of the channel does not read: {e}"))?;
    }
    let got = AppliedState {
        last_applied: state.last_applied,
        membership: format!("{:?}", state.membership),
        pins: listing.pins.iter().map(|(id, _)| *id).collect(),
    };
    if !applied.allows(&got) {
        let show = |s: &AppliedState| {
            format!(
                "last_applied {:?} with {} pins",
                s.last_applied.map(|l| l.index),
                s.pins.len()
            )
        };
        let same_index = applied
            .0
            .iter()
            .find(|s| s.last_applied == got.last_applied);
        return Err(format!(
            "channel holds {}{}, expected one of [{}]",
            show(&got),
            match same_index {
                Some(s) if s.pins != got.pins => format!(
                    " (pins differ from that index's state: {} extra, {} missing)",
                    got.pins.difference(&s.pins).count(),
                    s.pins.difference(&got.pins).count()
                ),
                Some(_) => " (membership differs)".to_string(),
                None => String::new(),
            },
            applied.0.iter().map(show).collect::<Vec<_>>().join(", ")
        ));
    }
    Ok(())
}

#[test]
fn power_loss_keeps_every_acknowledged_vote_log_entry_and_applied_pin() {
    let mut rec = Recording::new(StoreConfig {
        segment_roll_size: 64 * 1024,
        ..StoreConfig::default()
    });
    rec.extensions = vec![extension()];
    let store = Arc::new(rec.open());
    rec.step(
        || store.create_channel(CHANNEL).unwrap(),
        |_| vec![Effect::Other("create the channel")],
    );
    let mut blobs = Vec::new();
    for i in 0..6 {
        let data = Arc::new(blob_bytes(i));
        let r = rec.step(
            || store.store(&data).unwrap().blob_ref,
            |r| {
                vec![Effect::Pinned {
                    blob_ref: r.clone(),
                    data: Arc::clone(&data),
                }]
            },
        );
        blobs.push(r);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut run = Run {
        rec,
        rt,
        calls: Vec::new(),
        state: AppliedState::default(),
    };
    let mut ls = LogStore::new(store.clone(), CHANNEL);
    let mut sm = StateMachine::new(store.clone(), CHANNEL);
    // Term 1: node 1 campaigns, wins, and replicates membership and pins.
    let v = Vote::new(1, 1);
    run.call(Call::Vote(v), ls.save_vote(&v));
    let v = Vote::new_committed(1, 1);
    run.call(Call::Vote(v), ls.save_vote(&v));
    let first = vec![
        entry(1, 1, EntryPayload::Membership(members())),
        pin(1, 2, &blobs[0], "zero"),
        pin(1, 3, &blobs[1], "one"),
    ];
    run.append(&mut ls, first.clone());
    run.apply(&mut sm, first);
    let e4 = unpin(1, 4, &blobs[0]);
    let e5 = pin(1, 5, &blobs[2], "two");
    run.append(&mut ls, vec![e4.clone()]);
    run.append(&mut ls, vec![e5.clone()]);
    run.apply(&mut sm, vec![e4]);
    run.apply(&mut sm, vec![e5]);
    // Entries of term 1 that never commit: node 2 wins term 2 and overwrites them.
    run.append(
        &mut ls,
        vec![pin(1, 6, &blobs[3], "three"), pin(1, 7, &blobs[4], "four")],
    );
    let v = Vote::new(2, 2);
    run.call(Call::Vote(v), ls.save_vote(&v));
    let v = Vote::new_committed(2, 2);
    run.call(Call::Vote(v), ls.save_vote(&v));
    run.call(Call::Truncate(6), ls.truncate(lid(1, 6)));
    let second = vec![
        pin(2, 6, &blobs[5], "five"),
        entry(2, 7, EntryPayload::Blank),
        pin(2, 8, &blobs[3], "three"),
    ];
    run.append(&mut ls, second.clone());
    run.apply(&mut sm, second);

    // A snapshot built from the store holds the applied pins; the log is purged behind it.
    let snapshot = run.rt.block_on(sm.build_snapshot()).unwrap();
    assert_eq!(snapshot.meta.last_log_id, Some(lid(2, 8)));
    let body: SnapshotBody = decode_row("snapshot", snapshot.snapshot.get_ref()).unwrap();
    let in_snapshot: BTreeSet<Hash> = body
        .pins
        .iter()
        .map(|p| blob_id(&BlobRef::decode(&p.blob_ref).unwrap()))
        .collect();
    assert_eq!(in_snapshot, run.state.pins);
    run.call(Call::Purge(lid(2, 5)), ls.purge(lid(2, 5)));

    // Term 3: a leader far ahead sends a snapshot. openraft queues the purge up to it
    // without waiting for the install: both run at once, the purge waiting (the shared
    // gate) until the install has stored the snapshot; the log ends before the snapshot, so
    // all of it goes (a_purge_queued_before_a_snapshot_install_never_drops_unapplied_entries
    // has the case of a log that holds the snapshot's index).
    let v = Vote::new_committed(3, 3);
    run.call(Call::Vote(v), ls.save_vote(&v));
    let membership = StoredMembership::new(Some(lid(1, 1)), members());
    let meta = SnapshotMeta {
        last_log_id: Some(lid(3, 12)),
        last_membership: membership.clone(),
        snapshot_id: "3-3-12".into(),
    };
    let wanted = [(&blobs[1], "one"), (&blobs[4], "four"), (&blobs[0], "zero")];
    let body = encode_row(&SnapshotBody {
        pins: wanted
            .iter()
            .map(|(r, name)| SnapshotPin {
                name: (*name).into(),
                blob_ref: r.encode(),
            })
            .collect(),
    })
    .unwrap();
    let installed = AppliedState {
        last_applied: Some(lid(3, 12)),
        membership: format!("{membership:?}"),
        pins: wanted.iter().map(|(r, _)| blob_id(r)).collect(),
    };
    {
        let gate = InstallGate::new(CancellationToken::new());
        let mut gated_sm = sm.clone().with_install_gate(gate.clone());
        let mut gated_ls = ls.clone().with_install_gate(gate);
        let started = run.rec.now();
        // The purge is queued first, as openraft does; it must not go before the install
        // has stored the snapshot, however long the install takes to start.
        run.rt.block_on(async {
            let purge = tokio::spawn(async move { gated_ls.purge(lid(3, 12)).await });
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            gated_sm
                .install_snapshot(&meta, Box::new(Cursor::new(body)))
                .await
                .unwrap();
            purge.await.unwrap().unwrap();
        });
        run.rec
            .ack(started, vec![Effect::Other("raft storage calls")]);
        let step = run.rec.steps.last().unwrap().clone();
        run.calls.push((step.clone(), Call::Purge(lid(3, 12))));
        run.calls.push((step, Call::Install(installed.clone())));
    }
    run.state = installed;
    let third = vec![pin(3, 13, &blobs[2], "two"), unpin(3, 14, &blobs[1])];
    run.append(&mut ls, third.clone());
    run.apply(&mut sm, third);
    // Term 4 starts: this member votes for a candidate.
    let v = Vote::new(4, 4);
    run.call(Call::Vote(v), ls.save_vote(&v));

    // What openraft reads back at startup agrees with the workload.
    let log_state = run.rt.block_on(ls.get_log_state()).unwrap();
    assert_eq!(log_state.last_purged_log_id, Some(lid(3, 12)));
    assert_eq!(log_state.last_log_id, Some(lid(3, 14)));
    let (last_applied, _) = run.rt.block_on(sm.applied_state()).unwrap();
    assert_eq!(last_applied, Some(lid(3, 14)));
    assert_eq!(run.rt.block_on(ls.read_vote()).unwrap(), Some(v));
    drop((ls, sm, store));

    let Run { rec, calls, .. } = run;
    let points = crash_points(&rec.disk, 100, 0x4A46_7C11);
    let checked = check_all(&rec, &points, &|_, _| false, &|store, _, cut| {
        check_raft(store, &calls, cut)
    });
    eprintln!(
        "{checked} crash points over {} disk operations, {} raft storage calls",
        rec.disk.op_count(),
        calls.len()
    );
}
