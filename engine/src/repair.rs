//! Repair of an erasure-coded blob: walk every stripe, read and verify every data and
//! parity chunk, rebuild the lost ones from the rest and store them again.
//!
//! A rebuilt chunk is appended as a new record (a corrupt record is never overwritten in place).
//! Its index entry is then repointed (`Batch::relocate`) when it still exists, or re-inserted
//! when it was removed, in one index transaction after the segment fdatasync — the usual commit
//! protocol. A re-inserted entry gets the references this blob's list makes to it; exact counts
//! across blobs are fsck's to recompute.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use net_mesh_segments::RecordKind;

use crate::codec::{
    BlobRef, ChunkRef, ChunkRole, Hash, InternalNode, LeafNode, internal_id, leaf_id,
};
use crate::erasure::{ErasureError, RebuiltShards, RsParams, StripeCodec, StripeSpan, stripes};
use crate::error::{BlobError, Classify, ErrorClass, StoreError};
use crate::index::{Batch, NewObject};
use crate::read::{ChunkPlace, ObjectSource, Reader, StoreSource};
use crate::store::Store;

/// What a repair found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// Stripes read (those of a chunk list the blob repeats, once).
    pub stripes_walked: u64,
    /// Stripes with every chunk present and verified.
    pub healthy: u64,
    /// Stripes that had lost chunks, all rebuilt and stored.
    pub repaired: u64,
    /// Stripes with more lost chunks than parity (left as they are).
    pub unrecoverable: u64,
    /// Indexes of the unrecoverable stripes.
    pub unrecoverable_stripes: Vec<u32>,
    /// Chunks rebuilt and stored (distinct ids).
    pub chunks_rebuilt: u64,
    /// Payload bytes of those chunks.
    pub bytes_rebuilt: u64,
}

/// Why a repair could not run to the end.
#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    #[error("blob is not erasure-coded: there is no parity to rebuild from")]
    NotErasureCoded,
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Raised by callers (the CLI) for a finished repair that left stripes unrecoverable.
    #[error(
        "{count} stripe(s) could not be rebuilt (first: stripe {first_stripe}): more chunks lost than parity"
    )]
    Unrecoverable { count: u64, first_stripe: u32 },
}

impl Classify for RepairError {
    fn class(&self) -> ErrorClass {
        match self {
            RepairError::NotErasureCoded => ErrorClass::Usage,
            RepairError::Blob(e) => e.class(),
            RepairError::Store(e) => e.class(),
            RepairError::Unrecoverable { .. } => ErrorClass::Integrity,
        }
    }
}

impl RepairReport {
    /// `Err(RepairError::Unrecoverable)` when some stripe could not be rebuilt.
    pub fn check(&self) -> Result<(), RepairError> {
        match self.unrecoverable_stripes.first() {
            None => Ok(()),
            Some(&first_stripe) => Err(RepairError::Unrecoverable {
                count: self.unrecoverable,
                first_stripe,
            }),
        }
    }
}

impl From<ErasureError> for RepairError {
    fn from(e: ErasureError) -> Self {
        RepairError::Blob(e.into())
    }
}

struct Repair<'s> {
    store: &'s Store,
    source: StoreSource<'s>,
    codec: StripeCodec,
    batch: Batch,
    /// Chunks rebuilt in the open batch (not yet visible through `source`).
    rebuilt: HashMap<Hash, Bytes>,
    batch_payload: u64,
    report: RepairReport,
    /// Nodes walked: a node listed again (repeated content) is skipped with its subtree, so
    /// a tree that lists one subtree many times costs its distinct nodes.
    walked: HashSet<Hash>,
    /// Counts each stripe's data bytes as it is checked.
    progress: &'s crate::Progress,
}

impl Drop for Repair<'_> {
    fn drop(&mut self) {
        // Records of a batch never committed are given up.
        self.store.segments.settle(&self.batch.appended_records());
    }
}

