//! openraft's state machine for one channel: the channel's pin set in the store, and the
//! applied state (last applied log id, membership) in `ext.raft.state_v1`.
//!
//! Applying an entry commits its pin change and the new applied state in ONE engine
//! transaction, so after any crash the pins and `last_applied` agree: an entry is either
//! applied and recorded, or neither. A snapshot is built from the store (the channel's pins
//! and the applied state, read under the same lock that applying takes), never kept apart.

use std::collections::{BTreeMap, HashSet};
use std::io::Cursor;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use net_mesh_engine::class::hex;
use net_mesh_engine::codec::Hash;
use net_mesh_engine::index::{IndexError, blob_id, pin_roots};
use net_mesh_engine::{BlobRef, ExtensionOp, Importer, Store, StoreError};
use net_mesh_rpc::NodeAddr;
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftSnapshotBuilder,
    SnapshotMeta, StorageIOError,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::error::ApplyError;
use crate::fetch::{FETCH_BACKOFF_MAX, FETCH_BACKOFF_MIN, Fetcher, PinnedState};
use crate::log_store::blocking;
use crate::prefetch::{hold_op, release_op};
use crate::tables::{
    Change, NAMESPACE, PendingSnapshotRow, RaftWrite, STATE_TABLE, StateRow, decode_row,
    encode_row, read_channel_row, read_pending_snapshot, read_prefetched,
};
use crate::types::{
    Applied, Entry, LogId, MAX_SNAPSHOT_LEN, Member, PinOp, StorageError, StoredMembership,
    TypeConfig,
};

/// Table name used in error reports of snapshot bodies.
pub(crate) const SNAPSHOT: &str = "snapshot";

/// How a fetch ended: the objects came (and `finish` ran), or no member gave them and this
/// member (which applied this far) showed that a later committed entry unpinned the blob
/// ([`PinnedState::unpinned_after`]).
enum Fetched<T> {
    Done(T),
    UnpinnedAt(NodeAddr, u64),
}

/// A snapshot's body: the channel's pins (meta travels beside it, in openraft's
/// `SnapshotMeta`). Encoded as a row: version byte [`crate::tables::ROW_VERSION`], then postcard.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotBody {
    pub pins: Vec<SnapshotPin>,
}

/// One pin of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotPin {
    pub name: String,
    pub blob_ref: Vec<u8>,
}

/// The pins a snapshot's body installs, by blob id: each pin's blob ref decoded.
pub(crate) fn wanted_pins(body: SnapshotBody) -> Result<BTreeMap<Hash, (BlobRef, String)>, String> {
    let mut wanted = BTreeMap::new();
    for pin in body.pins {
        let r = BlobRef::decode(&pin.blob_ref).map_err(|e| e.to_string())?;
        wanted.insert(blob_id(&r), (r, pin.name));
    }
    Ok(wanted)
}

/// What the state machine has stored of the snapshots it installs, for the log store's purge
/// (one per running group, shared by its state machine and log store). openraft queues the
/// purge of the log a snapshot covers without waiting for the install; the purge waits here
/// until the snapshot is stored (`pending_snapshot_v1`), so a member stopped or crashed
/// before the install commits finishes it at its next open
/// ([`StateMachine::finish_interrupted_install`]) instead of starting with its applied state
/// behind its purged log.
#[derive(Debug, Clone)]
pub struct InstallGate {
    state: Arc<watch::Sender<GateState>>,
    stop: CancellationToken,
}

#[derive(Debug, Clone, Copy, Default)]
struct GateState {
    /// The last log index of the newest snapshot stored (pending or installed).
    stored: Option<u64>,
    /// The state machine failed (an apply, install or snapshot build: openraft stops the group
    /// on any state machine error).
    failed: bool,
}

impl InstallGate {
    /// A gate whose waits end when `stop` (the channel's) is cancelled.
    pub fn new(stop: CancellationToken) -> InstallGate {
        InstallGate {
            state: Arc::new(watch::Sender::new(GateState::default())),
            stop,
        }
    }

    fn store_done(&self, index: u64) {
        self.state.send_modify(|s| {
            s.stored = Some(s.stored.map_or(index, |i| i.max(index)));
        });
    }

    fn failed(&self) {
        self.state.send_modify(|s| s.failed = true);
    }

    /// Waits until a snapshot reaching `index` is stored; an error when an install failed
    /// first or the channel stopped.
    pub(crate) async fn stored(&self, index: u64) -> Result<(), &'static str> {
        let mut rx = self.state.subscribe();
        let covered = |s: &GateState| s.stored.is_some_and(|i| i >= index);
        tokio::select! {
            seen = rx.wait_for(|s| covered(s) || s.failed) => match seen.map(|s| covered(&s)) {
                Ok(true) => Ok(()),
                Ok(false) => Err("the snapshot install failed before storing the snapshot"),
                Err(_) => Err("the install gate is gone"),
            },
            _ = self.stop.cancelled() => Err("the channel stopped"),
        }
    }
}

/// Whether `channel` holds a snapshot whose install did not commit (reading one row): its
/// group finishes that install when it opens, fetching the snapshot's missing objects first.
pub fn has_interrupted_install(store: &Store, channel: &str) -> Result<bool, StoreError> {
    store.read_extension(NAMESPACE, |r| {
        let Some(pending) = read_pending_snapshot(r, channel)? else {
            return Ok(false);
        };
        let applied =
            read_channel_row::<StateRow>(r, STATE_TABLE, channel)?.and_then(|s| s.last_applied);
        Ok(pending.last_log_id > applied)
    })
}

/// The state machine of one channel (clones share the store and the apply lock).
#[derive(Debug, Clone)]
pub struct StateMachine {
    store: Arc<Store>,
    channel: Arc<str>,
    /// Held while an entry or snapshot is committed and while a snapshot reads the store, so
    /// a snapshot's pins and applied state come from the same point.
    lock: Arc<std::sync::Mutex<()>>,
    /// Snapshots installed (committed) since this state machine was made.
    installs: Arc<AtomicU64>,
    /// How a pin whose objects the store lacks gets them (none: such a pin fails to apply).
    fetcher: Option<Fetcher>,
    /// The raft id of the leader that last sent this node appends or a snapshot (0: none).
    leader_from: Arc<AtomicU64>,
    /// Told when a snapshot is stored or an install fails (none: nobody waits).
    gate: Option<InstallGate>,
    /// The channel's stop: once cancelled, nothing of this state machine commits (none:
    /// never stops).
    stop: Option<CancellationToken>,
    /// Runs between an apply's or an install's check of the objects and its commit.
    #[cfg(test)]
    before_commit: Option<tests::Hook>,
}

/// Whether a commit was refused because objects it pins are not in the store (a gc deleted
/// them after they were checked: they were here, unreferenced).
fn objects_gone(e: &StoreError) -> bool {
    matches!(e, StoreError::Index(IndexError::MissingObject(_)))
}

