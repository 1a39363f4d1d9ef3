//! Making a pin's objects durable on a quorum before it is proposed (docs/REPLICATION.md §5).
//!
//! The leader, before proposing a pin, holds the blob's roots in its own store and asks every
//! other voter to prefetch it (`raft/v1/prefetch`, one blob ref per call). A voter's handler
//! fetches what its store lacks from the caller with the apply-time walk ([`Fetcher`]:
//! verified, children first), and commits the objects together with a hold on the blob's roots
//! (`ext.raft.prefetch_v1`) in the import's last transaction: it answers only once the bytes
//! are durable and held. The hold lasts until the pin is applied in that channel (the apply
//! transaction drops it) or [`PREFETCH_HOLD`] passes (GC's stale-hold release drops it), so GC
//! cannot remove the objects in between. The leader proposes once a majority of every voter
//! configuration (itself included) holds the bytes, else [`ProposeError::NotDurable`].
//!
//! Bounds: one blob ref per call (its encoding at most [`MAX_OP_LEN`]); at most
//! [`MAX_PREFETCHES_PER_CHANNEL`] prefetches running per channel on a voter (more are refused
//! with `ResourceExhausted` and counted), and as many asked at once by a leader (further
//! proposals wait for a slot); every call bounded by `ReplicationConfig::prefetch_timeout`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use net_mesh_engine::codec::Hash;
use net_mesh_engine::index::{blob_id, pin_roots};
use net_mesh_engine::{BlobRef, Classify, ErrorClass, Store, StoreError};
use net_mesh_node::NodeError;
use net_mesh_node::call_token::encode_metadata;
use net_mesh_rpc::NodeAddr;
use net_mesh_rpc::rpc::client::CallOptions;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::channel::ReplicatedChannel;
use crate::error::ProposeError;
use crate::fetch::{FetchCounts, FetchStats, Fetcher};
use crate::network::{METHOD_PREFETCH, Reply};
use crate::tables::{Change, NAMESPACE, PREFETCH_TABLE, PrefetchRow, RaftWrite, decode_row};
use crate::types::{MAX_OP_LEN, Member};

/// Prefetches one channel runs at once on a voter (and asks at once as a leader).
pub const MAX_PREFETCHES_PER_CHANNEL: usize = 4;
/// How long prefetched objects stay held when their pin is never applied here.
pub const PREFETCH_HOLD: Duration = Duration::from_secs(10 * 60);

/// `raft/v1/prefetch` request: the `BlobRef` wire bytes (docs/FORMAT.md §2.6) of the blob to
/// hold; the channel is named by the call metadata, like every `raft/v1/*` call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrefetchRequest {
    pub blob_ref: Vec<u8>,
}

/// `raft/v1/prefetch` answer: the blob's objects are durable and held on the callee; how many
/// it had to fetch for that (0 when it held them already).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prefetched {
    pub objects: u64,
    pub bytes: u64,
}

/// The op that holds `blob_ref`'s roots for a pin in `channel` not applied yet (see the module
/// docs); an upload into a replicated channel commits it in its last transaction.
pub fn hold_op(channel: &str, blob_ref: &BlobRef) -> RaftWrite {
    RaftWrite {
        channel: channel.to_string(),
        change: Change::PrefetchHold {
            blob_id: blob_id(blob_ref),
            roots: pin_roots(blob_ref),
            hold_ms: u64::try_from(PREFETCH_HOLD.as_millis()).unwrap_or(u64::MAX),
        },
    }
}

/// Whether `channel` already holds `blob_ref` here with at least half of [`PREFETCH_HOLD`]
/// left (an upload into a replicated channel finishes held, in its last transaction): then
/// the leader proposing its pin need not commit the hold again. A hold row holds its roots in
/// the engine, so the objects are there.
fn held_here(store: &Store, channel: &str, blob_ref: &BlobRef) -> Result<bool, StoreError> {
    let id = blob_id(blob_ref);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let half = u64::try_from(PREFETCH_HOLD.as_millis() / 2).unwrap_or(u64::MAX);
    store.read_extension(NAMESPACE, |r| {
        let Some(t) = r.open_table::<(&str, &[u8]), &[u8]>(PREFETCH_TABLE)? else {
            return Ok(false);
        };
        let Some(v) = t.get((channel, id.as_slice()))? else {
            return Ok(false);
        };
        let row: PrefetchRow = decode_row(PREFETCH_TABLE, v.value())?;
        Ok(row.expires_unix_ms >= now.saturating_add(half))
    })
}

