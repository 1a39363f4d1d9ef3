//! Starting the node's replicated channels from its store, opening again a group that stopped
//! on an error or an interrupted install, and stopping them all.

use super::*;

/// The first wait before a failed group is opened again ([`NodeReplicas::restart_failed`]).
const FAILURE_WAIT_MIN: Duration = Duration::from_secs(1);
/// The longest wait before a failed group is opened again.
const FAILURE_WAIT_MAX: Duration = Duration::from_secs(60);
/// A group that ran this long before failing starts again from [`FAILURE_WAIT_MIN`].
const FAILURE_QUIET: Duration = Duration::from_secs(600);

impl NodeReplicas {
    pub(super) async fn start_channels(&self, endpoint: &Endpoint) -> NodeResult<()> {
        let _ = self.endpoint.set(endpoint.clone());
        let names: Vec<String> = self
            .replicated
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        for name in names {
            let interrupted = {
                let store = self.store.clone();
                let ch = name.clone();
                tokio::task::spawn_blocking(move || {
                    crate::state_machine::has_interrupted_install(&store, &ch)
                })
                .await
                .map_err(|e| NodeError::new(ErrorClass::Io, e.to_string()))?
                .map_err(|e| node_error(&e))?
            };
            if interrupted {
                // Its open waits for a member to give the snapshot's objects: in the
                // background, so the node serves (and its other channels run) meanwhile.
                tracing::info!(
                    channel = name,
                    "a snapshot install was interrupted: finishing it before the channel runs"
                );
                self.open_in_background(
                    name,
                    endpoint.clone(),
                    Reopen::Install,
                    Duration::ZERO,
                    None,
                );
                continue;
            }
            let opened = ReplicatedChannel::open(
                &self.replication,
                self.store.clone(),
                &name,
                endpoint.clone(),
                &self.config,
            )
            .await;
            match opened {
                Ok(opened) => {
                    tracing::info!(channel = name, "replicated channel started");
                    self.run(opened).await?;
                }
                // One channel that cannot open (a damaged row, a store error) does not keep
                // the node or its other channels from running: it is retried meanwhile.
                Err(e) => {
                    tracing::error!(channel = name, error = %e, "opening the replicated channel: retrying in the background");
                    let why = Reopen::Failed(e.to_string());
                    self.open_in_background(name, endpoint.clone(), why, FAILURE_WAIT_MIN, None);
                }
            }
        }
        Ok(())
    }

    /// Opens `channel` (which finishes an interrupted snapshot install first) and runs it,
    /// in a task of its own, after `first_wait` ([`NodeReplicas::open_until_it_runs`]).
    /// Meanwhile calls for the channel are refused as busy, saying `why`.
    ///
    /// `failed`: the failed group the channel ran (still registered) when it is opened
    /// again after a failure; none when it does not run here yet.
    fn open_in_background(
        &self,
        channel: String,
        endpoint: Endpoint,
        why: Reopen,
        first_wait: Duration,
        failed: Option<Arc<ReplicatedChannel>>,
    ) {
        let Some(me) = self.me.upgrade() else {
            return;
        };
        self.reopening
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(channel.clone(), why);
        tokio::spawn(async move {
            tokio::select! {
                _ = me.stop.cancelled() => me.done_reopening(&channel),
                _ = tokio::time::sleep(first_wait) => {
                    me.open_until_it_runs(&channel, &endpoint, failed).await;
                }
            }
        });
    }

    fn done_reopening(&self, channel: &str) {
        self.reopening
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(channel);
    }

