//! openraft's state machine for one channel: the channel's pin set in the store, and the
//! applied state (last applied log id, membership) in `ext.raft.state_v1`.
//!
//! Applying an entry commits its pin change and the new applied state in ONE engine
//! transaction, so after any crash the pins and `last_applied` agree: an entry is either
//! applied and recorded, or neither. A snapshot is built from the store (the channel's pins
//! and the applied state, read under the same lock that applying takes), never kept apart.
//! Snapshots (building, installing, the purge gate) are in `snapshot.rs`.

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

mod snapshot;
#[cfg(test)]
mod tests;

pub(crate) use snapshot::wanted_pins;
pub use snapshot::{InstallGate, SnapshotBody, SnapshotPin, has_interrupted_install};

/// Table name used in error reports of snapshot bodies.
pub(crate) const SNAPSHOT: &str = "snapshot";

/// How a fetch ended: the objects came (and `finish` ran), or no member gave them and this
/// member (which applied this far) showed that a later committed entry unpinned the blob
/// ([`PinnedState::unpinned_after`]).
enum Fetched<T> {
    Done(T),
    UnpinnedAt(NodeAddr, u64),
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

    /// A token cancelled when the channel stops (or when it is cancelled itself).
    pub(crate) fn stop_child(&self) -> CancellationToken {
        self.stop
            .as_ref()
            .map_or_else(CancellationToken::new, CancellationToken::child_token)
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
