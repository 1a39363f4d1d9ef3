//! What one write transaction changes: a [`Batch`], and what its commit reports.

use std::collections::{BTreeMap, HashMap};

use net_mesh_segments::{RecordKind, RecordLoc, SegmentId};

use super::Pin;
use super::extension::{ExtensionOp, ReleasedHold};
use crate::codec::Hash;

/// Everything one write transaction changes.
#[derive(Debug, Default)]
pub struct Batch {
    /// New objects; an id already in the index is skipped, with its children (another
    /// writer stored it first, and that copy already counts them).
    pub new_objects: Vec<NewObject>,
    /// Other reference count changes, applied after the new objects exist.
    pub ref_deltas: HashMap<Hash, i64>,
    /// Durable lengths returned by `Segments::sync` (committed lengths only ever grow). Every
    /// location this batch stores must end within them (else [`IndexError::PastCommitted`]).
    pub segment_lengths: Vec<(SegmentId, u64)>,
    /// Channels to create (an existing one is left as it is); applied before the pins, so a
    /// batch may pin into a channel it creates.
    pub channels_create: Vec<String>,
    /// Pins to add, each into its [`Pin::channel`], which must exist (else the batch is
    /// refused with [`super::IndexError::NoSuchChannel`]).
    pub pins_add: Vec<Pin>,
    /// Renames, applied after `pins_add`: each existing pin row of (its [`Pin::channel`], its
    /// blob's id) that decodes takes [`Pin::name`] and keeps its creation time; a blob the
    /// channel does not pin is left alone (add it with `pins_add`), and so is a row that does
    /// not decode.
    pub pins_rename: Vec<Pin>,
    /// Pins to remove: (channel, blob id).
    pub pins_remove: Vec<(String, Hash)>,
    /// Changes of extensions' tables and holds, applied in the same transaction (see
    /// [`super::extension`]).
    pub extension_ops: Vec<Box<dyn ExtensionOp>>,
    /// Objects whose bytes were rewritten elsewhere (repair of a corrupt record, compaction);
    /// applied after `new_objects`. See [`Relocation`].
    pub relocations: Vec<Relocation>,
    /// Segments whose index entry is dropped if, after this batch, no object lives in them
    /// (compaction); [`CommitOutcome::retired`] lists those dropped.
    pub retire_segments: Vec<SegmentId>,
}

/// An object appended for this batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewObject {
    pub hash: Hash,
    pub kind: RecordKind,
    pub loc: RecordLoc,
    /// What the object lists (a node's children, repeats included): each gets +1 when the
    /// object is inserted, so an indexed node always counts its children exactly once.
    pub children: Vec<Hash>,
}

/// An object whose bytes were copied to `to` (same id, same payload length; durable before the
/// commit, like every location the index stores). The entry keeps its kind, count and time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Relocation {
    pub hash: Hash,
    pub to: RecordLoc,
    /// `Some(loc)`: move only if the entry still points at `loc`, and skip quietly if it moved
    /// or was deleted meanwhile (compaction's copies of a concurrently changed object are then
    /// dead bytes). `None`: the entry must exist (else `MissingObject`).
    pub only_from: Option<RecordLoc>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.new_objects.is_empty()
            && self.ref_deltas.is_empty()
            && self.segment_lengths.is_empty()
            && self.channels_create.is_empty()
            && self.pins_add.is_empty()
            && self.pins_rename.is_empty()
            && self.pins_remove.is_empty()
            && self.extension_ops.is_empty()
            && self.relocations.is_empty()
            && self.retire_segments.is_empty()
    }

    /// Repoints object `hash` at `new_loc` when the batch commits (the entry must exist).
    /// The old record becomes dead bytes for compaction.
    pub fn relocate(&mut self, hash: Hash, new_loc: RecordLoc) {
        self.relocations.push(Relocation {
            hash,
            to: new_loc,
            only_from: None,
        });
    }

    pub fn add_ref(&mut self, hash: Hash, delta: i64) {
        let d = self.ref_deltas.entry(hash).or_insert(0);
        *d = d.saturating_add(delta);
    }

    /// Records this batch appended, per segment (what `Segments::settle` needs once the batch
    /// is committed or given up).
    pub fn appended_records(&self) -> BTreeMap<SegmentId, u64> {
        let mut out: BTreeMap<SegmentId, u64> = BTreeMap::new();
        let locs = self
            .new_objects
            .iter()
            .map(|o| &o.loc)
            .chain(self.relocations.iter().map(|r| &r.to));
        for loc in locs {
            let n = out.entry(loc.segment).or_insert(0);
            *n = n.saturating_add(1);
        }
        out
    }
}

/// What a batch commit changed that the caller reports.
#[derive(Debug, Default, Clone)]
pub struct CommitOutcome {
    /// New objects actually inserted (not already present).
    pub inserted: u64,
    pub inserted_bytes: u64,
    /// Channels created (not already present).
    pub channels_created: u64,
    /// Pins added (not already present) and removed (present, including rows that did not
    /// decode).
    pub pins_added: u64,
    pub pins_removed: u64,
    /// Pins of `Batch::pins_rename` whose name changed.
    pub pins_renamed: u64,
    /// Pin rows removed that did not decode: the references they held are unknown, so no count
    /// was lowered. Those counts are now too high (a leak, never a loss): fsck reports
    /// `refcount_mismatch` and `fsck --repair` recomputes them.
    pub pins_removed_undecodable: Vec<Hash>,
    /// Objects repointed by `Batch::relocations`.
    pub relocated: u64,
    /// Segments of `Batch::retire_segments` whose entry was dropped (nothing lives there).
    pub retired: Vec<SegmentId>,
    /// Holds extensions reported releasing.
    pub released: Vec<ReleasedHold>,
}