    /// Watches a channel this node runs: when its group stops on an error while nobody
    /// stopped it ([`ReplicatedChannel::failed`]), [`NodeReplicas::restart_failed`]. Holds
    /// the node's replicas only weakly.
    pub(super) fn watch_for_failure(&self, channel: Arc<ReplicatedChannel>) {
        let me = self.me.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let Some(why) = channel.failed().await else {
                return;
            };
            if let Some(me) = me.upgrade() {
                me.restart_failed(channel, why, started.elapsed()).await;
            }
        });
    }

    /// A channel's group stopped on an error (openraft stops a group on any storage or
    /// state machine error: a store that could not write or read, a row that does not
    /// decode, an install that failed): it is stopped, and unless the node stops, opened
    /// again in the background from what its store holds. It stays registered (running,
    /// attached to the moves, so a move's cleanup finds and stops it) but is refused as busy
    /// until then. The first open waits 1 s, doubling to 60 s while each reopened group fails
    /// again within 10 minutes (an error that persists, e.g. a damaged row, is retried, and
    /// logged each time).
    async fn restart_failed(&self, channel: Arc<ReplicatedChannel>, why: String, ran: Duration) {
        let name = channel.channel().to_string();
        let ours = self
            .running
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&name)
            .is_some_and(|c| Arc::ptr_eq(c, &channel))
            && self.moves.is_attached(&name)
            && !self.stop.is_cancelled();
        if !ours {
            return;
        }
        let wait = {
            let mut waits = self.failure_waits.lock().unwrap_or_else(|p| p.into_inner());
            let wait = match waits.get(&name) {
                Some(&last) if ran < FAILURE_QUIET => last.saturating_mul(2).min(FAILURE_WAIT_MAX),
                _ => FAILURE_WAIT_MIN,
            };
            waits.insert(name.clone(), wait);
            wait
        };
        tracing::error!(channel = name, error = why, open_in = ?wait, "the channel's group stopped on an error: opening it again");
        let Some(endpoint) = self.endpoint.get().cloned() else {
            return;
        };
        let failed = Some(Arc::clone(&channel));
        self.open_in_background(name, endpoint, Reopen::Failed(why), wait, failed);
        if let Err(e) = channel.shutdown().await {
            tracing::debug!(channel = channel.channel(), error = %e, "stopping the failed group");
        }
    }

    /// [`NodeReplicas::open_in_background`]'s task: opens and runs `channel`, retrying with
    /// a backoff (1 s doubling to 60 s), until it runs here (by this open, or by another one:
    /// a move's join, a create), its replica moved away, it has no state to open, or the node
    /// stops. Opening a failed group again, each attempt holds the channel's move lock, so a
    /// move's cleanup of this node's copy runs wholly before it (the channel is then left
    /// moved away) or after (and stops the group this open started); not while finishing an
    /// interrupted install, which may wait long for objects. Ends the channel's `reopening`
    /// entry on every way out.
    async fn open_until_it_runs(
        &self,
        channel: &str,
        endpoint: &Endpoint,
        failed: Option<Arc<ReplicatedChannel>>,
    ) {
        let mut wait = Duration::from_secs(1);
        loop {
            let held = match &failed {
                Some(_) => Some(self.moves.lock(channel).lock_owned().await),
                None => None,
            };
            let current = self
                .running
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(channel)
                .cloned();
            let replaced = match (&current, &failed) {
                (None, None) => false,
                (Some(c), Some(f)) => !Arc::ptr_eq(c, f),
                _ => true,
            };
            if replaced {
                tracing::debug!(channel, "another open runs the channel");
                self.done_reopening(channel);
                return;
            }
            if failed.is_some() && !self.moves.is_attached(channel) {
                tracing::info!(
                    channel,
                    "the channel's replica moved away: not opened again"
                );
                self.done_reopening(channel);
                return;
            }
            let opened = ReplicatedChannel::open(
                &self.replication,
                self.store.clone(),
                channel,
                endpoint.clone(),
                &self.config,
            )
            .await;
            if self.stop.is_cancelled() {
                tracing::info!(channel, "the node stops before the channel ran");
                if let Ok(opened) = opened {
                    let _ = opened.shutdown().await;
                }
                self.done_reopening(channel);
                return;
            }
            match opened {
                Ok(opened) => {
                    // Before `run` starts watching the new group, so that its own failure's
                    // entry is never the one removed here.
                    self.done_reopening(channel);
                    match self.run(opened).await {
                        Ok(()) => tracing::info!(channel, "replicated channel started"),
                        Err(e) => tracing::info!(channel, error = %e, "not started"),
                    }
                    return;
                }
                Err(ReplicationError::NotReplicated(_)) => {
                    tracing::error!(
                        channel,
                        "the channel holds no replication state here: not opened again"
                    );
                    if let Some(f) = &failed {
                        let mut running = self.running.write().unwrap_or_else(|p| p.into_inner());
                        if running.get(channel).is_some_and(|c| Arc::ptr_eq(c, f)) {
                            running.remove(channel);
                            self.moves.detach(channel);
                        }
                    }
                    self.done_reopening(channel);
                    return;
                }
                // Another open runs it: the next round sees whether it did.
                Err(ReplicationError::AlreadyOpen(_)) => {
                    tracing::debug!(channel, "opened by another call meanwhile")
                }
                Err(e) => {
                    tracing::warn!(channel, error = %e, retry_in = ?wait, "opening the replicated channel")
                }
            }
            drop(held);
            tokio::select! {
                _ = self.stop.cancelled() => {
                    self.done_reopening(channel);
                    return;
                }
                _ = tokio::time::sleep(wait) => {}
            }
            wait = wait.saturating_mul(2).min(Duration::from_secs(60));
        }
    }

    pub(super) async fn stop_channels(&self) -> NodeResult<()> {
        self.stop.cancel();
        self.replication.shut_down();
        let running: Vec<Arc<ReplicatedChannel>> = self
            .running
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, c)| c)
            .collect();
        for channel in running {
            self.moves.detach(channel.channel());
            if let Err(e) = channel.shutdown().await {
                tracing::warn!(channel = channel.channel(), error = %e, "stopping");
            }
        }
        Ok(())
    }
}

