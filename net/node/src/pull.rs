//! Fetching a blob from another node, only the objects this store lacks: node-to-node pull
//! ([`pull`], which then pins the blob) and the walk itself ([`fetch_blob`], which replication
//! uses to bring in a pin's objects before applying it). Runs on a blocking thread.
//!
//! The walk goes down from the ref's roots and imports children before parents, as the
//! engine's importer requires (a node is indexed only when everything it lists is): objects the
//! store has are skipped with their whole subtree (an indexed node's subtree is complete) and
//! held until the import ends; missing ones are asked for in calls of at most
//! [`MAX_OBJECTS_PER_CALL`] chunks or [`NODE_BATCH`] nodes. Every object is verified against
//! its id before anything of it is stored or kept; a chunk is stored as it arrives; a node is
//! decoded for its children, kept until its subtree is in, then stored. Each internal node
//! must sit at the level its place calls for (the ref's depth less one at the root, one less
//! than its parent below) — also one the store already has, or this walk brought in at another
//! place — so the walk is at most [`MAX_DEPTH`] levels deep whatever the source sends (a chain
//! of nodes that do not descend would otherwise recurse until the stack overflows) and no
//! tree whose levels do not descend is ever stored by a walk. Memory holds one object being
//! received plus at most [`NODE_BATCH`] nodes per level, and once the nodes kept reach
//! [`HELD_NODE_BYTES`] the walk asks for one node per call: at most that plus one node per
//! level (≤ 2.6 MB each), whatever the blob's size or the source's tree. Any object that does
//! not verify, that sits at the wrong level, or that the source lacks, fails the walk (an
//! integrity error; a source without the blob at all, not found, unless the source's `stat` of
//! the ref fails otherwise, e.g. it pins the blob but lost its root: then that failure; a
//! source that lacks an object after it gave others and whose `stat` then finds the blob
//! absent, not found too: it was removed and collected there during the pull) before anything
//! is pinned; what was stored unpinned is left to GC. A source that sends nothing for the
//! client's silence timeout (an object stream, or its answer to that `stat`) fails the walk
//! (io). Failures the source reports are named as its.

use std::collections::{HashMap, HashSet};

use net_mesh_engine::class::short_hex;
use net_mesh_engine::codec::{Hash, MAX_DEPTH};
use net_mesh_engine::write::Verified;
use net_mesh_engine::{BlobError, BlobRef, ErrorClass, Importer, ObjectKind, Store};
use serde_bytes::ByteBuf;
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use crate::bandwidth::LiveStream;
use crate::client::NodeClient;
use crate::config::MAX_OBJECTS_PER_CALL;
use crate::error::{Classified, NodeError, NodeResult};
use crate::proto::{BlobSpec, MAX_PIECE, PullDone};
use crate::service::PinAt;

/// Most tree nodes asked for in one call (each is kept until its subtree is in).
pub const NODE_BATCH: usize = 16;

/// Bytes of received tree nodes a walk keeps before it asks for one node per call.
pub const HELD_NODE_BYTES: usize = 32 << 20;

/// The level of the internal nodes among a ref's roots (a Tree's root; 0 when there are none).
fn root_level(blob_ref: &BlobRef) -> u8 {
    match blob_ref {
        BlobRef::Tree { depth, .. } => depth.saturating_sub(1),
        _ => 0,
    }
}

/// The objects a ref names directly: its chunks (Small, Manifest) or its root node (Tree).
fn roots(blob_ref: &BlobRef) -> Vec<(Hash, ObjectKind)> {
    let kind = match blob_ref {
        BlobRef::Tree { depth: 1, .. } => ObjectKind::LeafNode,
        BlobRef::Tree { .. } => ObjectKind::InternalNode,
        _ => ObjectKind::Chunk,
    };
    net_mesh_engine::index::pin_roots(blob_ref)
        .into_iter()
        .map(|h| (h, kind))
        .collect()
}