/// The op that drops the prefetch holds of these blobs (their pins are applied).
pub(crate) fn release_op(channel: &str, blob_ids: Vec<Hash>) -> RaftWrite {
    RaftWrite {
        channel: channel.to_string(),
        change: Change::ReleasePrefetch(blob_ids),
    }
}

/// A channel's side of `raft/v1/prefetch` on this node: its store, a fetcher (with its own
/// counters) and the slots that bound concurrent prefetches.
#[derive(Debug)]
pub(crate) struct PrefetchServer {
    pub(crate) store: Arc<Store>,
    pub(crate) channel: String,
    pub(crate) fetcher: Fetcher,
    pub(crate) slots: Arc<Semaphore>,
}

impl PrefetchServer {
    pub(crate) fn new(store: Arc<Store>, channel: &str, fetcher: Fetcher) -> PrefetchServer {
        PrefetchServer {
            store,
            channel: channel.to_string(),
            fetcher,
            slots: Arc::new(Semaphore::new(MAX_PREFETCHES_PER_CHANNEL)),
        }
    }

    pub(crate) fn stats(&self) -> Arc<FetchStats> {
        self.fetcher.stats()
    }

    /// Fetches what the store lacks of `blob_ref` from `source` and commits it with a hold on
    /// the blob's roots, in one transaction, durable when it returns (blocking).
    pub(crate) fn prefetch(
        &self,
        source: &NodeAddr,
        blob_ref: &BlobRef,
    ) -> Result<Prefetched, NodeError> {
        let store_error =
            |e: &dyn std::fmt::Display| NodeError::new(ErrorClass::Io, format!("this store: {e}"));
        let before = self.fetcher.stats.counts();
        let mut importer = self.store.importer().map_err(|e| store_error(&e))?;
        if let Err(e) = self.fetcher.fetch_from(source, &mut importer, blob_ref) {
            self.fetcher.stats.source_failed();
            return Err(e);
        }
        importer.push_op(Box::new(hold_op(&self.channel, blob_ref)));
        importer.commit().map_err(|e| store_error(&e))?;
        let after = self.fetcher.stats.counts();
        Ok(Prefetched {
            objects: after.objects.saturating_sub(before.objects),
            bytes: after.bytes.saturating_sub(before.bytes),
        })
    }
}

/// What one voter answered to the leader's prefetch request.
struct Answer {
    raft_id: u64,
    held: bool,
}