/// What a node's store says of its channels when it starts (one read of the store).
#[derive(Debug, Default)]
pub(super) struct StoredChannels {
    /// Channels holding replication state: opened at start.
    pub(super) replicated: HashSet<String>,
    /// Channels whose copy a move removed, and how (this node the source of a cleaned-up
    /// move, or the target of an abandoned one).
    pub(super) moved: HashMap<String, MovePhase>,
    /// Channels this node joined as a move's target without receiving any of the group's
    /// state before it stopped: move id by channel.
    pub(super) joining: HashMap<String, u64>,
}

pub(super) fn stored_channels(
    store: &Store,
    own: NodeId,
) -> Result<StoredChannels, ReplicationError> {
    let names: Vec<String> = store
        .channels()
        .map_err(|e| ReplicationError::Raft(e.to_string()))?
        .into_iter()
        .map(|c| c.name)
        .collect();
    Ok(store.read_extension(NAMESPACE, |r| {
        let mut found = StoredChannels::default();
        for name in names {
            if crate::tables::holds_state(r, &name)? {
                found.replicated.insert(name);
                continue;
            }
            match crate::tables::read_move(r, &name)? {
                Some(m) if m.phase == MovePhase::CleanedUp && m.from.node_id == *own.as_bytes() => {
                    found.moved.insert(name, MovePhase::CleanedUp);
                }
                // A target that abandoned its move removed its copy, as a cleaned-up source.
                Some(m) if m.phase == MovePhase::Abandoned && m.to.node_id == *own.as_bytes() => {
                    found.moved.insert(name, MovePhase::Abandoned);
                }
                // A target's row stays `Bound`; one without state never received any.
                Some(m)
                    if m.phase != MovePhase::CleanedUp
                        && m.phase != MovePhase::Abandoned
                        && m.to.node_id == *own.as_bytes() =>
                {
                    found.joining.insert(name, m.id);
                }
                _ => {}
            }
        }
        Ok(found)
    })?)
}