fn sm_error(e: &(impl std::error::Error + 'static)) -> StorageError {
    StorageError::from(StorageIOError::new(
        ErrorSubject::StateMachine,
        ErrorVerb::Write,
        AnyError::new(e),
    ))
}

impl StateMachine {
    pub fn new(store: Arc<Store>, channel: &str) -> StateMachine {
        StateMachine {
            store,
            channel: channel.into(),
            lock: Arc::default(),
            installs: Arc::default(),
            fetcher: None,
            leader_from: Arc::default(),
            gate: None,
            stop: None,
            #[cfg(test)]
            before_commit: None,
        }
    }

    /// Tells the gate when `result` is an error: openraft stops the group on any state
    /// machine error, and a purge waiting for an install must not wait on.
    fn note_failure<T>(&self, result: &Result<T, StorageError>) {
        if result.is_err()
            && let Some(gate) = &self.gate
        {
            gate.failed();
        }
    }

    /// Tells `gate` (the log store's too) when a snapshot being installed is stored.
    pub fn with_install_gate(mut self, gate: InstallGate) -> StateMachine {
        self.gate = Some(gate);
        self
    }

    /// Refuses every commit once `stop` (the channel's) is cancelled. openraft's shutdown
    /// does not wait for its state machine worker, which goes on with the commands queued
    /// before it; [`ReplicatedChannel::shutdown`](crate::ReplicatedChannel::shutdown) cancels
    /// `stop`, then takes [`StateMachine::commit_lock`] once, so no commit of this state
    /// machine lands after it returns (a moved replica's cleanup forgets the channel's rows
    /// right after: an apply landing later would write its state and pins again).
    pub fn with_stop(mut self, stop: CancellationToken) -> StateMachine {
        self.stop = Some(stop);
        self
    }

    /// The lock every commit of this state machine holds (see [`StateMachine::with_stop`]).
    pub fn commit_lock(&self) -> Arc<std::sync::Mutex<()>> {
        self.lock.clone()
    }

    /// Takes the commit lock, unless the channel stopped (`Stopped`, about entry `index`).
    fn commit_guard(&self, index: u64) -> Result<std::sync::MutexGuard<'_, ()>, ApplyError> {
        let guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        if self.stop.as_ref().is_some_and(|s| s.is_cancelled()) {
            return Err(ApplyError::Stopped {
                channel: self.channel.to_string(),
                index,
            });
        }
        Ok(guard)
    }

    fn before_commit(&self) {
        #[cfg(test)]
        if let Some(hook) = &self.before_commit {
            (hook.0)();
        }
    }

    /// Where the network records the leader that last sent appends or a snapshot (a pin's or
    /// a snapshot's missing objects are fetched from it first).
    pub fn with_leader_source(mut self, leader_from: Arc<AtomicU64>) -> StateMachine {
        self.leader_from = leader_from;
        self
    }

    /// Makes a pin whose objects the store lacks fetch them from the other members before it
    /// is applied (docs/REPLICATION.md §5) instead of failing with `MissingObjects`.
    pub fn with_fetcher(mut self, fetcher: Fetcher) -> StateMachine {
        self.fetcher = Some(fetcher);
        self
    }

    /// This member's applied index of the channel and whether it pins blob `id`, read under
    /// the commit lock (so at one point between two commits, never across a cleanup that
    /// forgets the channel: that runs after the stop, which this refuses). What
    /// `raft/v1/pinned` answers. Blocking.
    pub(crate) fn pinned_state(&self, id: &Hash) -> Result<PinnedState, ApplyError> {
        let channel = self.channel.to_string();
        let store_err = |source: StoreError| ApplyError::Store {
            channel: channel.clone(),
            source: Box::new(source),
        };
        let _guard = self.commit_guard(0)?;
        let applied = self
            .read_state()
            .map_err(store_err)?
            .last_applied
            .map(|l| l.index);
        let pinned = match self.store.find_pin_in(&channel, &hex(id)) {
            Ok(_) => true,
            Err(StoreError::NotPinned(_) | StoreError::NoSuchChannel(_)) => false,
            // A pin row that does not decode still pins.
            Err(StoreError::PinUndecodable { .. }) => true,
            Err(e) => return Err(store_err(e)),
        };
        Ok(PinnedState { applied, pinned })
    }

    /// The counter of snapshots this state machine installed.
    pub fn installs(&self) -> Arc<AtomicU64> {
        self.installs.clone()
    }

    /// Applies one entry (blocking): the pin change and the applied state in one transaction.
    /// A pin's objects a gc deletes between their check and that commit are fetched (with a
    /// fetcher) as if they had been missing.
    fn apply_one(&self, entry: &Entry, state: &mut StateRow) -> Result<Applied, ApplyError> {
        let channel = self.channel.to_string();
        let store_err = |source: StoreError| ApplyError::Store {
            channel: channel.clone(),
            source: Box::new(source),
        };
        let mut pins = Vec::new();
        let mut unpins = Vec::new();
        let mut ops: Vec<Box<dyn ExtensionOp>> = Vec::new();
        match &entry.payload {
            EntryPayload::Blank => {}
            EntryPayload::Membership(m) => {
                state.membership = StoredMembership::new(Some(entry.log_id), m.clone());
            }
            EntryPayload::Normal(PinOp::Pin { blob_ref, name }) => {
                let decoded = BlobRef::decode(blob_ref).map_err(|e| ApplyError::Corrupted {
                    channel: channel.clone(),
                    what: format!("entry {}", entry.log_id.index),
                    reason: e.to_string(),
                })?;
                let missing = missing_roots(&self.store, &decoded).map_err(store_err)?;
                if !missing.is_empty()
                    && let Some(fetcher) = &self.fetcher
                {
                    state.last_applied = Some(entry.log_id);
                    return self.fetch_and_apply(fetcher, entry, &decoded, name, state);
                }
                if !missing.is_empty() {
                    return Err(ApplyError::MissingObjects {
                        channel,
                        index: entry.log_id.index,
                        missing,
                    });
                }
                ops.push(Box::new(release_op(&channel, vec![blob_id(&decoded)])));
                pins.push((decoded, name.clone()));
            }
            EntryPayload::Normal(PinOp::Unpin { blob_id }) => unpins.push(*blob_id),
        }
        state.last_applied = Some(entry.log_id);
        let guard = self.commit_guard(entry.log_id.index)?;
        ops.push(Box::new(RaftWrite {
            channel: channel.clone(),
            change: Change::Applied {
                state: state.clone(),
                allow_equal: false,
            },
        }));
        self.before_commit();
        let outcome = match self.store.commit_pin_changes(&channel, &pins, &unpins, ops) {
            Ok(outcome) => outcome,
            Err(e) => {
                // A gc took the pin's objects after they were checked: they are fetched like
                // any missing objects (nothing was committed).
                if objects_gone(&e)
                    && let (Some(fetcher), [(blob_ref, name)]) = (&self.fetcher, pins.as_slice())
                {
                    drop(guard);
                    return self.fetch_and_apply(fetcher, entry, blob_ref, name, state);
                }
                return Err(store_err(e));
            }
        };
        Ok(Applied {
            changed: outcome.pins_added > 0 || outcome.pins_removed > 0,
        })
    }

    /// Applies a pin whose objects the store lacks (blocking): fetches them from the other
    /// members (the entry's leader first), each verified and imported children first, and
    /// commits the pin with the applied state `state` in the import's last transaction
    /// ([`StateMachine::fetch_until`]: retried with a backoff until it succeeds or the
    /// channel shuts down; the entry is never skipped and never reported applied before its
    /// pin is committed).
    fn fetch_and_apply(
        &self,
        fetcher: &Fetcher,
        entry: &Entry,
        blob_ref: &BlobRef,
        name: &str,
        state: &StateRow,
    ) -> Result<Applied, ApplyError> {
        let channel = self.channel.to_string();
        // The leader that sent the entry is asked first (the one that proposed a pin held its
        // objects; a later leader sending it on most likely fetched them); then the others.
        let first = self.leader_from.load(Ordering::Relaxed);
        let sources = || fetcher.sources(&state.membership, first);
        let index = entry.log_id.index;
        let fetched = self.fetch_until(fetcher, index, sources, blob_ref, |importer| {
            let store_err = |source: StoreError| ApplyError::Store {
                channel: channel.clone(),
                source: Box::new(source),
            };
            importer
                .pin_in(&channel, blob_ref, name)
                .map_err(store_err)?;
            importer.push_op(Box::new(release_op(&channel, vec![blob_id(blob_ref)])));
            importer.push_op(Box::new(RaftWrite {
                channel: channel.clone(),
                change: Change::Applied {
                    state: state.clone(),
                    allow_equal: false,
                },
            }));
            let _guard = self.commit_guard(entry.log_id.index)?;
            importer.commit().map_err(store_err)
        })?;
        let outcome = match fetched {
            Fetched::Done(outcome) => outcome,
            Fetched::UnpinnedAt(member, applied) => {
                tracing::warn!(
                    channel,
                    index,
                    member = %member,
                    member_applied = applied,
                    "no member gave the pin's objects and one that applied past it unpinned the blob: applied without them"
                );
                let ops: Vec<Box<dyn ExtensionOp>> = vec![
                    Box::new(release_op(&channel, vec![blob_id(blob_ref)])),
                    Box::new(RaftWrite {
                        channel: channel.clone(),
                        change: Change::Applied {
                            state: state.clone(),
                            allow_equal: false,
                        },
                    }),
                ];
                let _guard = self.commit_guard(index)?;
                self.before_commit();
                self.store
                    .commit_ops(ops)
                    .map_err(|source| ApplyError::Store {
                        channel: channel.clone(),
                        source: Box::new(source),
                    })?;
                fetcher.stats.pins_skipped(1);
                return Ok(Applied { changed: false });
            }
        };
        Ok(Applied {
            changed: outcome.pins_added > 0 || outcome.pins_removed > 0,
        })
    }

    /// Brings every object of `blob_ref` this store lacks from one of `sources()` (tried in
    /// order, each with a fresh import) and ends that import with `finish` (which adds what
    /// must commit with the objects and commits). A round in which every member failed is
    /// followed by asking them whether a later committed entry unpinned the blob (which ends
    /// the fetch: [`Fetcher::unpinned_at`], `index` being the entry's or the
    /// snapshot's), then a backoff (doubling from [`FETCH_BACKOFF_MIN`] to
    /// [`FETCH_BACKOFF_MAX`]) and another round, until one succeeds or the channel shuts down
    /// ([`ApplyError::Stopped`]). Blocking.
    fn fetch_until<T>(
        &self,
        fetcher: &Fetcher,
        index: u64,
        sources: impl Fn() -> Vec<NodeAddr>,
        blob_ref: &BlobRef,
        mut finish: impl FnMut(&mut Importer<'_>) -> Result<T, ApplyError>,
    ) -> Result<Fetched<T>, ApplyError> {
        let channel = self.channel.to_string();
        let store_err = |source: StoreError| ApplyError::Store {
            channel: channel.clone(),
            source: Box::new(source),
        };
        let mut backoff = FETCH_BACKOFF_MIN;
        loop {
            if fetcher.stop.is_cancelled() {
                return Err(ApplyError::Stopped { channel, index });
            }
            let sources = sources();
            for source in &sources {
                if fetcher.stop.is_cancelled() {
                    return Err(ApplyError::Stopped { channel, index });
                }
                let mut importer = self.store.importer().map_err(store_err)?;
                if let Err(e) = fetcher.fetch_from(source, &mut importer, blob_ref) {
                    fetcher.stats.source_failed();
                    tracing::warn!(channel, index, source = %source, error = %e, "fetching a pin's objects from a member failed; trying the next");
                    continue;
                }
                let done = finish(&mut importer)?;
                tracing::info!(channel, index, source = %source, "a pin's objects fetched from a member");
                return Ok(Fetched::Done(done));
            }
            fetcher.stats.round_failed();
            if let Some((member, applied)) =
                fetcher.unpinned_at(&sources, &self.channel, &blob_id(blob_ref), index)
            {
                return Ok(Fetched::UnpinnedAt(member, applied));
            }
            tracing::warn!(
                channel,
                index,
                members = sources.len(),
                retry_in = ?backoff,
                "no member gave the pin's objects; waiting"
            );
            let stop = fetcher.stop.clone();
            let wait = backoff;
            fetcher.runtime.block_on(async move {
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
            });
            backoff = backoff.saturating_mul(2).min(FETCH_BACKOFF_MAX);
        }
    }

    fn read_state(&self) -> Result<StateRow, StoreError> {
        let channel = self.channel.clone();
        Ok(self
            .store
            .read_extension(NAMESPACE, |r| {
                read_channel_row::<StateRow>(r, STATE_TABLE, &channel)
            })?
            .unwrap_or_default())
    }

    /// Builds a snapshot of the channel as the store holds it now (blocking).
    fn build(&self) -> Result<Snapshot<TypeConfig>, ApplyError> {
        let channel = self.channel.to_string();
        let store_err = |source: StoreError| ApplyError::Store {
            channel: channel.clone(),
            source: Box::new(source),
        };
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let state = self.read_state().map_err(store_err)?;
        let listing = self.store.pins_in(&channel).map_err(store_err)?;
        let body = SnapshotBody {
            pins: listing
                .pins
                .iter()
                .map(|(_, pin)| SnapshotPin {
                    name: pin.name.clone(),
                    blob_ref: pin.blob_ref.encode(),
                })
                .collect(),
        };
        let bytes = encode_row(&body).map_err(|e| ApplyError::Corrupted {
            channel: channel.clone(),
            what: SNAPSHOT.into(),
            reason: e.to_string(),
        })?;
        if bytes.len() as u64 > MAX_SNAPSHOT_LEN {
            return Err(ApplyError::Corrupted {
                channel,
                what: SNAPSHOT.into(),
                reason: format!(
                    "{} bytes, more than the {MAX_SNAPSHOT_LEN} a snapshot may hold",
                    bytes.len()
                ),
            });
        }
        let snapshot_id = match &state.last_applied {
            Some(l) => format!("{}-{}", l.leader_id.term, l.index),
            None => "empty".to_string(),
        };
        Ok(Snapshot {
            meta: SnapshotMeta {
                last_log_id: state.last_applied,
                last_membership: state.membership,
                snapshot_id,
            },
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }

    /// Replaces the channel's pin set with the snapshot's, and the applied state with its
    /// meta, and purges the log up to it, in one transaction (blocking). First, with a
    /// fetcher, the objects of every pin the store lacks are fetched (the snapshot's sender
    /// first, then the snapshot's other members; retried like an entry's, never skipped),
    /// each pin's in its own import that commits them with a prefetch hold, which the
    /// install's transaction drops. Objects a gc deletes after that (objects that were here,
    /// unreferenced) are fetched again; without a fetcher, pins whose objects are missing
    /// refuse the install whole.
    fn install(&self, meta: &SnapshotMeta<u64, Member>, bytes: &[u8]) -> Result<(), ApplyError> {
        let channel = self.channel.to_string();
        let store_err = |source: StoreError| ApplyError::Store {
            channel: channel.clone(),
            source: Box::new(source),
        };
        let corrupted = |reason: String| ApplyError::Corrupted {
            channel: channel.clone(),
            what: format!("snapshot {}", meta.snapshot_id),
            reason,
        };
        let body: SnapshotBody =
            decode_row(SNAPSHOT, bytes).map_err(|e| corrupted(e.to_string()))?;
        let mut wanted = wanted_pins(body).map_err(corrupted)?;
        let index = meta.last_log_id.map_or(0, |l| l.index);
        // Stored before anything is fetched: openraft may purge the log this snapshot covers
        // as soon as it is (the log store's purge waits for it).
        self.store_snapshot(meta, bytes)?;
        // Commits refused for objects a gc took (each round fetches them again); bounded, so
        // a store whose checks and commits disagree cannot keep this going round unwaited.
        let mut gone_rounds = 0;
        // Pins left out (no member gave their objects, one showed them unpinned later),
        // counted once the install commits.
        let mut skipped_pins = 0u64;
        let (pinned, unpinned) = loop {
            if let Some(fetcher) = &self.fetcher {
                let skipped = self.fetch_snapshot_objects(fetcher, meta, &wanted)?;
                for id in &skipped {
                    wanted.remove(id);
                }
                skipped_pins = skipped_pins.saturating_add(skipped.len() as u64);
            }
            let _guard = self.commit_guard(index)?;
            let prefetched: Vec<Hash> = self
                .store
                .read_extension(NAMESPACE, |r| read_prefetched(r, &channel))
                .map_err(store_err)?
                .into_iter()
                .filter(|id| wanted.contains_key(id))
                .collect();
            let listing = self.store.pins_in(&channel).map_err(store_err)?;
            let present: HashSet<Hash> = listing
                .pins
                .iter()
                .map(|(id, _)| *id)
                .chain(listing.bad.iter().map(|b| b.id))
                .collect();
            let unpins: Vec<Hash> = present
                .iter()
                .filter(|id| !wanted.contains_key(*id))
                .copied()
                .collect();
            let mut pins = Vec::new();
            let mut missing = Vec::new();
            for (id, (r, name)) in &wanted {
                if present.contains(id) {
                    continue;
                }
                missing.extend(missing_roots(&self.store, r).map_err(store_err)?);
                pins.push((r.clone(), name.clone()));
            }
            if !missing.is_empty() && self.fetcher.is_some() {
                // A gc took objects between the fetch above and this check: fetched again.
                continue;
            }
            if !missing.is_empty() {
                return Err(ApplyError::MissingObjects {
                    channel,
                    index,
                    missing,
                });
            }
            let mut ops: Vec<Box<dyn ExtensionOp>> = vec![
                Box::new(release_op(&channel, prefetched)),
                Box::new(RaftWrite {
                    channel: channel.clone(),
                    change: Change::DropPendingSnapshot(meta.last_log_id),
                }),
                Box::new(RaftWrite {
                    channel: channel.clone(),
                    change: Change::Applied {
                        state: StateRow {
                            last_applied: meta.last_log_id,
                            membership: meta.last_membership.clone(),
                        },
                        allow_equal: true,
                    },
                }),
            ];
            // The log the snapshot covers goes with it: openraft's own purge may have run before
            // this install and kept what was not applied then (tables::Change::Purge).
            if let Some(last) = meta.last_log_id {
                ops.push(Box::new(RaftWrite {
                    channel: channel.clone(),
                    change: Change::Purge(last),
                }));
            }
            self.before_commit();
            match self.store.commit_pin_changes(&channel, &pins, &unpins, ops) {
                Ok(_) => break (pins.len(), unpins.len()),
                // A gc took objects after they were checked: they are fetched again.
                Err(e) if objects_gone(&e) && self.fetcher.is_some() && gone_rounds < 3 => {
                    gone_rounds += 1;
                    continue;
                }
                Err(e) => return Err(store_err(e)),
            }
        };
        self.installs.fetch_add(1, Ordering::Relaxed);
        if let Some(fetcher) = &self.fetcher {
            fetcher.stats.pins_skipped(skipped_pins);
        }
        tracing::info!(
            channel,
            snapshot = %meta.snapshot_id,
            bytes = bytes.len(),
            pinned,
            unpinned,
            "snapshot installed"
        );
        Ok(())
    }

    /// Fetches the objects of every pin of a snapshot (`wanted`) that the store lacks, each
    /// pin's in an import that commits them with a prefetch hold (which the install's
    /// transaction drops): the snapshot's sender first, then its other members, retried like
    /// an entry's. Returns the pins left out: no member gave their objects and one that
    /// applied past the snapshot unpinned the blob. Ends when `fetcher`'s stop is cancelled.
    fn fetch_snapshot_objects(
        &self,
        fetcher: &Fetcher,
        meta: &SnapshotMeta<u64, Member>,
        wanted: &BTreeMap<Hash, (BlobRef, String)>,
    ) -> Result<Vec<Hash>, ApplyError> {
        let channel = self.channel.to_string();
        let index = meta.last_log_id.map_or(0, |l| l.index);
        let first = self.leader_from.load(Ordering::Relaxed);
        let sources = || fetcher.sources(&meta.last_membership, first);
        let mut skipped = Vec::new();
        for (id, (r, _)) in wanted {
            if missing_roots(&self.store, r)
                .map_err(|e| self.store_error(e))?
                .is_empty()
            {
                continue;
            }
            let fetched = self.fetch_until(fetcher, index, sources, r, |importer| {
                importer.push_op(Box::new(hold_op(&channel, r)));
                let _guard = self.commit_guard(index)?;
                importer.commit().map_err(|e| self.store_error(e))
            })?;
            if let Fetched::UnpinnedAt(member, applied) = fetched {
                tracing::warn!(
                    channel,
                    snapshot = %meta.snapshot_id,
                    member = %member,
                    member_applied = applied,
                    "no member gave a snapshot pin's objects and one that applied past the snapshot unpinned the blob: installed without it"
                );
                skipped.push(*id);
            }
        }
        Ok(skipped)
    }

    /// Gets a received snapshot ready to install without waiting (blocking): fetches the
    /// objects of its pins that the store lacks ([`StateMachine::fetch_snapshot_objects`]),
    /// until done or until `cancel` (a child of the channel's stop) is cancelled. The network
    /// runs this before it gives openraft the snapshot: openraft answers nothing (no vote, no
    /// append) while an install it queued runs (docs/REPLICATION.md §2). Without a fetcher,
    /// fetches nothing.
    pub(crate) fn fetch_for_install(
        &self,
        meta: &SnapshotMeta<u64, Member>,
        bytes: &[u8],
        cancel: CancellationToken,
    ) -> Result<(), ApplyError> {
        let Some(fetcher) = &self.fetcher else {
            return Ok(());
        };
        let fetcher = Fetcher {
            stop: cancel,
            ..fetcher.clone()
        };
        let body: SnapshotBody = decode_row(SNAPSHOT, bytes)
            .map_err(|e| self.corrupted_snapshot(meta, e.to_string()))?;
        let wanted = wanted_pins(body).map_err(|e| self.corrupted_snapshot(meta, e))?;
        self.fetch_snapshot_objects(&fetcher, meta, &wanted)
            .map(|_| ())
    }

    /// A token cancelled when the channel stops (or when it is cancelled itself).
    pub(crate) fn stop_child(&self) -> CancellationToken {
        self.stop
            .as_ref()
            .map_or_else(CancellationToken::new, CancellationToken::child_token)
    }

    fn corrupted_snapshot(&self, meta: &SnapshotMeta<u64, Member>, reason: String) -> ApplyError {
        ApplyError::Corrupted {
            channel: self.channel.to_string(),
            what: format!("snapshot {}", meta.snapshot_id),
            reason,
        }
    }

    /// Stores a snapshot being installed as pending (`pending_snapshot_v1`) unless the
    /// applied state or a pending snapshot already stored reaches as far, then tells the gate:
    /// from then on a purge of the log it covers need not wait.
    fn store_snapshot(
        &self,
        meta: &SnapshotMeta<u64, Member>,
        bytes: &[u8],
    ) -> Result<(), ApplyError> {
        let index = meta.last_log_id.map_or(0, |l| l.index);
        if meta.last_log_id
            > self
                .read_state()
                .map_err(|e| self.store_error(e))?
                .last_applied
        {
            let pending = PendingSnapshotRow {
                last_log_id: meta.last_log_id,
                membership: meta.last_membership.clone(),
                snapshot_id: meta.snapshot_id.clone(),
                body: bytes.to_vec(),
            };
            let _guard = self.commit_guard(index)?;
            self.store
                .commit_ops(vec![Box::new(RaftWrite {
                    channel: self.channel.to_string(),
                    change: Change::PendingSnapshot(pending),
                })])
                .map_err(|e| self.store_error(e))?;
        }
        if let Some(gate) = &self.gate {
            gate.store_done(index);
        }
        Ok(())
    }

    /// The last log id applied (as stored).
    pub(crate) fn applied_log_id(&self) -> Result<Option<LogId>, StoreError> {
        Ok(self.read_state()?.last_applied)
    }

    fn store_error(&self, source: StoreError) -> ApplyError {
        ApplyError::Store {
            channel: self.channel.to_string(),
            source: Box::new(source),
        }
    }

    /// Finishes the install of a snapshot this member stored and did not install (stopped or
    /// crashed while fetching its objects; openraft may have purged the log it covers), as
    /// the install would have (blocking; with a fetcher, waits for a member to give the
    /// objects until the channel stops). A stored snapshot the applied state has reached is
    /// dropped. Run before the group starts: openraft cannot start a member whose applied
    /// state is behind its purged log. Returns whether an install was finished.
    pub fn finish_interrupted_install(&self) -> Result<bool, ApplyError> {
        let channel = self.channel.to_string();
        let store_err = |source: StoreError| ApplyError::Store {
            channel: channel.clone(),
            source: Box::new(source),
        };
        let pending = self
            .store
            .read_extension(NAMESPACE, |r| read_pending_snapshot(r, &channel))
            .map_err(store_err)?;
        let Some(pending) = pending else {
            return Ok(false);
        };
        let applied = self.read_state().map_err(store_err)?.last_applied;
        if pending.last_log_id <= applied {
            self.store
                .commit_ops(vec![Box::new(RaftWrite {
                    channel: channel.clone(),
                    change: Change::DropPendingSnapshot(applied),
                })])
                .map_err(store_err)?;
            return Ok(false);
        }
        tracing::info!(
            channel,
            snapshot = %pending.snapshot_id,
            "finishing a snapshot install a stop or crash interrupted"
        );
        let meta = SnapshotMeta {
            last_log_id: pending.last_log_id,
            last_membership: pending.membership,
            snapshot_id: pending.snapshot_id,
        };
        self.install(&meta, &pending.body)?;
        Ok(true)
    }
}

/// The objects a pin of `blob_ref` needs that the store lacks: its roots (the chunk of a
/// Small blob, every chunk of a Manifest, the root node of a Tree), one index lookup each.
/// That is the whole blob because the engine indexes a tree node only once every child it
/// lists is indexed (an import refuses a node whose child is missing), so a present root
/// means a present tree. Not checked: bytes that rot in a segment (a verified read finds
/// them) and children `fsck --repair` dropped from under a kept parent.
pub(crate) fn missing_roots(store: &Store, blob_ref: &BlobRef) -> Result<Vec<Hash>, StoreError> {
    let mut missing = Vec::new();
    for root in pin_roots(blob_ref) {
        if !store.has(&root)? {
            missing.push(root);
        }
    }
    Ok(missing)
}

async fn run<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApplyError> + Send + 'static,
) -> Result<T, StorageError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e @ ApplyError::Stopped { .. })) => {
            tracing::debug!(error = %e, "the channel stopped");
            Err(sm_error(&e))
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "replicated channel stops: applying failed");
            Err(sm_error(&e))
        }
        Err(e) => Err(sm_error(&e)),
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let sm = self.clone();
        let built = run(move || sm.build()).await;
        self.note_failure(&built);
        built
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let sm = self.clone();
        let state = blocking(
            move || sm.read_state(),
            ErrorSubject::StateMachine,
            ErrorVerb::Read,
        )
        .await?;
        Ok((state.last_applied, state.membership))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let sm = self.clone();
        let applied = run(move || {
            let mut state = sm.read_state().map_err(|source| ApplyError::Store {
                channel: sm.channel.to_string(),
                source: Box::new(source),
            })?;
            entries
                .iter()
                .map(|entry| sm.apply_one(entry, &mut state))
                .collect()
        })
        .await;
        self.note_failure(&applied);
        applied
    }

    async fn get_snapshot_builder(&mut self) -> StateMachine {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, Member>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let sm = self.clone();
        let meta = meta.clone();
        let bytes = snapshot.into_inner();
        let installed = run(move || sm.install(&meta, &bytes)).await;
        self.note_failure(&installed);
        installed
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let sm = self.clone();
        let built = run(move || sm.build()).await;
        self.note_failure(&built);
        let snapshot = built?;
        Ok(snapshot.meta.last_log_id.is_some().then_some(snapshot))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use net_mesh_engine::{OpenOptions, StoreConfig};
    use net_mesh_rpc::rpc::Config;
    use net_mesh_rpc::rpc::server::Router;
    use net_mesh_rpc::{Endpoint, Identity};
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::fetch::MemberStreams;
    use crate::sessions::Sessions;

    /// A test's code run between a check of the objects and the commit that relies on it.
    #[derive(Clone)]
    pub(super) struct Hook(pub(super) Arc<dyn Fn() + Send + Sync>);

    impl std::fmt::Debug for Hook {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Hook")
        }
    }

    /// A member B serving `data` (stored and pinned in its store) to `reader` over a real
    /// socket on 127.0.0.1, until the token is cancelled.
    async fn serving_member(
        root: &std::path::Path,
        data: &[u8],
        reader: &Identity,
    ) -> Result<(NodeAddr, CancellationToken), Box<dyn std::error::Error>> {
        let options = net_mesh_node::revoke::with_node_tables(
            OpenOptions::new(StoreConfig::default()).extension(crate::extension()),
        );
        let store = Arc::new(Store::open_with(root, options)?);
        store.store(data)?;
        let identity = Identity::from_seed([11; 32]);
        let node = net_mesh_node::Node::new(store, identity.node_id())?;
        let allow = net_mesh_node::Allow::parse(
            identity.node_id(),
            &format!("{} read\n", reader.node_id()),
        )?;
        let endpoint = Endpoint::new(identity.clone(), node.router(allow), Config::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = NodeAddr {
            node_id: identity.node_id(),
            host_port: listener.local_addr()?.to_string(),
        };
        let stop = CancellationToken::new();
        let serving = stop.clone();
        tokio::spawn(async move { endpoint.serve(listener, serving).await });
        Ok((addr, stop))
    }

    /// A's side: its store, the blob whose objects it holds unreferenced, its state machine
    /// of `c`, the objects its gc hook freed so far, and the fetcher's stop.
    struct Unreferenced {
        store: Arc<Store>,
        blob_ref: BlobRef,
        sm: StateMachine,
        freed: Arc<AtomicU64>,
        stop: CancellationToken,
    }

    /// A's store holding `data`'s objects unreferenced (stored, then unpinned) and a channel
    /// `c`; A's state machine of `c` fetching from the members it is told of, whose hook
    /// runs a gc (grace 0) before every commit.
    fn unreferenced_here(
        root: &std::path::Path,
        data: &[u8],
        identity: Identity,
    ) -> Result<Unreferenced, Box<dyn std::error::Error>> {
        let options = OpenOptions::new(StoreConfig::default()).extension(crate::extension());
        let store = Arc::new(Store::open_with(root, options)?);
        store.create_channel("c")?;
        let blob_ref = store.store(data)?.blob_ref;
        store.unpin(&blob_id(&blob_ref))?;
        assert!(missing_roots(&store, &blob_ref)?.is_empty());
        let stop = CancellationToken::new();
        let fetcher = fetching_as(identity, &stop);
        let freed = Arc::new(AtomicU64::new(0));
        let mut sm = StateMachine::new(store.clone(), "c").with_fetcher(fetcher);
        let (gc_store, gc_freed) = (store.clone(), freed.clone());
        sm.before_commit = Some(Hook(Arc::new(move || {
            let options = net_mesh_engine::GcOptions {
                grace: Duration::ZERO,
                dry_run: false,
                compact_threshold: 0.0,
            };
            if let Ok(report) = gc_store.gc(&options) {
                gc_freed.fetch_add(report.objects_freed, Ordering::Relaxed);
            }
        })));
        Ok(Unreferenced {
            store,
            blob_ref,
            sm,
            freed,
            stop,
        })
    }

    /// The gc freed objects, and `c` holds exactly `blob_ref`'s pin, its objects all here.
    fn pinned_after_a_gc(
        store: &Store,
        blob_ref: &BlobRef,
        freed: &AtomicU64,
    ) -> Result<(), Box<dyn std::error::Error>> {
        assert!(freed.load(Ordering::Relaxed) > 0, "the gc freed nothing");
        let pinned: Vec<Hash> = store.pins_in("c")?.pins.iter().map(|(id, _)| *id).collect();
        assert_eq!(pinned, [blob_id(blob_ref)]);
        assert!(missing_roots(store, blob_ref)?.is_empty());
        Ok(())
    }

    fn membership_of(b: &NodeAddr) -> StoredMembership {
        let id = crate::raft_id(&b.node_id);
        let membership = openraft::Membership::new(
            vec![std::collections::BTreeSet::from([id])],
            BTreeMap::from([(id, Member::from_addr(b))]),
        );
        StoredMembership::new(None, membership)
    }

    /// A pin whose objects were here (unreferenced) when the apply checked them, and which a
    /// gc deletes before the apply's commit, is applied all the same: the refused commit
    /// changes nothing and the objects are fetched from a member, as if they had been missing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pin_whose_objects_a_gc_deletes_after_the_check_is_fetched_and_applied()
    -> Result<(), Box<dyn std::error::Error>> {
        let (a_dir, b_dir) = (tempfile::tempdir()?, tempfile::tempdir()?);
        let data = b"a blob unpinned here long ago, pinned again by the log".repeat(500);
        let a = Identity::from_seed([10; 32]);
        let (b, stop_b) = serving_member(b_dir.path(), &data, &a).await?;
        let Unreferenced {
            store,
            blob_ref,
            sm,
            freed,
            stop,
        } = unreferenced_here(a_dir.path(), &data, a)?;
        let entry = Entry {
            log_id: LogId::new(openraft::CommittedLeaderId::new(1, 1), 1),
            payload: EntryPayload::Normal(PinOp::Pin {
                blob_ref: blob_ref.encode(),
                name: "p".into(),
            }),
        };
        let mut state = StateRow {
            last_applied: None,
            membership: membership_of(&b),
        };
        let applied = tokio::task::spawn_blocking(move || sm.apply_one(&entry, &mut state)).await?;
        assert!(applied.is_ok(), "{applied:?}");
        pinned_after_a_gc(&store, &blob_ref, &freed)?;
        stop.cancel();
        stop_b.cancel();
        Ok(())
    }

    /// The same for a snapshot install: its check found the pin's objects here, a gc
    /// deleted them before its commit; the install fetches them and commits, holding none.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_install_whose_objects_a_gc_deletes_after_the_check_fetches_them()
    -> Result<(), Box<dyn std::error::Error>> {
        let (a_dir, b_dir) = (tempfile::tempdir()?, tempfile::tempdir()?);
        let data = b"a blob unpinned here long ago, in a snapshot now".repeat(500);
        let a = Identity::from_seed([10; 32]);
        let (b, stop_b) = serving_member(b_dir.path(), &data, &a).await?;
        let Unreferenced {
            store,
            blob_ref,
            sm,
            freed,
            stop,
        } = unreferenced_here(a_dir.path(), &data, a)?;
        let meta = SnapshotMeta {
            last_log_id: Some(LogId::new(openraft::CommittedLeaderId::new(1, 1), 4)),
            last_membership: membership_of(&b),
            snapshot_id: "1-4".into(),
        };
        let body = encode_row(&SnapshotBody {
            pins: vec![SnapshotPin {
                name: "p".into(),
                blob_ref: blob_ref.encode(),
            }],
        })?;
        let installed = tokio::task::spawn_blocking(move || sm.install(&meta, &body)).await?;
        assert!(installed.is_ok(), "{installed:?}");
        pinned_after_a_gc(&store, &blob_ref, &freed)?;
        let held = store.read_extension(NAMESPACE, |r| read_prefetched(r, "c"))?;
        assert!(held.is_empty(), "holds left: {held:?}");
        stop.cancel();
        stop_b.cancel();
        Ok(())
    }

    /// A snapshot whose pin's objects no member can give (its membership names no other
    /// node) waits round after round; once the channel stops, the install ends `Stopped`
    /// instead of going round forever without waiting.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_install_with_no_member_to_fetch_from_ends_when_the_channel_stops()
    -> Result<(), Box<dyn std::error::Error>> {
        let root = tempfile::tempdir()?;
        let store = store_with_channel_c(root.path())?;
        let missing = stored_elsewhere(b"a blob no member holds")?;
        let stop = CancellationToken::new();
        let fetcher = fetching_as(Identity::from_seed([7; 32]), &stop);
        let stats = fetcher.stats();
        let sm = StateMachine::new(store, "c").with_fetcher(fetcher);
        let meta = SnapshotMeta {
            last_log_id: Some(LogId::new(openraft::CommittedLeaderId::new(1, 1), 4)),
            last_membership: StoredMembership::default(),
            snapshot_id: "1-4".into(),
        };
        let body = encode_row(&SnapshotBody {
            pins: vec![SnapshotPin {
                name: "p".into(),
                blob_ref: missing.encode(),
            }],
        })?;
        let install = tokio::task::spawn_blocking(move || sm.install(&meta, &body));
        while stats.counts().rounds_failed < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.cancel();
        // A bound on the test, not a timed assertion: the install ends at its next check.
        let ended = tokio::time::timeout(Duration::from_secs(30), install).await;
        assert!(
            matches!(ended, Ok(Ok(Err(ApplyError::Stopped { .. })))),
            "the install did not end Stopped: {ended:?}"
        );
        Ok(())
    }

    /// A purge waiting for an install's stored snapshot ends with an error as soon as the
    /// state machine fails (here an apply whose pin's objects the store lacks and no fetcher
    /// can get: openraft stops the group then), not only when the channel stops.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_purge_waiting_for_an_install_ends_when_the_state_machine_fails()
    -> Result<(), Box<dyn std::error::Error>> {
        use openraft::storage::RaftLogStorage;

        let root = tempfile::tempdir()?;
        let store = store_with_channel_c(root.path())?;
        let missing = stored_elsewhere(b"a blob this store never had")?;
        // Never cancelled while the purge waits: only the failure may end it.
        let stop = CancellationToken::new();
        let gate = InstallGate::new(stop.clone());
        let mut sm = StateMachine::new(store.clone(), "c").with_install_gate(gate.clone());
        let mut log = crate::log_store::LogStore::new(store.clone(), "c").with_install_gate(gate);
        let upto = LogId::new(openraft::CommittedLeaderId::new(1, 1), 4);
        let mut purge = tokio::spawn(async move { log.purge(upto).await });
        // A bound on a wait that must not end, not a timing figure: nothing failed yet.
        let early = tokio::time::timeout(Duration::from_millis(300), &mut purge).await;
        assert!(early.is_err(), "the purge ran early: {early:?}");
        let entry = Entry {
            log_id: LogId::new(openraft::CommittedLeaderId::new(1, 1), 1),
            payload: EntryPayload::Normal(PinOp::Pin {
                blob_ref: missing.encode(),
                name: "p".into(),
            }),
        };
        let applied = sm.apply([entry]).await;
        assert!(applied.is_err(), "applied without the objects");
        // A bound on the test, not a timed assertion.
        let purged = tokio::time::timeout(Duration::from_secs(30), purge).await;
        assert!(
            matches!(purged, Ok(Ok(Err(_)))),
            "the purge did not end with an error: {purged:?}"
        );
        let log_meta = store.read_extension(NAMESPACE, |r| {
            read_channel_row::<crate::tables::LogMetaRow>(r, crate::tables::LOG_META_TABLE, "c")
        })?;
        assert_eq!(log_meta.and_then(|m| m.last_purged), None, "purged anyway");
        stop.cancel();
        Ok(())
    }

    /// Once the channel's stop is cancelled the state machine commits nothing: openraft's
    /// shutdown leaves its worker applying the commands queued before, and a moved replica's
    /// cleanup forgets the channel's rows right after the shutdown. An apply that was
    /// committing meanwhile ends before the commit lock is free.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stopped_state_machine_commits_nothing() -> Result<(), Box<dyn std::error::Error>> {
        let root = tempfile::tempdir()?;
        let store = store_with_channel_c(root.path())?;
        let first = store
            .store(b"a blob pinned while the channel runs")?
            .blob_ref;
        let later = store
            .store(b"a blob an entry queued before the stop pins")?
            .blob_ref;
        let pin = |index: u64, r: &BlobRef| Entry {
            log_id: LogId::new(openraft::CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(PinOp::Pin {
                blob_ref: r.encode(),
                name: format!("p{index}"),
            }),
        };
        let stop = CancellationToken::new();
        let (entered_tx, entered) = std::sync::mpsc::channel::<()>();
        let (release, release_rx) = std::sync::mpsc::channel::<()>();
        let release_rx = std::sync::Mutex::new(release_rx);
        let entered_tx = std::sync::Mutex::new(entered_tx);
        let mut sm = StateMachine::new(store.clone(), "c").with_stop(stop.clone());
        sm.before_commit = Some(tests::Hook(Arc::new(move || {
            let _ = entered_tx
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .send(());
            let _ = release_rx
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .recv_timeout(Duration::from_secs(30));
        })));
        let mut applying = sm.clone();
        let first_entry = pin(1, &first);
        let running = tokio::spawn(async move { applying.apply([first_entry]).await });
        tokio::task::spawn_blocking(move || entered.recv_timeout(Duration::from_secs(30)))
            .await??;
        // The shutdown: cancel, then wait for the commit lock.
        stop.cancel();
        let lock = sm.commit_lock();
        let mut waited = tokio::task::spawn_blocking(move || drop(lock.lock()));
        // A bound on a wait that must not end, not a timing figure: the commit is held.
        let early = tokio::time::timeout(Duration::from_millis(300), &mut waited).await;
        assert!(early.is_err(), "the lock was free during a commit");
        release.send(())?;
        tokio::time::timeout(Duration::from_secs(30), waited).await??;
        assert!(running.await?.is_ok(), "the apply already committing ended");
        assert_eq!(stored_applied_index(&store), Some(1));

        // An entry queued before the stop, applied after it: refused, nothing written.
        release.send(())?;
        let refused = sm.apply([pin(2, &later)]).await;
        assert!(refused.is_err(), "applied after the stop");
        assert_eq!(stored_applied_index(&store), Some(1));
        assert_eq!(store.pins_in("c")?.pins.len(), 1);
        Ok(())
    }

    fn stored_applied_index(store: &Store) -> Option<u64> {
        crate::channel::stored_applied(store, "c")
            .ok()
            .flatten()
            .map(|(_, index)| index)
    }

    /// A store in `dir` with the replication extension and channel `c`.
    fn store_with_channel_c(
        dir: &std::path::Path,
    ) -> Result<Arc<Store>, Box<dyn std::error::Error>> {
        let options = OpenOptions::new(StoreConfig::default()).extension(crate::extension());
        let store = Arc::new(Store::open_with(dir, options)?);
        store.create_channel("c")?;
        Ok(store)
    }

    /// The ref of `bytes` stored in another store (its objects are in no test store).
    fn stored_elsewhere(bytes: &[u8]) -> Result<BlobRef, Box<dyn std::error::Error>> {
        let elsewhere = tempfile::tempdir()?;
        Ok(Store::open(elsewhere.path(), StoreConfig::default())?
            .store(bytes)?
            .blob_ref)
    }

    /// A's fetcher: its sessions as `identity`, stopped by `stop`.
    fn fetching_as(identity: Identity, stop: &CancellationToken) -> Fetcher {
        Fetcher::new(
            Sessions::new(Endpoint::new(identity, Router::new(), Config::default())),
            Arc::new(MemberStreams::new(1)),
            tokio::runtime::Handle::current(),
            stop.clone(),
        )
    }

    /// openraft's purge behind a snapshot install (queued without waiting for it) waits until
    /// the install has stored the snapshot; a member stopped while it fetches the snapshot's
    /// objects then has its log purged and its applied state behind it, and finishes the
    /// install from the stored snapshot when it opens again: pins, applied state, no
    /// snapshot left pending.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_purge_behind_an_install_waits_for_the_stored_snapshot_that_a_reopen_installs()
    -> Result<(), Box<dyn std::error::Error>> {
        use openraft::storage::RaftLogStorage;

        let (a_dir, b_dir) = (tempfile::tempdir()?, tempfile::tempdir()?);
        let data = b"a blob the snapshot pins, on member B only".repeat(500);
        let a = Identity::from_seed([10; 32]);
        let (b, stop_b) = serving_member(b_dir.path(), &data, &a).await?;
        let blob_ref = {
            let elsewhere = tempfile::tempdir()?;
            Store::open(elsewhere.path(), StoreConfig::default())?
                .store(&data)?
                .blob_ref
        };
        let options = || OpenOptions::new(StoreConfig::default()).extension(crate::extension());
        let store = Arc::new(Store::open_with(a_dir.path(), options())?);
        store.create_channel("c")?;
        let last = LogId::new(openraft::CommittedLeaderId::new(1, 1), 4);
        let meta = SnapshotMeta {
            last_log_id: Some(last),
            last_membership: membership_of(&b),
            snapshot_id: "1-4".into(),
        };
        let body = encode_row(&SnapshotBody {
            pins: vec![SnapshotPin {
                name: "p".into(),
                blob_ref: blob_ref.encode(),
            }],
        })?;

        // A fetches as an identity B refuses: the install keeps waiting for the objects.
        let stop = CancellationToken::new();
        let fetcher = fetching_as(Identity::from_seed([12; 32]), &stop);
        let stats = fetcher.stats();
        let gate = InstallGate::new(stop.clone());
        let mut sm = StateMachine::new(store.clone(), "c")
            .with_fetcher(fetcher)
            .with_install_gate(gate.clone());
        let mut log = crate::log_store::LogStore::new(store.clone(), "c").with_install_gate(gate);
        let mut purge = tokio::spawn(async move { log.purge(last).await });
        // A bound on a wait that must not end, not a timing figure: nothing is stored yet.
        let early = tokio::time::timeout(Duration::from_millis(300), &mut purge).await;
        assert!(
            early.is_err(),
            "the purge ran before the snapshot was stored: {early:?}"
        );
        let install = tokio::spawn(async move {
            sm.install_snapshot(&meta, Box::new(Cursor::new(body)))
                .await
        });
        tokio::time::timeout(Duration::from_secs(30), &mut purge).await???;
        while stats.counts().rounds_failed < 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let pending = store.read_extension(NAMESPACE, |r| read_pending_snapshot(r, "c"))?;
        assert_eq!(pending.map(|p| p.last_log_id), Some(Some(last)));
        assert_eq!(
            store
                .read_extension(NAMESPACE, |r| {
                    read_channel_row::<crate::tables::LogMetaRow>(
                        r,
                        crate::tables::LOG_META_TABLE,
                        "c",
                    )
                })?
                .and_then(|m| m.last_purged),
            Some(last)
        );
        assert!(has_interrupted_install(&store, "c")?);
        stop.cancel();
        let stopped = tokio::time::timeout(Duration::from_secs(30), install).await?;
        assert!(
            stopped?.is_err(),
            "the install finished without the objects"
        );
        assert!(store.pins_in("c")?.pins.is_empty());
        drop(store);

        // Opened again, with a fetcher B serves.
        let store = Arc::new(Store::open_with(a_dir.path(), options())?);
        assert!(has_interrupted_install(&store, "c")?);
        let stop = CancellationToken::new();
        let sm = StateMachine::new(store.clone(), "c").with_fetcher(fetching_as(a, &stop));
        let finished = tokio::task::spawn_blocking(move || sm.finish_interrupted_install()).await?;
        assert!(matches!(finished, Ok(true)), "{finished:?}");
        let pinned: Vec<Hash> = store.pins_in("c")?.pins.iter().map(|(id, _)| *id).collect();
        assert_eq!(pinned, [blob_id(&blob_ref)]);
        let applied = store
            .read_extension(NAMESPACE, |r| {
                read_channel_row::<StateRow>(r, STATE_TABLE, "c")
            })?
            .and_then(|s| s.last_applied);
        assert_eq!(applied, Some(last));
        let pending = store.read_extension(NAMESPACE, |r| read_pending_snapshot(r, "c"))?;
        assert_eq!(pending, None, "the install left its snapshot pending");
        assert!(!has_interrupted_install(&store, "c")?);
        stop.cancel();
        stop_b.cancel();
        Ok(())
    }

    /// A member that crashed while it installed its first snapshot (a joining target) holds
    /// nothing of the group but that snapshot: its channel still counts as replicated here,
    /// so it opens at start and finishes the install.
    #[test]
    fn a_store_holding_only_a_received_snapshot_holds_the_channel_state()
    -> Result<(), Box<dyn std::error::Error>> {
        let root = tempfile::tempdir()?;
        let options = OpenOptions::new(StoreConfig::default()).extension(crate::extension());
        let store = Store::open_with(root.path(), options)?;
        store.create_channel("c")?;
        assert!(!store.read_extension(NAMESPACE, |r| crate::tables::holds_state(r, "c"))?);
        let body = encode_row(&SnapshotBody::default())?;
        let pending = |index: u64, id: &str| -> Result<(), StoreError> {
            let row = PendingSnapshotRow {
                last_log_id: Some(LogId::new(openraft::CommittedLeaderId::new(1, 1), index)),
                membership: StoredMembership::default(),
                snapshot_id: id.to_string(),
                body: body.clone(),
            };
            store.commit_ops(vec![Box::new(RaftWrite {
                channel: "c".into(),
                change: Change::PendingSnapshot(row),
            })])?;
            Ok(())
        };
        let stored = || -> Result<Option<String>, StoreError> {
            Ok(store
                .read_extension(NAMESPACE, |r| read_pending_snapshot(r, "c"))?
                .map(|p| p.snapshot_id))
        };
        pending(4, "1-4")?;
        assert!(store.read_extension(NAMESPACE, |r| crate::tables::holds_state(r, "c"))?);
        assert!(has_interrupted_install(&store, "c")?);
        // A snapshot reaching less far (or as far) never replaces the stored one: the log it
        // covers may be purged already.
        pending(3, "1-3")?;
        pending(4, "another 1-4")?;
        assert_eq!(stored()?.as_deref(), Some("1-4"));
        // An install of an older snapshot (a second open's, late) leaves the newer one.
        let drop_upto = |index| -> Result<(), StoreError> {
            store.commit_ops(vec![Box::new(RaftWrite {
                channel: "c".into(),
                change: Change::DropPendingSnapshot(Some(LogId::new(
                    openraft::CommittedLeaderId::new(1, 1),
                    index,
                ))),
            })])?;
            Ok(())
        };
        drop_upto(3)?;
        assert!(has_interrupted_install(&store, "c")?);
        drop_upto(4)?;
        assert!(!store.read_extension(NAMESPACE, |r| crate::tables::holds_state(r, "c"))?);
        Ok(())
    }
}