fn stopped() -> NodeError {
    NodeError::new(
        ErrorClass::Busy,
        "the fetch was stopped (its call ended or the node is shutting down)",
    )
}

/// Most bytes of a source's own words (a `Missing` part's reason) quoted in an error.
pub const MAX_QUOTED_REASON: usize = 256;

/// `reason` cut to at most [`MAX_QUOTED_REASON`] bytes (at a character boundary): a source
/// may send a reason as long as a frame, which an error (logged on every retry of a replica's
/// fetch) must not carry whole.
fn clipped(reason: &str) -> String {
    if reason.len() <= MAX_QUOTED_REASON {
        return reason.to_string();
    }
    let mut end = MAX_QUOTED_REASON;
    while !reason.is_char_boundary(end) {
        end = end.saturating_sub(1);
    }
    format!(
        "{}… ({} bytes)",
        reason.get(..end).unwrap_or_default(),
        reason.len()
    )
}

fn integrity(message: String) -> NodeError {
    NodeError::new(ErrorClass::Integrity, message)
}

/// Fetches `blob_ref` from `client`'s node into `store` and pins it at `pin` (holds it, on a
/// replicated channel: the caller proposes the pin); stops (busy)
/// when `stop` fires. Takes the bytes of each object received from `stream`'s bandwidth before
/// it reads the next (so a waiting pull stops its source through the window).
pub(crate) fn pull(
    store: &Store,
    client: &NodeClient,
    runtime: &Handle,
    stop: &CancellationToken,
    blob_ref: &BlobRef,
    pin: PinAt<'_>,
    stream: &LiveStream,
) -> NodeResult<PullDone> {
    let mut importer = store.importer().node_err()?;
    let mut done = PullDone {
        objects_fetched: 0,
        bytes_fetched: 0,
        pin_name: None,
    };
    let mut received = |bytes: &[u8]| {
        for piece in bytes.chunks(MAX_PIECE) {
            runtime.block_on(stream.acquire(piece.len() as u64));
        }
        done.objects_fetched = done.objects_fetched.saturating_add(1);
        done.bytes_fetched = done.bytes_fetched.saturating_add(bytes.len() as u64);
    };
    fetch_blob(
        &mut importer,
        client,
        runtime,
        stop,
        blob_ref,
        &mut received,
    )?;
    match pin.hold(blob_ref) {
        Some(hold) => importer.push_op(hold),
        None => importer
            .pin_named_in(pin.channel, blob_ref, &pin.pin_name())
            .node_err()?,
    }
    importer.commit().node_err()?;
    Ok(done)
}

/// Brings every object of `blob_ref` that `importer`'s store lacks from `client`'s node into
/// `importer` (module docs), calling `received` with each object's bytes once they verified
/// and before they are stored. Stops (busy) when `stop` fires. The importer holds what it
/// found and stored until its caller commits (with a pin, typically).
pub fn fetch_blob(
    importer: &mut Importer<'_>,
    client: &NodeClient,
    runtime: &Handle,
    stop: &CancellationToken,
    blob_ref: &BlobRef,
    received: &mut dyn FnMut(&[u8]),
) -> NodeResult<()> {
    Walk {
        client,
        runtime,
        stop,
        importer,
        received,
        held: 0,
        levels: HashMap::new(),
        blob_ref,
        fetched_any: false,
    }
    .fetch(&roots(blob_ref), root_level(blob_ref))
}

struct Walk<'a, 'i, 's> {
    client: &'a NodeClient,
    runtime: &'a Handle,
    stop: &'a CancellationToken,
    importer: &'i mut Importer<'s>,
    received: &'a mut dyn FnMut(&[u8]),
    /// Bytes of the received nodes kept until their subtrees are in.
    held: usize,
    /// The level of each internal node this walk received (checked), for the places the walk
    /// meets it again already imported.
    levels: HashMap<Hash, u8>,
    /// The blob being fetched.
    blob_ref: &'a BlobRef,
    /// Whether the source has given any object yet: one it lacks before that (the first
    /// object the walk asks for, a Tree's root or a chunk the ref lists) means the source does
    /// not hold the blob at all (not found), after that that its copy is damaged (integrity).
    fetched_any: bool,
}

