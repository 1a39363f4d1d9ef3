//! Fetching a pin's objects from other members before the pin is applied
//! (docs/REPLICATION.md §5).
//!
//! A member that must apply a pin whose objects its store lacks asks the other members for
//! them over authenticated sessions dialed pinned to their node ids (the storage node's
//! `node/v1/objects` call, which every member serves to the others with read on it): first the
//! member that led the term the entry was written in (it held the objects when it proposed),
//! then the others. The walk goes down from the pin's roots and imports children before
//! parents, as the engine's [`Importer`] requires: objects the store has are skipped with their
//! whole subtree (an indexed node's subtree is complete) and held by the importer; missing ones
//! are asked for in calls of at most [`CHUNKS_PER_CALL`] chunks or [`NODE_BATCH`] nodes. Every
//! object is verified against its id before it is stored; a tree node is decoded for its
//! children and kept until its subtree is in. Memory: one object being received plus at most
//! [`NODE_BATCH`] nodes per tree level, whatever the blob's size. The importer holds what it
//! found and stored until its last commit, which carries the pin and the applied state.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use net_mesh_engine::class::short_hex;
use net_mesh_engine::codec::Hash;
use net_mesh_engine::index::pin_roots;
use net_mesh_engine::write::children_of;
use net_mesh_engine::{BlobRef, ErrorClass, Importer, ObjectKind};
use net_mesh_node::{NodeClient, NodeError};
use net_mesh_rpc::{Endpoint, NodeAddr, NodeId};
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use crate::types::{Member, StoredMembership};

/// Most chunks asked for in one `objects` call (the node's own limit is 1024).
pub const CHUNKS_PER_CALL: usize = 256;
/// Most tree nodes asked for in one call (each is kept until its subtree is in).
pub const NODE_BATCH: usize = 16;
/// How long dialing a member may take.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a member's object stream may bring nothing before that member is given up on.
pub const SILENCE_TIMEOUT: Duration = Duration::from_secs(30);
/// The first wait after every member failed; it doubles up to [`FETCH_BACKOFF_MAX`].
pub const FETCH_BACKOFF_MIN: Duration = Duration::from_millis(100);
/// The longest wait between two rounds over the members.
pub const FETCH_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Counters of the objects this node fetched for a channel's pins.
#[derive(Debug, Default)]
pub struct FetchStats {
    objects: AtomicU64,
    bytes: AtomicU64,
    source_failures: AtomicU64,
    rounds_failed: AtomicU64,
}

/// [`FetchStats`] read at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FetchCounts {
    /// Objects received, verified and stored.
    pub objects: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Attempts at one member that failed: unreachable, refused, lacking an object, or
    /// sending bytes that do not verify (nothing of such an object is stored).
    pub source_failures: u64,
    /// Rounds in which every other member failed (followed by a backoff and another round).
    pub rounds_failed: u64,
}

impl FetchStats {
    pub fn counts(&self) -> FetchCounts {
        FetchCounts {
            objects: self.objects.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            source_failures: self.source_failures.load(Ordering::Relaxed),
            rounds_failed: self.rounds_failed.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn source_failed(&self) {
        self.source_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn round_failed(&self) {
        self.rounds_failed.fetch_add(1, Ordering::Relaxed);
    }
}

/// What a state machine needs to fetch: the endpoint it dials with, its own node id, the
/// runtime the sessions live on, and the token that stops it (the channel's shutdown).
#[derive(Debug, Clone)]
pub struct Fetcher {
    pub(crate) endpoint: Endpoint,
    pub(crate) own: NodeId,
    pub(crate) runtime: Handle,
    pub(crate) stop: CancellationToken,
    pub(crate) stats: Arc<FetchStats>,
}

impl Fetcher {
    pub fn new(endpoint: Endpoint, runtime: Handle, stop: CancellationToken) -> Fetcher {
        Fetcher {
            own: endpoint.identity().node_id(),
            endpoint,
            runtime,
            stop,
            stats: Arc::default(),
        }
    }

    pub fn stats(&self) -> Arc<FetchStats> {
        self.stats.clone()
    }

    /// The members to fetch from, in order: the one with raft id `first` (the leader that
    /// wrote the entry), then the others of `membership` in raft id order; never this node.
    pub(crate) fn sources(&self, membership: &StoredMembership, first: u64) -> Vec<NodeAddr> {
        let nodes: Vec<(&u64, &Member)> = membership.membership().nodes().collect();
        let leader = nodes.iter().filter(|(id, _)| **id == first);
        let others = nodes.iter().filter(|(id, _)| **id != first);
        leader
            .chain(others)
            .filter_map(|(_, m)| m.addr())
            .filter(|a| a.node_id != self.own)
            .collect()
    }

    /// Dials `source` pinned to its node id and brings every object of `blob_ref` that the
    /// store lacks into `importer` (verified, children first). Blocking: runs on a blocking
    /// thread. Any failure is the source's (or the stop's); the caller tries another member.
    pub(crate) fn fetch_from(
        &self,
        source: &NodeAddr,
        importer: &mut Importer<'_>,
        blob_ref: &BlobRef,
    ) -> Result<(), NodeError> {
        let session = self.runtime.block_on(async {
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => Err(stopped()),
                dialed = tokio::time::timeout(DIAL_TIMEOUT, self.endpoint.connect_node(source)) => {
                    match dialed {
                        Err(_) => Err(NodeError::new(ErrorClass::Io, format!("dialing {source}: no answer in {DIAL_TIMEOUT:?}"))),
                        Ok(Err(e)) => Err(NodeError::new(ErrorClass::Io, format!("dialing {source}: {e}"))),
                        Ok(Ok(s)) => Ok(s),
                    }
                }
            }
        })?;
        let client = NodeClient::from_session(session).with_silence_timeout(SILENCE_TIMEOUT);
        let mut walk = Walk {
            fetcher: self,
            client: &client,
            importer,
        };
        walk.fetch(roots(blob_ref))
    }
}

pub(crate) fn stopped() -> NodeError {
    NodeError::new(ErrorClass::Busy, "the channel is shutting down")
}

fn integrity(message: String) -> NodeError {
    NodeError::new(ErrorClass::Integrity, message)
}

fn store_error(e: &impl std::fmt::Display, class: ErrorClass) -> NodeError {
    NodeError::new(class, format!("this store: {e}"))
}

/// The objects a ref names directly, with their kinds.
fn roots(blob_ref: &BlobRef) -> Vec<(Hash, ObjectKind)> {
    let kind = match blob_ref {
        BlobRef::Tree { depth: 1, .. } => ObjectKind::LeafNode,
        BlobRef::Tree { .. } => ObjectKind::InternalNode,
        _ => ObjectKind::Chunk,
    };
    pin_roots(blob_ref).into_iter().map(|h| (h, kind)).collect()
}

/// A tree node received and verified, waiting for its subtree.
struct Received {
    hash: Hash,
    kind: ObjectKind,
    bytes: Vec<u8>,
    children: Vec<(Hash, ObjectKind)>,
}

struct Walk<'a, 'i, 's> {
    fetcher: &'a Fetcher,
    client: &'a NodeClient,
    importer: &'i mut Importer<'s>,
}

impl Walk<'_, '_, '_> {
    fn check_stop(&self) -> Result<(), NodeError> {
        if self.fetcher.stop.is_cancelled() {
            return Err(stopped());
        }
        Ok(())
    }

