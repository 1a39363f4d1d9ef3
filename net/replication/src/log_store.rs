//! openraft's log storage for one channel: the vote, the log and its bounds in the `raft`
//! extension tables. Every write is one engine transaction, durable when it returns (so a
//! vote is on disk before it is answered, and an append before its callback runs). The
//! committed log id is kept in memory only: openraft reads it back at start to re-apply
//! faster, and needs it on disk only when applies are not durable by themselves; ours are
//! (docs/REPLICATION.md §2), so the fsync it would cost on every commit is saved.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use net_mesh_engine::{ExtensionOp, Store, StoreError};
use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{AnyError, ErrorSubject, ErrorVerb, OptionalSend, StorageIOError, Vote};

use crate::state_machine::InstallGate;
use crate::tables::{
    Change, LOG_META_TABLE, LOG_TABLE, LogMetaRow, NAMESPACE, RaftWrite, STATE_TABLE, StateRow,
    VOTE_TABLE, VoteRow, decode_row, encode_row, read_channel_row, read_last_log, read_log_range,
};
use crate::types::{Entry, LogId, StorageError, TypeConfig};

/// Runs blocking store work off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
    subject: ErrorSubject<u64>,
    verb: ErrorVerb,
) -> Result<T, StorageError> {
    let io = |e: AnyError| StorageError::from(StorageIOError::new(subject.clone(), verb, e));
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(io(AnyError::new(&e))),
        Err(e) => Err(io(AnyError::new(&e))),
    }
}

/// The log storage of one channel (cheap to clone; clones share the store and the committed
/// log id).
#[derive(Debug, Clone)]
pub struct LogStore {
    store: Arc<Store>,
    channel: Arc<str>,
    /// The last committed log id openraft saved since this store was made.
    committed: Arc<std::sync::Mutex<Option<LogId>>>,
    /// Where the state machine tells which snapshot it has stored before installing it (none:
    /// purges never wait, e.g. a test driving the store by hand).
    gate: Option<InstallGate>,
}

impl LogStore {
    pub fn new(store: Arc<Store>, channel: &str) -> LogStore {
        LogStore {
            store,
            channel: channel.into(),
            committed: Arc::default(),
            gate: None,
        }
    }

    /// Makes a purge past the applied state wait until the state machine has stored the
    /// snapshot that covers it ([`InstallGate`]); give the state machine the same gate.
    pub fn with_install_gate(mut self, gate: InstallGate) -> LogStore {
        self.gate = Some(gate);
        self
    }

    /// The channel's last applied log index (none: nothing applied).
    async fn applied_index(&self) -> Result<Option<u64>, StorageError> {
        let store = self.store.clone();
        let channel = self.channel.clone();
        let state = blocking(
            move || {
                store.read_extension(NAMESPACE, |r| {
                    read_channel_row::<StateRow>(r, STATE_TABLE, &channel)
                })
            },
            ErrorSubject::StateMachine,
            ErrorVerb::Read,
        )
        .await?;
        Ok(state.and_then(|s| s.last_applied).map(|l| l.index))
    }

    fn committed(&self) -> std::sync::MutexGuard<'_, Option<LogId>> {
        self.committed.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn write(&self, change: Change, subject: ErrorSubject<u64>) -> Result<(), StorageError> {
        let store = self.store.clone();
        let op: Box<dyn ExtensionOp> = Box::new(RaftWrite {
            channel: self.channel.to_string(),
            change,
        });
        blocking(
            move || store.commit_ops(vec![op]).map(|_| ()),
            subject,
            ErrorVerb::Write,
        )
        .await
    }
}

pub(crate) fn decode_entry(bytes: &[u8]) -> Result<Entry, net_mesh_engine::ExtensionError> {
    decode_row(LOG_TABLE, bytes)
}

fn bounds(range: &impl RangeBounds<u64>) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.saturating_add(1),
        Bound::Excluded(&e) => e,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let (start, end) = bounds(&range);
        let store = self.store.clone();
        let channel = self.channel.clone();
        blocking(
            move || {
                store.read_extension(NAMESPACE, |r| {
                    read_log_range(r, &channel, start, end)?
                        .iter()
                        .map(|(_, v)| decode_entry(v))
                        .collect()
                })
            },
            ErrorSubject::Logs,
            ErrorVerb::Read,
        )
        .await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let store = self.store.clone();
        let channel = self.channel.clone();
        let (meta, last) = blocking(
            move || {
                store.read_extension(NAMESPACE, |r| {
                    let meta = read_channel_row::<LogMetaRow>(r, LOG_META_TABLE, &channel)?
                        .unwrap_or_default();
                    let last = match read_last_log(r, &channel)? {
                        Some((_, v)) => Some(decode_entry(&v)?.log_id),
                        None => None,
                    };
                    Ok((meta, last))
                })
            },
            ErrorSubject::Logs,
            ErrorVerb::Read,
        )
        .await?;
        Ok(LogState {
            last_purged_log_id: meta.last_purged,
            last_log_id: last.or(meta.last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> LogStore {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError> {
        self.write(Change::Vote(VoteRow { vote: *vote }), ErrorSubject::Vote)
            .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError> {
        let store = self.store.clone();
        let channel = self.channel.clone();
        let row = blocking(
            move || {
                store.read_extension(NAMESPACE, |r| {
                    read_channel_row::<VoteRow>(r, VOTE_TABLE, &channel)
                })
            },
            ErrorSubject::Vote,
            ErrorVerb::Read,
        )
        .await?;
        Ok(row.map(|r| r.vote))
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        *self.committed() = committed;
        Ok(())
    }

    /// The committed log id saved since this store was made (none after a restart).
    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(*self.committed())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut rows = Vec::new();
        for entry in entries {
            let bytes = encode_row(&entry).map_err(|e| {
                StorageError::from(StorageIOError::write_log_entry(
                    entry.log_id,
                    AnyError::new(&e),
                ))
            })?;
            rows.push((entry.log_id.index, bytes));
        }
        let result = self.write(Change::Append(rows), ErrorSubject::Logs).await;
        // The transaction is durable once `write` returns: report it either way.
        callback.log_io_completed(
            result
                .as_ref()
                .map(|_| ())
                .map_err(|e| std::io::Error::other(e.to_string())),
        );
        result
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.write(Change::Truncate(log_id.index), ErrorSubject::Logs)
            .await
    }

    /// Purges up to `log_id`. Past the applied state (openraft's purge behind a snapshot
    /// install, queued without waiting for it), first waits until the state machine has
    /// stored that snapshot (`pending_snapshot_v1`): a member stopped before the install
    /// commits then finishes it when it opens again, instead of starting with entries it never
    /// applied purged (docs/REPLICATION.md §2).
    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        if let Some(gate) = &self.gate
            && self.applied_index().await?.is_none_or(|a| a < log_id.index)
        {
            gate.stored(log_id.index).await.map_err(|why| {
                StorageError::from(StorageIOError::write_logs(AnyError::error(format!(
                    "channel {}: purge up to {}: {why}",
                    self.channel, log_id.index
                ))))
            })?;
        }
        self.write(Change::Purge(log_id), ErrorSubject::Logs).await
    }
}
