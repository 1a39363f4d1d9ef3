//! fsck `--repair`: salvaging the records of orphan segment files before they are removed.
//!
//! A segment file the index does not name is a compaction leftover (every record it holds that
//! anything needs is indexed elsewhere) or a segment whose entries a repair dropped (its header
//! named another segment, ...) — and then its records may be the only copy of objects pins,
//! nodes or holds still need. Before such a file is removed, its records are framed (past the
//! fixed-length file header, whatever it says) and every one whose object the index lacks but
//! something needs (`expected` names it) is read, verified against its id, appended to the
//! active segment and indexed in the repair's transaction with the references that need it.
//! Children of a salvaged node are needed in turn. A file is removed only when nothing it holds
//! is needed and missing.

use super::*;

use net_mesh_segments::LooseSegment;

use crate::codec::{internal_id, leaf_id};

/// What salvaging the orphan files found and did, for the repair transaction and the report.
#[derive(Default)]
pub(super) struct Salvage {
    /// Objects appended to the active segment, to be indexed (kind, location).
    pub(super) objects: Vec<(Hash, RecordKind, RecordLoc)>,
    /// Durable segment lengths the appends made (to commit).
    pub(super) lengths: Vec<(SegmentId, u64)>,
    /// Orphan files to remove, with the objects salvaged from each.
    pub(super) removable: Vec<(PathBuf, u64)>,
    /// Orphan files kept, with the number of objects they hold that the store lacks.
    pub(super) kept: Vec<(PathBuf, u64)>,
}

/// A record an orphan file holds for an object the index lacks.
struct Candidate {
    file: usize,
    loc: RecordLoc,
    kind: RecordKind,
}

/// The payload's id as its kind computes it.
fn payload_id(kind: RecordKind, payload: &[u8]) -> Hash {
    match kind {
        RecordKind::Chunk => chunk_id(payload),
        RecordKind::LeafNode => leaf_id(payload),
        RecordKind::InternalNode => internal_id(payload),
    }
}

impl Checker<'_> {
    /// Salvages what the files at `paths` hold that the store lacks and needs (see the module
    /// doc); `indexed` are the objects the repair keeps, `expected` the references each object
    /// is named by (raised here by the children of salvaged nodes). The appended records are
    /// durable on return, not yet indexed.
    pub(super) fn salvage_orphans(
        &self,
        paths: &[PathBuf],
        indexed: &HashSet<Hash>,
        expected: &mut HashMap<Hash, u64>,
    ) -> Result<Salvage, FsckError> {
        let backend = self.store.segments.backend();
        let mut files = Vec::new();
        // Per file: the objects it holds that the index lacks.
        let mut lacking: Vec<BTreeSet<Hash>> = Vec::new();
        // Per file: objects it holds that could not be read (I/O), so cannot be judged.
        let mut unreadable: Vec<BTreeSet<Hash>> = Vec::new();
        let mut candidates: HashMap<Hash, Vec<Candidate>> = HashMap::new();
        for path in paths {
            let id = path
                .file_name()
                .and_then(|n| parse_segment_file_name(&n.to_string_lossy()))
                .unwrap_or(SegmentId::MAX);
            let file = LooseSegment::open(backend.as_ref(), path, id, None)?;
            let index = files.len();
            let mut here = BTreeSet::new();
            for item in file.scan()? {
                // A framing error ends the file's records: what follows was never framed
                // whole (a torn tail), so no commit ever named it.
                let Ok((loc, kind, hash)) = item else { break };
                if indexed.contains(&hash) {
                    continue;
                }
                here.insert(hash);
                candidates.entry(hash).or_default().push(Candidate {
                    file: index,
                    loc,
                    kind,
                });
            }
            files.push(file);
            lacking.push(here);
            unreadable.push(BTreeSet::new());
        }

        let mut salvage = Salvage::default();
        let mut salvaged: HashSet<Hash> = HashSet::new();
        let mut queue: Vec<Hash> = candidates
            .keys()
            .filter(|h| expected.get(*h).is_some_and(|n| *n > 0))
            .copied()
            .collect();
        queue.sort_unstable();
        if !queue.is_empty() {
            self.make_active_appendable()?;
        }
        while let Some(hash) = queue.pop() {
            if salvaged.contains(&hash) {
                continue;
            }
            let Some(records) = candidates.get(&hash) else {
                continue;
            };
            let mut verified = None;
            for c in records {
                let Some(file) = files.get(c.file) else {
                    continue;
                };
                match file.read(c.loc, c.kind, &hash) {
                    Ok(payload) if payload_id(c.kind, &payload) == hash => {
                        verified = Some((c.kind, payload));
                        break;
                    }
                    // A record whose bytes do not hash to its id holds nothing to keep.
                    Ok(_) | Err(SegmentError::Corrupted { .. }) => {}
                    Err(_) => {
                        if let Some(set) = unreadable.get_mut(c.file) {
                            set.insert(hash);
                        }
                    }
                }
            }
            let Some((kind, payload)) = verified else {
                continue;
            };
            let loc = self.store.segments.append(kind, &hash, &payload)?;
            salvaged.insert(hash);
            salvage.objects.push((hash, kind, loc));
            let children: Vec<Hash> = match kind {
                RecordKind::Chunk => Vec::new(),
                RecordKind::LeafNode => decode_leaf(&hash, &payload)
                    .map(|l| l.chunks.iter().map(|c| c.hash).collect())
                    .unwrap_or_default(),
                RecordKind::InternalNode => decode_internal(&hash, &payload)
                    .map(|n| n.children.iter().map(|c| c.hash).collect())
                    .unwrap_or_default(),
            };
            for child in children {
                let n = expected.entry(child).or_insert(0);
                *n = n.saturating_add(1);
                if !indexed.contains(&child) && !salvaged.contains(&child) {
                    queue.push(child);
                }
            }
        }
        if !salvage.objects.is_empty() {
            salvage.lengths = self.store.segments.sync()?;
            let mut appended: BTreeMap<SegmentId, u64> = BTreeMap::new();
            for (_, _, loc) in &salvage.objects {
                let n = appended.entry(loc.segment).or_insert(0);
                *n = n.saturating_add(1);
            }
            // Nothing else appends while fsck runs; the repair's transaction indexes them.
            self.store.segments.settle(&appended);
        }

        for ((path, here), unreadable) in paths.iter().zip(&lacking).zip(&unreadable) {
            let from_here = here.iter().filter(|h| salvaged.contains(*h)).count() as u64;
            // Lacking and not salvaged: kept when it could not be read (so not judged), or
            // when some references cannot be counted (so it may be needed). A record whose
            // bytes do not hash to its id holds nothing to keep.
            let still_lacking = here
                .iter()
                .filter(|h| !salvaged.contains(*h))
                .filter(|h| unreadable.contains(*h) || self.counts_floor_only)
                .count() as u64;
            if still_lacking > 0 {
                salvage.kept.push((path.clone(), still_lacking));
            } else {
                salvage.removable.push((path.clone(), from_here));
            }
        }
        Ok(salvage)
    }

    /// The active segment takes the salvaged records: when its file has a torn tail (to be
    /// cut after the repair's transaction), a new active segment is started first so that
    /// nothing is appended after the torn bytes.
    fn make_active_appendable(&self) -> Result<(), FsckError> {
        let active = self.store.segments.active_segment();
        if matches!(
            self.issues.get(&active),
            Some(SegmentIssue::Truncated { .. })
        ) {
            self.store.segments.seal_active()?;
        }
        Ok(())
    }
}