    fn has(&mut self, hash: &Hash) -> Result<bool, NodeError> {
        self.importer
            .has(hash)
            .map_err(|e| store_error(&e, ErrorClass::Io))
    }

    fn import(&mut self, kind: ObjectKind, hash: &Hash, bytes: &[u8]) -> Result<(), NodeError> {
        self.importer
            .import(kind, hash, bytes)
            .map(|_| ())
            .map_err(|e| integrity(format!("importing {}: {e}", short_hex(hash))))
    }

    /// Brings every object of `wanted` (and everything under it) into the store.
    fn fetch(&mut self, wanted: Vec<(Hash, ObjectKind)>) -> Result<(), NodeError> {
        let mut chunks = Vec::new();
        let mut nodes = Vec::new();
        let mut seen = HashSet::with_capacity(wanted.len());
        for (hash, kind) in wanted {
            if !seen.insert(hash) || self.has(&hash)? {
                continue;
            }
            if kind == ObjectKind::Chunk {
                chunks.push((hash, kind));
            } else {
                nodes.push((hash, kind));
            }
        }
        for batch in chunks.chunks(CHUNKS_PER_CALL) {
            self.fetch_batch(batch, &mut Vec::new())?;
        }
        for batch in nodes.chunks(NODE_BATCH) {
            let mut received = Vec::with_capacity(batch.len());
            self.fetch_batch(batch, &mut received)?;
            for node in received {
                self.fetch(node.children)?;
                self.import(node.kind, &node.hash, &node.bytes)?;
            }
        }
        Ok(())
    }

    /// Asks the source for `batch` in one call; stores each chunk (verified) as it arrives and
    /// puts each node (verified, decoded) in `nodes`.
    fn fetch_batch(
        &mut self,
        batch: &[(Hash, ObjectKind)],
        nodes: &mut Vec<Received>,
    ) -> Result<(), NodeError> {
        self.check_stop()?;
        let hashes: Vec<Hash> = batch.iter().map(|(h, _)| *h).collect();
        let stream = self
            .client
            .objects_blocking(&self.fetcher.runtime, &hashes)?
            .stop_on(self.fetcher.stop.clone());
        for (hash, kind) in batch {
            self.check_stop()?;
            let Some((got, got_kind, answer)) = stream.next_object()? else {
                return Err(integrity("the member's object stream ended early".into()));
            };
            if got != *hash {
                return Err(integrity(
                    "the member sent another object than asked for".into(),
                ));
            }
            let bytes = answer.map_err(|reason| {
                integrity(format!(
                    "the member lacks object {}: {reason}",
                    short_hex(hash)
                ))
            })?;
            if got_kind != *kind as u8 {
                return Err(integrity(format!(
                    "the member sent object {} as kind {got_kind}",
                    short_hex(hash)
                )));
            }
            // Verified against its id here (children_of checks it first), before anything
            // of it is stored or kept.
            let children = children_of(*kind, hash, &bytes)
                .map_err(|e| integrity(format!("the member's object: {e}")))?;
            self.fetcher.stats.objects.fetch_add(1, Ordering::Relaxed);
            self.fetcher
                .stats
                .bytes
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
            if *kind == ObjectKind::Chunk {
                self.import(*kind, hash, &bytes)?;
            } else {
                nodes.push(Received {
                    hash: *hash,
                    kind: *kind,
                    bytes,
                    children,
                });
            }
        }
        stream.finish()
    }
}
