//! fsck phase 6: reading and hashing chunk payloads from a persisted cursor.

use super::*;

/// The fsck data cursor table (docs/FORMAT.md §3.8).
const FSCK_CURSOR: TableDefinition<&str, &[u8]> = TableDefinition::new("fsck_cursor_v1");
const CURSOR_KEY: &str = "read_data";
/// Size of an encoded [`DataCursor`].
pub const FSCK_CURSOR_LEN: usize = 33;
const CURSOR_VERSION: u8 = 1;

/// The persisted data cursor: the next (segment, offset) to read and full passes so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DataCursor {
    pub segment: SegmentId,
    pub offset: u64,
    pub passes_completed: u64,
    pub updated_unix_ms: u64,
}

impl DataCursor {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(FSCK_CURSOR_LEN);
        out.push(CURSOR_VERSION);
        out.extend_from_slice(&self.segment.to_le_bytes());
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.passes_completed.to_le_bytes());
        out.extend_from_slice(&self.updated_unix_ms.to_le_bytes());
        out
    }

    /// None for a malformed value (fsck then starts from the beginning).
    pub fn decode(bytes: &[u8]) -> Option<DataCursor> {
        if bytes.len() != FSCK_CURSOR_LEN || bytes.first() != Some(&CURSOR_VERSION) {
            return None;
        }
        let u = |at: usize| -> Option<u64> {
            Some(u64::from_le_bytes(
                bytes.get(at..at.checked_add(8)?)?.try_into().ok()?,
            ))
        };
        Some(DataCursor {
            segment: u(1)?,
            offset: u(9)?,
            passes_completed: u(17)?,
            updated_unix_ms: u(25)?,
        })
    }
}

impl Checker<'_> {
    fn load_cursor(&self) -> Result<DataCursor, FsckError> {
        let txn = self.store.index.db().begin_read()?;
        let table = match txn.open_table(FSCK_CURSOR) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(DataCursor::default()),
            Err(e) => return Err(e.into()),
        };
        Ok(table
            .get(CURSOR_KEY)?
            .and_then(|v| DataCursor::decode(v.value()))
            .unwrap_or_default())
    }

    fn save_cursor(&self, cursor: &DataCursor) -> Result<(), FsckError> {
        let txn = self.store.index.db().begin_write()?;
        {
            let mut table = txn.open_table(FSCK_CURSOR)?;
            table.insert(CURSOR_KEY, cursor.encode().as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Phase 6: read and hash chunk payloads from the cursor on, on `threads` threads.
    pub(super) fn data(&mut self) -> Result<(), FsckError> {
        let (mode, pct) = match self.options.read_data {
            ReadData::None => {
                self.report.data.mode = "none".into();
                return Ok(());
            }
            ReadData::All => ("all", 100.0),
            ReadData::Subset(p) => ("subset", p.clamp(0.0, 100.0)),
        };
        self.report.data.mode = mode.into();
        let seed = now_ms().wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let threshold = (pct * 100.0).round() as u64; // out of 10 000
        let mut items: Vec<(Hash, RecordLoc)> = self
            .objects
            .iter()
            .filter(|(h, e)| e.kind == RecordKind::Chunk && !self.bad.contains_key(h))
            .filter(|(h, _)| {
                if threshold >= 10_000 {
                    return true;
                }
                let prefix = u64::from_le_bytes(h.first_chunk::<8>().copied().unwrap_or_default());
                (prefix ^ seed) % 10_000 < threshold
            })
            .map(|(h, e)| (*h, e.loc))
            .collect();
        items.sort_by_key(|(_, l)| (l.segment, l.offset));
        let mut cursor = self.load_cursor()?;
        let start = items
            .iter()
            .position(|(_, l)| (l.segment, l.offset) >= (cursor.segment, cursor.offset))
            .unwrap_or(0);
        items.rotate_left(start);
        self.report.data.selected = items.len() as u64;
        let total = items.iter().fold(0u64, |sum, (_, l)| {
            sum.saturating_add(u64::from(l.payload_len))
        });
        let progress = &self.options.progress;
        progress.stage("reading data", Some(total));
        self.report.data.started_at = items
            .first()
            .map(|(_, l)| (l.segment, l.offset))
            .unwrap_or((0, 0));

        let deadline = self.options.max_duration.map(|d| Instant::now() + d);
        let next = AtomicUsize::new(0);
        let failures: Mutex<Vec<(Hash, RecordLoc, String, bool)>> = Mutex::new(Vec::new());
        let checked_bytes = std::sync::atomic::AtomicU64::new(0);
        let done = AtomicUsize::new(0);
        let segments = &self.store.segments;
        let loose = &self.loose;
        let threads = self.options.threads.clamp(1, 16);
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    // Each thread reads at least one chunk, so every run makes progress.
                    let mut first = true;
                    loop {
                        if !first && deadline.is_some_and(|d| Instant::now() >= d) {
                            break;
                        }
                        first = false;
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let Some((hash, loc)) = items.get(i) else {
                            break;
                        };
                        let outcome =
                            match read_record(segments, loose, *loc, RecordKind::Chunk, hash) {
                                Ok(bytes) => {
                                    let actual = chunk_id(&bytes);
                                    if actual == *hash {
                                        None
                                    } else {
                                        Some((format!("bytes hash to {}", hex(&actual)), true))
                                    }
                                }
                                Err(e) => Some((e.to_string(), false)),
                            };
                        checked_bytes.fetch_add(u64::from(loc.payload_len), Ordering::Relaxed);
                        progress.advance(u64::from(loc.payload_len));
                        done.fetch_add(1, Ordering::SeqCst);
                        if let Some((detail, corrupt)) = outcome
                            && let Ok(mut f) = failures.lock()
                        {
                            f.push((*hash, *loc, detail, corrupt));
                        }
                    }
                });
            }
        });
        let claimed = next.load(Ordering::SeqCst).min(items.len());
        let checked = done.load(Ordering::SeqCst);
        let failures = failures.into_inner().unwrap_or_else(|e| e.into_inner());
        for (hash, loc, detail, corrupt) in failures {
            let kind = if corrupt {
                ProblemKind::ObjectCorrupt
            } else {
                ProblemKind::ObjectBytesMissing
            };
            self.report
                .push(kind, Severity::Error, obj_loc(&hash, loc), detail);
            if let Some((_, e)) = self.objects.iter().find(|(h, _)| *h == hash) {
                self.bad.insert(hash, *e);
            }
        }
        self.report.data.checked = checked as u64;
        self.report.data.checked_bytes = checked_bytes.load(Ordering::Relaxed);
        self.report.data.complete = claimed >= items.len();
        // A pass over the store's data ends when a run reads past the last chunk in on-disk
        // order (runs started mid-way wrap around to the first).
        if start.saturating_add(claimed) >= items.len() {
            cursor.passes_completed = cursor.passes_completed.saturating_add(1);
        }
        match items.get(claimed) {
            Some((_, l)) if !self.report.data.complete => {
                cursor.segment = l.segment;
                cursor.offset = l.offset;
            }
            _ => {
                cursor.segment = 0;
                cursor.offset = 0;
            }
        }
        cursor.updated_unix_ms = now_ms();
        self.report.data.next_at = (cursor.segment, cursor.offset);
        self.report.data.passes_completed = cursor.passes_completed;
        // Affected blobs for data failures are recomputed by the reachability walk in repair.
        if self.report.data.complete || self.options.max_duration.is_some() {
            self.save_cursor(&cursor)?;
        }
        Ok(())
    }
}
