//! Snapshots of a channel's state machine: the body (its pins), building one from the store,
//! installing one (fetching the objects it pins first, storing it before it commits), the
//! gate the log store's purge waits on, and finishing an install a stop cut off.

use super::*;

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

    pub(super) fn failed(&self) {
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

impl StateMachine {
    /// Builds a snapshot of the channel as the store holds it now (blocking).
    pub(super) fn build(&self) -> Result<Snapshot<TypeConfig>, ApplyError> {
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
    pub(super) fn install(
        &self,
        meta: &SnapshotMeta<u64, Member>,
        bytes: &[u8],
    ) -> Result<(), ApplyError> {
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
    pub(super) fn fetch_snapshot_objects(
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

    pub(super) fn corrupted_snapshot(
        &self,
        meta: &SnapshotMeta<u64, Member>,
        reason: String,
    ) -> ApplyError {
        ApplyError::Corrupted {
            channel: self.channel.to_string(),
            what: format!("snapshot {}", meta.snapshot_id),
            reason,
        }
    }

    /// Stores a snapshot being installed as pending (`pending_snapshot_v1`) unless the
    /// applied state or a pending snapshot already stored reaches as far, then tells the gate:
    /// from then on a purge of the log it covers need not wait.
    pub(super) fn store_snapshot(
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