impl Walk<'_, '_, '_> {
    /// A failure the source node reported (or of the call to it), naming the source: its
    /// message is the source's, whose "this node" is not the node running the pull.
    fn source_failed(&self, e: NodeError) -> NodeError {
        NodeError::new(
            e.class,
            format!(
                "the source node {}: {}",
                self.source_id(),
                clipped(&e.message)
            ),
        )
    }

    fn source_id(&self) -> String {
        self.client.session().peer().node_id().to_hex()
    }

    /// The failure of a walk whose first object the source lacks: the source does not hold
    /// the blob (not found), unless its own `stat` of the ref fails otherwise — a channel pins
    /// the blob there but its root object is lost (integrity), or the source cannot tell —
    /// and then that failure, named as the source's.
    fn source_lacks_blob(&self) -> NodeError {
        match self.source_stat() {
            None => stopped(),
            Some(Err(e)) if e.class != ErrorClass::NotFound => self.source_failed(e),
            Some(_) => NodeError::new(
                ErrorClass::NotFound,
                format!(
                    "the source node {} does not have it: {}",
                    self.source_id(),
                    BlobError::not_in_store(self.blob_ref)
                ),
            ),
        }
    }

    /// The source's own `stat` of the ref; `None` when the walk was stopped first.
    /// A source that does not answer within the client's silence timeout fails it (io), as
    /// the object streams do.
    fn source_stat(&self) -> Option<NodeResult<crate::proto::Stat>> {
        let spec = BlobSpec::Ref(ByteBuf::from(self.blob_ref.encode()));
        let silence = self.client.silence_timeout();
        self.runtime.block_on(async {
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => None,
                stat = tokio::time::timeout(silence, self.client.stat(&spec)) => {
                    Some(stat.unwrap_or_else(|_| {
                        Err(NodeError::new(
                            ErrorClass::Io,
                            format!("the node sent nothing for {silence:?}"),
                        ))
                    }))
                }
            }
        })
    }

    /// The failure of a walk whose source lacks object `hash` after it gave others: its copy
    /// is damaged (integrity), unless its own `stat` of the ref now finds the blob absent —
    /// it was removed and collected there while the pull ran: not found, as a pull begun
    /// after that would be.
    fn source_lost(&self, hash: &Hash, reason: &str) -> NodeError {
        match self.source_stat() {
            None => stopped(),
            Some(Err(e)) if e.class == ErrorClass::NotFound => NodeError::new(
                ErrorClass::NotFound,
                format!(
                    "the source node {} no longer has it (removed there during the pull): {}",
                    self.source_id(),
                    clipped(&e.message)
                ),
            ),
            Some(_) => integrity(format!(
                "the source node lacks object {}: {}",
                short_hex(hash),
                clipped(reason)
            )),
        }
    }

    fn check_stop(&self) -> NodeResult<()> {
        if self.stop.is_cancelled() {
            return Err(stopped());
        }
        Ok(())
    }

    /// Brings every object of `wanted` (and everything under it) into the store; its internal
    /// nodes must be of `level`.
    fn fetch(&mut self, wanted: &[(Hash, ObjectKind)], level: u8) -> NodeResult<()> {
        let mut chunks = Vec::new();
        let mut nodes = Vec::new();
        let mut seen = HashSet::with_capacity(wanted.len());
        for &(hash, kind) in wanted {
            if !seen.insert(hash) {
                continue;
            }
            if self.importer.has(&hash).node_err()? {
                // Skipped with its subtree, whose shape was checked when it came in; its own
                // level must still fit this place (else a tree whose levels do not descend
                // could be built out of nodes each checked in another place).
                if kind == ObjectKind::InternalNode {
                    self.check_present_level(&hash, level)?;
                }
                continue;
            }
            if kind == ObjectKind::Chunk {
                chunks.push((hash, kind));
            } else {
                nodes.push((hash, kind));
            }
        }
        for batch in chunks.chunks(MAX_OBJECTS_PER_CALL) {
            self.fetch_batch(batch, level, &mut Vec::new())?;
        }
        let mut rest = nodes.as_slice();
        while !rest.is_empty() {
            let n = if self.held >= HELD_NODE_BYTES {
                1
            } else {
                NODE_BATCH
            };
            let (batch, after) = rest.split_at_checked(n).unwrap_or((rest, &[]));
            rest = after;
            let mut received = Vec::with_capacity(batch.len());
            self.fetch_batch(batch, level, &mut received)?;
            for node in received {
                self.fetch(node.children(), level.saturating_sub(1))?;
                let len = node.bytes().len();
                self.importer.import_verified(node).node_err()?;
                self.held = self.held.saturating_sub(len);
            }
        }
        Ok(())
    }

    /// Checks that internal node `hash`, which the store (or this walk) already has, is of
    /// `level`.
    fn check_present_level(&mut self, hash: &Hash, level: u8) -> NodeResult<()> {
        let got = match self.levels.get(hash) {
            Some(got) => Some(*got),
            None => self.importer.stored_internal_level(hash).node_err()?,
        };
        match got {
            Some(got) if got == level => Ok(()),
            got => Err(integrity(format!(
                "the source node's tree lists node {} (already here, {}) where a node of level \
                 {level} belongs",
                short_hex(hash),
                got.map_or_else(
                    || "not an internal node".to_string(),
                    |l| format!("of level {l}")
                )
            ))),
        }
    }

    /// Asks the source for `batch` in one call; stores each chunk (verified) as it arrives,
    /// and puts each node (verified, decoded, internal ones checked to be of `level`) in
    /// `nodes`.
    fn fetch_batch(
        &mut self,
        batch: &[(Hash, ObjectKind)],
        level: u8,
        nodes: &mut Vec<Verified>,
    ) -> NodeResult<()> {
        self.check_stop()?;
        let hashes: Vec<Hash> = batch.iter().map(|(h, _)| *h).collect();
        let stream = self
            .client
            .objects_blocking(self.runtime, &hashes)
            .map_err(|e| self.source_failed(e))?
            .stop_on(self.stop.clone());
        for (hash, kind) in batch {
            self.check_stop()?;
            let next = stream.next_object().map_err(|e| self.source_failed(e))?;
            let Some((got, got_kind, answer)) = next else {
                return Err(integrity("the source node's stream ended early".into()));
            };
            if got != *hash {
                return Err(integrity(
                    "the source node sent another object than asked for".into(),
                ));
            }
            let bytes = match answer {
                Ok(bytes) => bytes,
                Err(_) if !self.fetched_any => return Err(self.source_lacks_blob()),
                Err(reason) => return Err(self.source_lost(hash, &reason)),
            };
            self.fetched_any = true;
            if got_kind != *kind as u8 {
                return Err(integrity(format!(
                    "the source node sent object {} as kind {got_kind}",
                    short_hex(hash)
                )));
            }
            // Verified against its id here, once, before anything of it is stored or kept.
            let object = Verified::check(*kind, hash, bytes)
                .map_err(|e| integrity(format!("the source node's object: {e}")))?;
            if let Some(got_level) = object.level() {
                if got_level != level || level >= MAX_DEPTH {
                    return Err(integrity(format!(
                        "the source node sent tree node {} of level {got_level} where a node of \
                         level {level} belongs",
                        short_hex(hash)
                    )));
                }
                self.levels.insert(*hash, got_level);
            }
            (self.received)(object.bytes());
            if *kind == ObjectKind::Chunk {
                self.importer.import_verified(object).node_err()?;
            } else {
                self.held = self.held.saturating_add(object.bytes().len());
                nodes.push(object);
            }
        }
        stream.finish().map_err(|e| self.source_failed(e))
    }
}