impl<'s> Repair<'s> {
    fn commit(&mut self) -> Result<(), RepairError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        self.store.commit_batch(std::mem::take(&mut self.batch))?;
        self.rebuilt.clear();
        self.batch_payload = 0;
        self.source = self.store.source()?;
        Ok(())
    }

    fn node(&mut self, hash: &Hash, level: u8) -> Result<(), RepairError> {
        if !self.walked.insert(*hash) {
            return Ok(());
        }
        if level == 0 {
            let bytes = self
                .source
                .object(hash, RecordKind::LeafNode, "leaf node")?;
            let actual = leaf_id(&bytes);
            if actual != *hash {
                return Err(BlobError::ChainMismatch {
                    at_depth: 0,
                    parent_hash: *hash,
                    child_hash: actual,
                }
                .into());
            }
            let leaf = LeafNode::decode(&bytes).map_err(|source| BlobError::BadNode {
                hash: *hash,
                source,
            })?;
            if leaf.encoding != self.codec.params().encoding() {
                return Err(BlobError::Corrupted {
                    hash: *hash,
                    reason: "leaf encoding differs from the blob's".into(),
                }
                .into());
            }
            return self.list(&leaf.chunks);
        }
        let bytes = self
            .source
            .object(hash, RecordKind::InternalNode, "internal node")?;
        let actual = internal_id(&bytes);
        if actual != *hash {
            return Err(BlobError::ChainMismatch {
                at_depth: 0,
                parent_hash: *hash,
                child_hash: actual,
            }
            .into());
        }
        let node = InternalNode::decode(&bytes).map_err(|source| BlobError::BadNode {
            hash: *hash,
            source,
        })?;
        for child in &node.children {
            self.node(&child.hash, level.saturating_sub(1))?;
        }
        Ok(())
    }

    /// Checks and repairs every stripe of one chunk list: reads every shard (verified, then
    /// dropped) to find the lost ones, and rebuilds those from the others read again one at a
    /// time ([`Rebuild`](crate::erasure::Rebuild)): a stripe is never held whole.
    fn list(&mut self, chunks: &[ChunkRef]) -> Result<(), RepairError> {
        for span in stripes(self.codec.params(), chunks)? {
            let refs = chunks.get(span.all_range()).unwrap_or_default();
            self.report.stripes_walked = self.report.stripes_walked.saturating_add(1);
            let data_bytes = refs
                .iter()
                .filter(|c| c.role == ChunkRole::Data)
                .fold(0u64, |sum, c| sum.saturating_add(u64::from(c.size)));
            self.progress.advance(data_bytes);
            let mut lost = Vec::new();
            for (i, chunk) in refs.iter().enumerate() {
                if !self.rebuilt.contains_key(&chunk.hash) && self.shard(chunk, i)?.is_none() {
                    lost.push(i);
                }
            }
            if lost.is_empty() {
                self.report.healthy = self.report.healthy.saturating_add(1);
                continue;
            }
            let rebuilt = match self.rebuild(&span, refs, lost)? {
                Ok(rebuilt) => rebuilt,
                Err(ErasureError::TooManyLost { .. } | ErasureError::RebuiltMismatch { .. }) => {
                    tracing::warn!(stripe = span.stripe_index, "stripe is unrecoverable");
                    self.report.unrecoverable = self.report.unrecoverable.saturating_add(1);
                    self.report.unrecoverable_stripes.push(span.stripe_index);
                    continue;
                }
                Err(e) => return Err(BlobError::from(e).into()),
            };
            for (i, bytes) in rebuilt {
                let Some(chunk) = refs.get(i) else {
                    continue;
                };
                if self.rebuilt.contains_key(&chunk.hash) {
                    continue;
                }
                self.store_rebuilt(chunk.hash, bytes, chunks)?;
            }
            self.report.repaired = self.report.repaired.saturating_add(1);
            if self.batch_payload >= self.store.config.batch_bytes {
                self.commit()?;
            }
        }
        Ok(())
    }

    /// Shard `i` of a stripe, verified (`None` when lost): one rebuilt by this repair, or read.
    fn shard(&self, chunk: &ChunkRef, i: usize) -> Result<Option<Bytes>, BlobError> {
        match self.rebuilt.get(&chunk.hash) {
            Some(bytes) => Ok(Some(bytes.clone())),
            None => Reader::new(&self.source).shard(chunk, i, ChunkPlace::Flat),
        }
    }

    /// Rebuilds the shards at `lost` (data and parity) from as many others as the stripe has
    /// data shards, read one at a time and added in; one found lost now joins the lost ones
    /// and the rebuild starts over. The outer error is a read's that is no erasure.
    fn rebuild(
        &self,
        span: &StripeSpan,
        refs: &[ChunkRef],
        mut lost: Vec<usize>,
    ) -> Result<Result<RebuiltShards, ErasureError>, BlobError> {
        'plan: loop {
            if lost.len() > span.parity_count {
                return Ok(Err(ErasureError::TooManyLost {
                    stripe: span.stripe_index,
                    lost: lost.len(),
                    tolerated: span.parity_count,
                }));
            }
            let used: Vec<usize> = (0..span.total())
                .filter(|p| !lost.contains(p))
                .take(span.data_count)
                .collect();
            let mut plan = match self.codec.plan_rebuild(span, &lost, &used) {
                Ok(plan) => plan,
                Err(e) => return Ok(Err(e)),
            };
            for (index, &position) in used.iter().enumerate() {
                let shard = match refs.get(position) {
                    Some(chunk) => self.shard(chunk, position)?,
                    None => None,
                };
                let added = match shard {
                    Some(bytes) => plan.add(index, &bytes),
                    None => {
                        lost.push(position);
                        continue 'plan;
                    }
                };
                if let Err(e) = added {
                    return Ok(Err(e));
                }
            }
            return Ok(plan.finish(refs));
        }
    }

    /// Appends a rebuilt chunk and records its index change in the open batch.
    fn store_rebuilt(
        &mut self,
        hash: Hash,
        bytes: Vec<u8>,
        list: &[ChunkRef],
    ) -> Result<(), RepairError> {
        let loc = self
            .store
            .segments
            .append(RecordKind::Chunk, &hash, &bytes)
            .map_err(StoreError::from)?;
        if self
            .source
            .index
            .object(&hash)
            .map_err(StoreError::from)?
            .is_some()
        {
            self.batch.relocate(hash, loc);
        } else {
            self.batch.new_objects.push(NewObject {
                hash,
                kind: RecordKind::Chunk,
                loc,
                children: Vec::new(),
            });
            // When the entry was dropped by `fsck --repair` or `chunk rm --force`, the
            // references still held on it were recorded (lost_refs_v1) and the re-inserted
            // entry gets exactly those; otherwise count this blob's list.
            if self
                .store
                .index
                .lost_refs(&hash)
                .map_err(StoreError::from)?
                .is_none()
            {
                let uses = list.iter().filter(|c| c.hash == hash).count();
                self.batch
                    .add_ref(hash, i64::try_from(uses).unwrap_or(i64::MAX));
            }
        }
        self.report.chunks_rebuilt = self.report.chunks_rebuilt.saturating_add(1);
        self.report.bytes_rebuilt = self.report.bytes_rebuilt.saturating_add(bytes.len() as u64);
        self.batch_payload = self.batch_payload.saturating_add(bytes.len() as u64);
        self.rebuilt.insert(hash, Bytes::from(bytes));
        Ok(())
    }
}

