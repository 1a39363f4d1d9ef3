//! fsck phase 4: counts recomputed from the pins and the tree nodes, reachability, live
//! bytes; and the walk that finds which trees reach damaged or missing objects.

use super::*;

impl Checker<'_> {
    /// Phase 4: recomputed counts, reachability, live bytes.
    pub(super) fn counts(&mut self) -> Result<(), FsckError> {
        let listing = self.store.index.reader()?.pin_listing()?;
        let pins = listing.pins;
        self.report.stats.pins = pins.len() as u64;
        for row in &listing.bad {
            // The blob such a row names is unknown, so are the counts it holds: repair must
            // not lower any count while it is there.
            self.counts_floor_only = true;
            self.report.push(
                ProblemKind::PinCorrupt,
                Severity::Error,
                Location {
                    path: Some(format!("pins_v2/{}/{}", row.channel, hex(&row.id))),
                    ..Location::default()
                },
                format!("pin row does not decode: {}", row.error),
            );
        }
        for (channel, rows) in self.store.index.reader()?.channels_missing()? {
            self.report.push(
                ProblemKind::ChannelMissing,
                Severity::Error,
                Location {
                    path: Some(format!("channels_v1/{channel}")),
                    ..Location::default()
                },
                format!("{rows} pin row(s) name channel {channel:?}, which channels_v1 lacks"),
            );
            self.missing_channels.push(channel);
        }
        let mut expected: HashMap<Hash, u64> = HashMap::new();
        for children in self.children.values() {
            for c in children {
                *expected.entry(*c).or_insert(0) += 1;
            }
        }
        for (_, pin) in &pins {
            for root in pin_roots(&pin.blob_ref) {
                *expected.entry(root).or_insert(0) += 1;
            }
        }
        // Extensions (staging uploads, ...) hold references their tables account for.
        let mut held: BTreeSet<Hash> = BTreeSet::new();
        let db = self.store.index.db();
        match self.store.index.extensions().holds(db) {
            Ok(holds) => {
                self.report.stats.extension_holds = holds.values().sum();
                for (hash, n) in holds {
                    *expected.entry(hash).or_insert(0) += n;
                    held.insert(hash);
                }
            }
            Err(e) => {
                // Their holds are unknown: repair must not lower any count.
                self.counts_floor_only = true;
                self.report.push(
                    ProblemKind::ExtensionCorrupt,
                    Severity::Error,
                    Location::default(),
                    format!("an extension's holds cannot be counted: {e}"),
                );
            }
        }
        // Tables nobody registered may hold references nobody can count.
        let unowned = self
            .store
            .index
            .extensions()
            .unowned_tables(db)
            .map_err(IndexError::from)?;
        for table in unowned {
            self.counts_floor_only = true;
            self.report.push(
                ProblemKind::UnownedTable,
                Severity::Error,
                Location {
                    path: Some(format!("index.redb/{table}")),
                    ..Location::default()
                },
                "a table no registered extension owns: its references cannot be counted, so \
                 repair will not lower any count (open the store with the extension that owns \
                 it)"
                .to_string(),
            );
        }
        let indexed: HashMap<Hash, ObjectEntry> = self.objects.iter().copied().collect();
        // Objects named by a parent or pin that the index lacks.
        let mut missing: BTreeSet<Hash> = BTreeSet::new();
        for hash in expected.keys() {
            if !indexed.contains_key(hash) {
                missing.insert(*hash);
            }
        }
        // Reachability from each pin; a pin is affected when it reaches a bad or missing object.
        let mut damaged_memo: HashMap<Hash, bool> = HashMap::new();
        let mut reached_missing: BTreeSet<Hash> = BTreeSet::new();
        for (id, pin) in &pins {
            let mut damaged = false;
            for root in pin_roots(&pin.blob_ref) {
                if self.subtree_damaged(&root, &indexed, &mut damaged_memo, &mut reached_missing) {
                    damaged = true;
                }
            }
            if damaged {
                self.report.affected_blobs.push(AffectedBlob {
                    blob_id: hex(id),
                    name: pin.name.clone(),
                    blob_ref: pin.blob_ref.to_text(),
                });
            }
        }
        for hash in &missing {
            // A pin row that does not decode may need it too.
            let reachable =
                reached_missing.contains(hash) || held.contains(hash) || !listing.bad.is_empty();
            self.report.push(
                ProblemKind::MissingObject,
                if reachable {
                    Severity::Error
                } else {
                    Severity::Warning
                },
                Location {
                    object: Some(hex(hash)),
                    ..Location::default()
                },
                format!(
                    "named {} time(s) by indexed nodes or pins but not in the index{}",
                    expected.get(hash).copied().unwrap_or(0),
                    if reached_missing.contains(hash) {
                        " (a pinned blob needs it)"
                    } else if held.contains(hash) {
                        " (an extension holds it)"
                    } else {
                        ""
                    }
                ),
            );
        }
        let incomplete = self.bad.values().any(|e| e.kind != RecordKind::Chunk);
        for (hash, entry) in &self.objects {
            if self.bad.contains_key(hash) {
                continue;
            }
            let want = expected.get(hash).copied().unwrap_or(0);
            if want != entry.refcount {
                self.report.push(
                    ProblemKind::RefcountMismatch,
                    Severity::Error,
                    obj_loc(hash, entry.loc),
                    format!(
                        "stored count {} but {want} parent entries and pins name it{}",
                        entry.refcount,
                        if incomplete {
                            " (some nodes were unreadable)"
                        } else {
                            ""
                        }
                    ),
                );
            }
        }
        let mut live: BTreeMap<SegmentId, u64> = BTreeMap::new();
        for (_, entry) in &self.objects {
            *live.entry(entry.loc.segment).or_insert(0) += u64::from(entry.loc.payload_len);
        }
        for (id, seg) in &self.index_segments {
            let computed = live.get(id).copied().unwrap_or(0);
            if computed != seg.live_bytes {
                self.report.push(
                    ProblemKind::LiveBytesMismatch,
                    Severity::Warning,
                    seg_loc(*id),
                    format!(
                        "stored live bytes {} but entries sum to {computed}",
                        seg.live_bytes
                    ),
                );
            }
        }
        self.expected = expected;
        Ok(())
    }

    /// Whether the tree under `root` reaches a bad or missing object (missing ones reached go
    /// to `reached_missing`). A post-order walk on a stack of its own, not recursion: the
    /// stored nodes are what fsck checks, and a damaged index (or a tree a caller imported
    /// without checking its levels) may chain them deeper than any thread's stack; a node met
    /// again on its own path (only a damaged index can list one) counts as damaged.
    pub(super) fn subtree_damaged(
        &self,
        root: &Hash,
        indexed: &HashMap<Hash, ObjectEntry>,
        memo: &mut HashMap<Hash, bool>,
        reached_missing: &mut BTreeSet<Hash>,
    ) -> bool {
        struct Frame {
            hash: Hash,
            next_child: usize,
            damaged: bool,
        }
        if let Some(known) = self.damage_without_children(root, indexed, memo, reached_missing) {
            return known;
        }
        let mut on_path: HashSet<Hash> = HashSet::from([*root]);
        let mut stack = vec![Frame {
            hash: *root,
            next_child: 0,
            damaged: false,
        }];
        while let Some(top) = stack.last_mut() {
            let kids = self.children.get(&top.hash).map_or(&[][..], Vec::as_slice);
            if let Some(child) = kids.get(top.next_child).copied() {
                top.next_child = top.next_child.saturating_add(1);
                if on_path.contains(&child) {
                    top.damaged = true;
                } else if let Some(known) =
                    self.damage_without_children(&child, indexed, memo, reached_missing)
                {
                    top.damaged |= known;
                } else {
                    on_path.insert(child);
                    stack.push(Frame {
                        hash: child,
                        next_child: 0,
                        damaged: false,
                    });
                }
                continue;
            }
            let Some(done) = stack.pop() else { break };
            on_path.remove(&done.hash);
            memo.insert(done.hash, done.damaged);
            match stack.last_mut() {
                Some(parent) => parent.damaged |= done.damaged,
                None => return done.damaged,
            }
        }
        false
    }

    /// Whether `hash` is damaged when that is known without walking its children: already
    /// walked, missing from the index (noted in `reached_missing`), or bad itself.
    fn damage_without_children(
        &self,
        hash: &Hash,
        indexed: &HashMap<Hash, ObjectEntry>,
        memo: &mut HashMap<Hash, bool>,
        reached_missing: &mut BTreeSet<Hash>,
    ) -> Option<bool> {
        if let Some(known) = memo.get(hash) {
            return Some(*known);
        }
        if !indexed.contains_key(hash) {
            reached_missing.insert(*hash);
            memo.insert(*hash, true);
            return Some(true);
        }
        if self.bad.contains_key(hash) {
            memo.insert(*hash, true);
            return Some(true);
        }
        None
    }
}
