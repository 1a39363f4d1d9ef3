//! fsck `--repair`: what can be fixed without losing data.

use super::salvage::Salvage;
use super::*;

impl Checker<'_> {
    /// Fixes what can be fixed without losing data, in one index transaction, then removes
    /// orphan files.
    pub(super) fn repair(&mut self) -> Result<(), FsckError> {
        // Counts as recomputed: nodes whose entries are dropped were never counted.
        let mut expected = std::mem::take(&mut self.expected);
        let mut indexed: HashSet<Hash> = self
            .objects
            .iter()
            .map(|(h, _)| *h)
            .filter(|h| !self.bad.contains_key(h))
            .collect();
        // Orphan files, and the files of segments whose entries are all dropped now (they
        // become orphans): their records may be the only copy of objects still needed.
        let mut kept_live: BTreeMap<SegmentId, u64> = BTreeMap::new();
        for (hash, entry) in &self.objects {
            if !self.bad.contains_key(hash) {
                *kept_live.entry(entry.loc.segment).or_insert(0) +=
                    u64::from(entry.loc.payload_len);
            }
        }
        let mut orphan_paths = std::mem::take(&mut self.orphans);
        for (id, issue) in &self.issues {
            if matches!(issue, SegmentIssue::HeaderCorrupt(_))
                && kept_live.get(id).copied().unwrap_or(0) == 0
            {
                let path = self.store.segments.dir().join(segment_file_name(*id));
                if self.store.segments.backend().open(&path, false).is_ok() {
                    orphan_paths.push(path);
                }
            }
        }
        let salvage = self.salvage_orphans(&orphan_paths, &indexed, &mut expected)?;
        let now = now_ms();
        for (hash, _, _) in &salvage.objects {
            indexed.insert(*hash);
        }
        let mut live: BTreeMap<SegmentId, u64> = BTreeMap::new();
        for (_, _, loc) in &salvage.objects {
            *live.entry(loc.segment).or_insert(0) += u64::from(loc.payload_len);
        }
        let txn = self.store.index.db().begin_write()?;
        let mut dropped = 0u64;
        let mut recounted = 0u64;
        let mut segment_fixes = Vec::new();
        {
            let mut objects = txn.open_table(OBJECTS)?;
            let mut segments = txn.open_table(SEGMENTS)?;
            let mut lost_refs = txn.open_table(LOST_REFS)?;
            let mut channels = txn.open_table(CHANNELS)?;
            for name in &self.missing_channels {
                if channels.get(name.as_str())?.is_none() {
                    let entry = ChannelEntry {
                        created_unix_ms: now_ms(),
                    };
                    channels.insert(name.as_str(), entry.encode().as_slice())?;
                }
            }
            for hash in self.bad.keys() {
                objects.remove(hash)?;
                dropped += 1;
            }
            for (hash, kind, loc) in &salvage.objects {
                let entry = ObjectEntry {
                    kind: *kind,
                    loc: *loc,
                    refcount: expected.get(hash).copied().unwrap_or(0),
                    unreferenced_since_unix_ms: now,
                };
                objects.insert(hash, entry.encode().as_slice())?;
            }
            // Objects still named by parents or pins but not indexed (dropped now or earlier):
            // record the count those references hold, so a re-upload restores it (§3.10).
            let mut stale = Vec::new();
            for row in lost_refs.iter()? {
                let (k, _) = row?;
                stale.push(*k.value());
            }
            for hash in stale {
                lost_refs.remove(&hash)?;
            }
            for (hash, count) in &expected {
                if *count > 0 && !indexed.contains(hash) {
                    lost_refs.insert(hash, encode_lost_refs(*count).as_slice())?;
                }
            }
            for (hash, entry) in &self.objects {
                if self.bad.contains_key(hash) {
                    continue;
                }
                *live.entry(entry.loc.segment).or_insert(0) += u64::from(entry.loc.payload_len);
                let mut want = expected.get(hash).copied().unwrap_or(0);
                if self.counts_floor_only {
                    want = want.max(entry.refcount);
                }
                if want != entry.refcount {
                    let mut e = *entry;
                    e.refcount = want;
                    objects.insert(hash, e.encode().as_slice())?;
                    recounted += 1;
                }
            }
            for (id, seg) in &self.index_segments {
                let computed = live.get(id).copied().unwrap_or(0);
                match self.issues.get(id) {
                    Some(SegmentIssue::Missing | SegmentIssue::HeaderCorrupt(_))
                        if computed == 0 =>
                    {
                        segments.remove(*id)?;
                        segment_fixes.push(format!("dropped the entry of unusable segment {id}"));
                        continue;
                    }
                    Some(SegmentIssue::Truncated { .. }) => {
                        let end = self.framed_end.get(id).copied().unwrap_or(FILE_HEADER);
                        let fixed = SegmentEntry {
                            committed_len: end,
                            live_bytes: computed,
                        };
                        segments.insert(*id, fixed.encode().as_slice())?;
                        segment_fixes.push(format!(
                            "lowered committed length of truncated segment {id} from {} to {end}",
                            seg.committed_len
                        ));
                        continue;
                    }
                    _ => {}
                }
                if computed != seg.live_bytes {
                    let fixed = SegmentEntry {
                        committed_len: seg.committed_len,
                        live_bytes: computed,
                    };
                    segments.insert(*id, fixed.encode().as_slice())?;
                }
            }
            // The segments the salvaged records went to, with their durable lengths.
            for (id, len) in &salvage.lengths {
                let stored = segments
                    .get(*id)?
                    .map(|v| SegmentEntry::decode(*id, v.value()))
                    .transpose()?;
                let entry = SegmentEntry {
                    committed_len: stored.map_or(*len, |e| e.committed_len.max(*len)),
                    live_bytes: live.get(id).copied().unwrap_or(0),
                };
                segments.insert(*id, entry.encode().as_slice())?;
            }
        }
        net_mesh_segments::failpoint::hit("fsck.repair_commit.before");
        txn.commit()?;
        net_mesh_segments::failpoint::hit("fsck.repair_commit.after");
        self.store.segments.acknowledge_committed(&salvage.lengths);
        self.cut_torn_tails(&mut segment_fixes)?;
        self.rebuild_erasure_coded()?;
        if dropped > 0 {
            self.report.repairs.push(format!(
                "dropped {dropped} index entries whose bytes are gone or corrupt (re-upload the affected blobs to restore them)"
            ));
            let bad: HashSet<String> = self.bad.keys().map(hex).collect();
            for kind in [
                ProblemKind::ObjectBytesMissing,
                ProblemKind::ObjectCorrupt,
                ProblemKind::NodeUndecodable,
            ] {
                self.report
                    .mark_repaired(kind, |l| l.object.as_ref().is_some_and(|o| bad.contains(o)));
            }
        }
        if !self.missing_channels.is_empty() {
            self.report.repairs.push(format!(
                "created {} channel(s) that pin rows name: {}",
                self.missing_channels.len(),
                self.missing_channels.join(", ")
            ));
            self.report
                .mark_repaired(ProblemKind::ChannelMissing, |_| true);
        }
        if recounted > 0 {
            self.report
                .repairs
                .push(format!("rewrote {recounted} reference counts"));
        }
        self.report
            .mark_repaired(ProblemKind::RefcountMismatch, |_| !self.counts_floor_only);
        self.report
            .mark_repaired(ProblemKind::LiveBytesMismatch, |_| true);
        let fixed_segments: HashSet<SegmentId> = self
            .issues
            .iter()
            .filter(|(id, issue)| match issue {
                SegmentIssue::Truncated { .. } => true,
                _ => live.get(id).copied().unwrap_or(0) == 0,
            })
            .map(|(id, _)| *id)
            .chain(self.headers_rewritten.keys().copied())
            .collect();
        for id in self.headers_rewritten.keys() {
            self.report.repairs.push(format!(
                "rewrote the damaged file header of segment {id} (its records were checked as usual)"
            ));
        }
        for kind in [
            ProblemKind::SegmentMissing,
            ProblemKind::SegmentHeaderCorrupt,
            ProblemKind::SegmentTruncated,
        ] {
            self.report.mark_repaired(kind, |l| {
                l.segment.is_some_and(|s| fixed_segments.contains(&s))
            });
        }
        // The tail framing error of a truncated segment goes with its lowered length.
        self.report.mark_repaired(ProblemKind::SegmentFraming, |l| {
            l.segment.is_some_and(|s| {
                matches!(self.issues.get(&s), Some(SegmentIssue::Truncated { .. }))
            })
        });
        self.report.repairs.extend(segment_fixes);
        self.settle_orphans(salvage)?;
        Ok(())
    }

    /// Removes the orphan files whose needed records are salvaged (or that hold none), keeps
    /// the others (a warning each), and reports the salvaged objects as no longer missing.
    fn settle_orphans(&mut self, salvage: Salvage) -> Result<(), FsckError> {
        let salvaged: HashSet<String> = salvage.objects.iter().map(|(h, _, _)| hex(h)).collect();
        if !salvaged.is_empty() {
            self.report.repairs.push(format!(
                "salvaged {} object(s) the index lacked from orphan segment files into the \
                 active segment",
                salvaged.len()
            ));
            self.report.mark_repaired(ProblemKind::MissingObject, |l| {
                l.object.as_ref().is_some_and(|o| salvaged.contains(o))
            });
        }
        for (path, lacking) in salvage.kept {
            let id = path
                .file_name()
                .and_then(|n| parse_segment_file_name(&n.to_string_lossy()));
            self.report.push(
                ProblemKind::OrphanFile,
                Severity::Warning,
                Location {
                    segment: id,
                    path: Some(path.display().to_string()),
                    ..Location::default()
                },
                format!("orphan file holds {lacking} objects the store lacks; kept"),
            );
        }
        for (path, from_here) in salvage.removable {
            let files = self.store.segments.backend();
            files.remove(&path).map_err(|source| FsckError::Io {
                op: "remove orphan file",
                path: path.clone(),
                source,
            })?;
            let dir = self.store.segments.dir();
            files.sync_dir(dir).map_err(|source| FsckError::Io {
                op: "fsync segment directory",
                path: dir.to_path_buf(),
                source,
            })?;
            let shown = path.display().to_string();
            self.report.repairs.push(if from_here > 0 {
                format!("removed orphan segment file {shown} after salvaging {from_here} object(s) from it")
            } else {
                format!("removed orphan segment file {shown}")
            });
            self.report.mark_repaired(ProblemKind::OrphanFile, |l| {
                l.path.as_deref() == Some(&shown)
            });
        }
        Ok(())
    }

    /// Cuts the file of a truncated segment that is the active one back to its last whole
    /// record (durably), so the rebuild's appends follow it and not the torn bytes. Runs after
    /// the index transaction lowered its committed length: a crash in between leaves a tail past
    /// the committed length, which the next open cuts. A sealed truncated segment is cut at its
    /// next open (nothing is appended to it).
    fn cut_torn_tails(&mut self, segment_fixes: &mut Vec<String>) -> Result<(), FsckError> {
        for (id, issue) in &self.issues {
            if !matches!(issue, SegmentIssue::Truncated { .. }) {
                continue;
            }
            let end = self.framed_end.get(id).copied().unwrap_or(FILE_HEADER);
            if self.store.segments.cut_active_tail(*id, end)? {
                segment_fixes.push(format!(
                    "cut the torn tail of active segment {id} at {end} before appending to it"
                ));
            }
        }
        Ok(())
    }

    /// Rebuilds the lost chunks of affected erasure-coded blobs from their stripes
    /// (`Store::repair`). Runs after the index transaction: the dropped entries are re-inserted
    /// with the reference counts recorded for them in `lost_refs_v1`.
    fn rebuild_erasure_coded(&mut self) -> Result<(), FsckError> {
        let affected: HashSet<String> = self
            .report
            .affected_blobs
            .iter()
            .map(|b| b.blob_id.clone())
            .collect();
        if affected.is_empty() {
            return Ok(());
        }
        for (id, pin) in self.store.index.reader()?.pin_listing()?.pins {
            if pin.blob_ref.encoding() == crate::codec::Encoding::Plain
                || !affected.contains(&hex(&id))
            {
                continue;
            }
            let line = match self.store.repair(&pin.blob_ref) {
                Ok(r) => format!(
                    "blob {}: rebuilt {} chunk(s) from parity ({} stripe(s) repaired, {} unrecoverable)",
                    hex(&id),
                    r.chunks_rebuilt,
                    r.repaired,
                    r.unrecoverable
                ),
                Err(e) => format!("blob {}: could not rebuild from parity: {e}", hex(&id)),
            };
            self.report.repairs.push(line);
        }
        // Objects the rebuild put back are no longer missing.
        let reader = self.store.index.reader()?;
        let mut restored = HashSet::new();
        for p in &self.report.problems {
            if p.kind == ProblemKind::MissingObject
                && let Some(object) = &p.location.object
                && let Some(hash) = parse_hex(object)
                && reader.contains(&hash)?
            {
                restored.insert(object.clone());
            }
        }
        self.report.mark_repaired(ProblemKind::MissingObject, |l| {
            l.object.as_ref().is_some_and(|o| restored.contains(o))
        });
        Ok(())
    }

    /// Recomputes the affected blobs with everything now known to be bad.
    pub(super) fn refresh_affected(&mut self) -> Result<(), FsckError> {
        let pins = self.store.index.reader()?.pin_listing()?.pins;
        let indexed: HashMap<Hash, ObjectEntry> = self.objects.iter().copied().collect();
        let mut memo = HashMap::new();
        let mut missing = BTreeSet::new();
        let mut out = Vec::new();
        for (id, pin) in &pins {
            let mut damaged = false;
            for root in pin_roots(&pin.blob_ref) {
                if self.subtree_damaged(&root, &indexed, &mut memo, &mut missing) {
                    damaged = true;
                }
            }
            if damaged {
                out.push(AffectedBlob {
                    blob_id: hex(id),
                    name: pin.name.clone(),
                    blob_ref: pin.blob_ref.to_text(),
                });
            }
        }
        self.report.affected_blobs = out;
        Ok(())
    }
}

fn parse_hex(text: &str) -> Option<Hash> {
    let mut out = [0u8; 32];
    if text.len() != 64 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        let pair = text.get(i.checked_mul(2)?..i.checked_mul(2)?.checked_add(2)?)?;
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}