impl Store {
    /// Reads every stripe of an erasure-coded blob and rebuilds and stores every missing or
    /// corrupt data or parity chunk that its stripe's remaining chunks can rebuild. Stripes with
    /// more losses than parity are reported, not fatal. Tree nodes are not erasure-coded: a lost
    /// node stops the repair with its `BlobError`.
    pub fn repair(&self, blob_ref: &BlobRef) -> Result<RepairReport, RepairError> {
        self.repair_counting(blob_ref, &crate::Progress::default())
    }

    /// [`Store::repair`], counting the blob's bytes in `progress` (stage `checking stripes`)
    /// as their stripes are checked, for a progress display.
    pub fn repair_counting(
        &self,
        blob_ref: &BlobRef,
        progress: &crate::Progress,
    ) -> Result<RepairReport, RepairError> {
        self.check_writable()?;
        let params =
            RsParams::from_encoding(blob_ref.encoding())?.ok_or(RepairError::NotErasureCoded)?;
        let mut job = Repair {
            store: self,
            source: self.source()?,
            codec: StripeCodec::new(params)?,
            batch: Batch::default(),
            rebuilt: HashMap::new(),
            batch_payload: 0,
            report: RepairReport::default(),
            walked: HashSet::new(),
            progress,
        };
        progress.stage("checking stripes", Some(blob_ref.size()));
        match blob_ref {
            BlobRef::Small { .. } => return Err(RepairError::NotErasureCoded),
            BlobRef::Manifest { chunks, .. } => job.list(chunks)?,
            BlobRef::Tree {
                root_hash, depth, ..
            } => job.node(root_hash, depth.saturating_sub(1))?,
        }
        job.commit()?;
        Ok(std::mem::take(&mut job.report))
    }
}