impl ReplicatedChannel {
    /// Makes `blob_ref`'s objects durable on a majority of every voter configuration before
    /// it is proposed: holds them here, then asks the other voters to prefetch them, and
    /// returns once enough voters answered that they hold them (those still fetching go on in
    /// the background). [`ProposeError::NotDurable`] when every voter answered (or its call
    /// timed out) and there are still too few.
    pub(crate) async fn make_durable(&self, blob_ref: &BlobRef) -> Result<(), ProposeError> {
        let _slot = self
            .prefetch_slots
            .acquire()
            .await
            .map_err(|e| self.stopped(e))?;
        // This node's own hold (refused if the objects went meanwhile), unless the upload
        // already committed it.
        let store = self.store.clone();
        let op = hold_op(&self.channel, blob_ref);
        let (channel, wanted) = (self.channel.clone(), blob_ref.clone());
        tokio::task::spawn_blocking(move || {
            if held_here(&store, &channel, &wanted)? {
                return Ok(());
            }
            store.commit_ops(vec![Box::new(op)]).map(|_| ())
        })
        .await
        .map_err(|e| self.stopped(e))?
        .map_err(|e| match e.class() {
            ErrorClass::Refused | ErrorClass::NotFound => ProposeError::MissingObjects {
                channel: self.channel.clone(),
                missing: pin_roots(blob_ref),
            },
            _ => self.stopped(e),
        })?;

        let metrics = self.raft.metrics().borrow().clone();
        let own = metrics.id;
        let membership = metrics.membership_config.membership().clone();
        let configs: Vec<BTreeSet<u64>> = membership.get_joint_config().clone();
        let voters: BTreeSet<u64> = configs.iter().flatten().copied().collect();
        let mut holders: BTreeSet<u64> = BTreeSet::from([own]);
        let needed = configs.iter().map(|c| c.len() / 2 + 1).max().unwrap_or(1);
        let durable = |holders: &BTreeSet<u64>| {
            configs
                .iter()
                .all(|c| c.iter().filter(|id| holders.contains(id)).count() * 2 > c.len())
        };
        if durable(&holders) {
            return Ok(());
        }
        let request = PrefetchRequest {
            blob_ref: blob_ref.encode(),
        };
        if request.blob_ref.len() > MAX_OP_LEN {
            return Err(ProposeError::Usage(format!(
                "a blob ref of {} bytes is over the {MAX_OP_LEN} a channel's log takes",
                request.blob_ref.len()
            )));
        }
        let metadata = encode_metadata(&self.channel, &[]);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Answer>(voters.len().max(1));
        let mut asked = 0usize;
        for id in voters.iter().filter(|id| **id != own) {
            let Some(addr) = membership.get_node(id).and_then(Member::addr) else {
                continue;
            };
            asked = asked.saturating_add(1);
            let sessions = self.sessions.clone();
            let request = request.clone();
            let metadata = metadata.clone();
            let timeout = self.prefetch_timeout;
            let tx = tx.clone();
            let channel = self.channel.clone();
            let raft_id = *id;
            tokio::spawn(async move {
                let call = async {
                    let held = sessions
                        .get(&addr)
                        .await
                        .map_err(|e| format!("dial {addr}: {e}"))?;
                    let opts = CallOptions::with_timeout(timeout).metadata(metadata);
                    let answer = held
                        .session
                        .call_unary::<PrefetchRequest, Reply<Prefetched>>(
                            METHOD_PREFETCH,
                            &request,
                            opts,
                        )
                        .await;
                    if answer.is_err() {
                        sessions.call_failed(&addr, &held);
                    }
                    match answer {
                        Ok(Reply::Ok(p)) => Ok(p),
                        Ok(Reply::Stopped(why)) => Err(format!("{addr}: stopped: {why}")),
                        Ok(Reply::SnapshotMismatch(_)) => Err(format!("{addr}: unexpected answer")),
                        Err(e) => Err(format!("{addr}: {e}")),
                    }
                };
                let held = match tokio::time::timeout(timeout, call).await {
                    Ok(Ok(p)) => {
                        tracing::debug!(channel, member = %addr, objects = p.objects, bytes = p.bytes, "prefetched");
                        true
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(channel, error = %e, "a voter did not prefetch");
                        false
                    }
                    Err(_) => {
                        tracing::warn!(channel, member = %addr, "a voter did not prefetch in {timeout:?}");
                        false
                    }
                };
                let _ = tx.send(Answer { raft_id, held }).await;
            });
        }
        drop(tx);
        let mut answered = 0usize;
        while let Some(answer) = rx.recv().await {
            answered = answered.saturating_add(1);
            if answer.held {
                holders.insert(answer.raft_id);
                if durable(&holders) {
                    return Ok(());
                }
            }
            if answered >= asked {
                break;
            }
        }
        Err(ProposeError::NotDurable {
            channel: self.channel.clone(),
            holders: holders.iter().filter(|id| voters.contains(id)).count(),
            needed,
        })
    }

    /// Objects this node prefetched for other members' proposals, and the failures.
    pub(crate) fn prefetch_counts(&self) -> FetchCounts {
        self.prefetched.counts()
    }
}
