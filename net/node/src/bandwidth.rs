//! Bandwidth classes: one node-wide byte rate (`serve --bandwidth`) shared by the payload bytes
//! of every stream — put pieces received, read and object pieces sent, pull bytes fetched —
//! and the per-stream counters `status` and the metrics report.
//!
//! Before a stream moves a piece (at most [`MAX_PIECE`] bytes) it acquires that many bytes
//! ([`Bandwidth::acquire`]); while it waits it does not move the piece, so a waiting put reads
//! nothing more and the nRPC window stops its client, and a waiting read sends nothing. The
//! decisions are [`Budget`]'s, pure and clocked by the caller: a token bucket filled at the
//! rate; a `Background` stream is served only while no `Foreground` stream waits (the time it
//! waits so counts as `paused_for_higher_class`); a `Realtime` stream takes its bytes from the
//! realtime reserve (a second bucket at `--realtime-reserve`) at once, without queueing behind
//! anyone, and those bytes still come out of the shared budget; beyond its reserve it competes
//! as `Foreground`. Without a rate nothing waits: acquiring is an atomic add to the stream's
//! counter.
//!
//! A resumable put's counters belong to its staging id and go on across the calls that resume
//! it, with the class it began with, for as long as this process runs (they are not persisted:
//! after a restart the class is the one the resuming client sends and the counters start at 0).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::proto::{BandwidthClass, MAX_PIECE, StreamRow};

/// Most upload counters kept for uploads that no call is writing right now.
const MAX_KEPT_UPLOADS: usize = 4096;

/// Parses a byte rate or size: a number (decimals allowed) with an optional SI suffix `K`
/// (10^3), `M` (10^6), `G` (10^9) or `T` (10^12), case-insensitive, optionally followed by `B`
/// or `/s` (`200M`, `1.5G`, `500K`, `8000000`). Zero is refused.
pub fn parse_rate(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let t = t.strip_suffix("/s").unwrap_or(t);
    let t = t
        .strip_suffix('B')
        .or_else(|| t.strip_suffix('b'))
        .unwrap_or(t);
    let (number, scale) = match t.char_indices().last() {
        Some((at, c)) if c.is_ascii_alphabetic() => {
            let scale: f64 = match c.to_ascii_uppercase() {
                'K' => 1e3,
                'M' => 1e6,
                'G' => 1e9,
                'T' => 1e12,
                _ => return Err(format!("{text:?}: unknown suffix {c:?} (K, M, G, T)")),
            };
            (t.get(..at).unwrap_or_default(), scale)
        }
        _ => (t, 1.0),
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a rate (e.g. 200M, 1.5G, 500K, 8000000)"))?;
    let bytes = (value * scale).round();
    if !(1.0..=1e18).contains(&bytes) {
        return Err(format!("{text:?}: a rate of 1 byte/s up to 1E/s"));
    }
    Ok(bytes as u64)
}

/// The queue a class competes in: foreground (and realtime beyond its reserve) before
/// background.
fn rank(class: BandwidthClass) -> u8 {
    match class {
        BandwidthClass::Background => 1,
        BandwidthClass::Foreground | BandwidthClass::Realtime => 0,
    }
}

/// One acquire in progress: its place in line, and since when it waits.
#[derive(Debug, Default)]
pub(crate) struct Waiter {
    ticket: Option<(u8, u64)>,
    waiting_since_ns: Option<u64>,
    /// Whether a higher class was ahead in line when that wait began.
    began_behind_higher: bool,
    /// Time yielded so far, taken by the caller.
    yielded_ns: u64,
}

/// What [`Budget::decide`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Move the bytes now.
    Go,
    /// Ask again after this long.
    Wait(Duration),
}

/// The scheduler's state: pure, clocked in nanoseconds by the caller.
#[derive(Debug)]
pub(crate) struct Budget {
    rate: f64,
    reserve: f64,
    tokens: f64,
    reserve_tokens: f64,
    burst: f64,
    reserve_burst: f64,
    last_ns: u64,
    /// When a foreground (or realtime) acquire last went.
    higher_went_ns: Option<u64>,
    /// The acquires waiting, in the order they are served: by class rank, then by arrival.
    line: BTreeSet<(u8, u64)>,
    next_ticket: u64,
}

impl Budget {
    /// A budget of `rate` bytes/s with `reserve` of them for realtime streams.
    pub(crate) fn new(rate: u64, reserve: u64) -> Budget {
        let rate = rate.max(1) as f64;
        let reserve = (reserve as f64).min(rate);
        // The buckets hold enough that a timer firing late loses no bandwidth.
        let burst = (2.0 * MAX_PIECE as f64).max(rate / 10.0);
        let reserve_burst = (MAX_PIECE as f64).max(reserve / 10.0);
        Budget {
            rate,
            reserve,
            tokens: 0.0,
            reserve_tokens: if reserve > 0.0 { reserve_burst } else { 0.0 },
            burst,
            reserve_burst,
            last_ns: 0,
            higher_went_ns: None,
            line: BTreeSet::new(),
            next_ticket: 0,
        }
    }

    fn refill(&mut self, now_ns: u64) {
        let elapsed = now_ns.saturating_sub(self.last_ns) as f64 / 1e9;
        self.last_ns = self.last_ns.max(now_ns);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.reserve > 0.0 {
            self.reserve_tokens =
                (self.reserve_tokens + elapsed * self.reserve).min(self.reserve_burst);
        }
    }

    fn wait_for(deficit: f64, rate: f64) -> Duration {
        Duration::from_secs_f64((deficit / rate).clamp(0.0005, 1.0))
    }

    /// Whether `bytes` of a `class` stream may move at `now_ns`; `w` is the acquire's own state
    /// (the same across its calls until it goes). A background acquire's wait counts as
    /// yielded (`w.yielded_ns`) when a higher class waited at its start or its end, or went
    /// during it.
    pub(crate) fn decide(
        &mut self,
        now_ns: u64,
        class: BandwidthClass,
        bytes: u64,
        w: &mut Waiter,
    ) -> Decision {
        self.refill(now_ns);
        if let Some(since) = w.waiting_since_ns.take() {
            let higher_went = self.higher_went_ns.is_some_and(|t| t >= since);
            let higher_waits = self.line.first().is_some_and(|head| head.0 < rank(class));
            if w.began_behind_higher || higher_went || higher_waits {
                w.yielded_ns = w.yielded_ns.saturating_add(now_ns.saturating_sub(since));
            }
        }
        let need = bytes.min(MAX_PIECE as u64) as f64;
        let mut reserve_wait = None;
        if class == BandwidthClass::Realtime && self.reserve > 0.0 {
            if self.reserve_tokens >= need {
                // Within the reserve: no queue; the bytes still count against the budget.
                self.reserve_tokens -= need;
                self.tokens = (self.tokens - need).max(-self.burst);
                self.higher_went_ns = Some(now_ns);
                self.cancel(w);
                return Decision::Go;
            }
            reserve_wait = Some(Budget::wait_for(need - self.reserve_tokens, self.reserve));
        }
        let ticket = *w.ticket.get_or_insert_with(|| {
            self.next_ticket = self.next_ticket.wrapping_add(1);
            (rank(class), self.next_ticket)
        });
        self.line.insert(ticket);
        let wait = match self.line.first() {
            Some(&head) if head != ticket => Budget::wait_for(need, self.rate),
            _ if self.tokens >= need => {
                self.tokens -= need;
                if ticket.0 == 0 {
                    self.higher_went_ns = Some(now_ns);
                }
                self.cancel(w);
                return Decision::Go;
            }
            _ => Budget::wait_for(need - self.tokens, self.rate),
        };
        if ticket.0 > 0 {
            w.waiting_since_ns = Some(now_ns);
            w.began_behind_higher = self.line.first().is_some_and(|head| head.0 < ticket.0);
        }
        Decision::Wait(reserve_wait.map_or(wait, |r| r.min(wait)))
    }

    /// Takes an acquire out of the line (it went, or its call ended).
    pub(crate) fn cancel(&mut self, w: &mut Waiter) {
        if let Some(ticket) = w.ticket.take() {
            self.line.remove(&ticket);
        }
    }
}

/// One stream's class and counters.
#[derive(Debug)]
pub struct StreamStats {
    id: String,
    kind: &'static str,
    class: BandwidthClass,
    bytes: AtomicU64,
    paused_ns: AtomicU64,
}

impl StreamStats {
    pub fn class(&self) -> BandwidthClass {
        self.class
    }

    pub fn row(&self) -> StreamRow {
        StreamRow {
            id: self.id.clone(),
            kind: self.kind.to_string(),
            class: self.class,
            bytes_in_class: self.bytes.load(Ordering::Relaxed),
            paused_for_higher_class_ms: self.paused_ns.load(Ordering::Relaxed) / 1_000_000,
        }
    }
}

/// The node's bandwidth: its budget (none: unlimited), the live streams and the counters of
/// resumable uploads.
#[derive(Debug)]
pub struct Bandwidth {
    budget: Option<Mutex<Budget>>,
    epoch: Instant,
    next_serial: AtomicU64,
    live: Mutex<BTreeMap<u64, Arc<StreamStats>>>,
    uploads: Mutex<HashMap<String, Arc<StreamStats>>>,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A stream counted as live until dropped.
#[derive(Debug)]
pub struct LiveStream {
    bandwidth: Arc<Bandwidth>,
    serial: u64,
    stats: Arc<StreamStats>,
}

impl LiveStream {
    pub fn stats(&self) -> &Arc<StreamStats> {
        &self.stats
    }

    /// Waits until `bytes` may move (see [`Bandwidth::acquire`]).
    pub async fn acquire(&self, bytes: u64) {
        self.bandwidth.acquire(&self.stats, bytes).await;
    }
}

impl Drop for LiveStream {
    fn drop(&mut self) {
        locked(&self.bandwidth.live).remove(&self.serial);
    }
}

/// Takes an acquire off the waiting counts when it is dropped mid-wait.
struct Pending<'a> {
    budget: &'a Mutex<Budget>,
    waiter: Waiter,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        locked(self.budget).cancel(&mut self.waiter);
    }
}

impl Bandwidth {
    /// `rate` bytes/s for all streams (`None`: unlimited), `reserve` of them for realtime ones.
    pub fn new(rate: Option<u64>, reserve: u64) -> Bandwidth {
        Bandwidth {
            budget: rate.map(|r| Mutex::new(Budget::new(r, reserve))),
            epoch: Instant::now(),
            next_serial: AtomicU64::new(1),
            live: Mutex::new(BTreeMap::new()),
            uploads: Mutex::new(HashMap::new()),
        }
    }

    fn register(self: &Arc<Self>, stats: Arc<StreamStats>) -> LiveStream {
        let serial = self.next_serial.fetch_add(1, Ordering::Relaxed);
        locked(&self.live).insert(serial, Arc::clone(&stats));
        LiveStream {
            bandwidth: Arc::clone(self),
            serial,
            stats,
        }
    }

    /// A new live stream of `kind` (`read`, `objects`, `pull`, or a put without a staging id).
    pub fn open(self: &Arc<Self>, kind: &'static str, class: BandwidthClass) -> LiveStream {
        let n = self.next_serial.load(Ordering::Relaxed);
        self.register(Arc::new(StreamStats {
            id: format!("{kind}-{n}"),
            kind,
            class,
            bytes: AtomicU64::new(0),
            paused_ns: AtomicU64::new(0),
        }))
    }

    /// The live stream of upload `staging_id`: its class and counters so far if a call of this
    /// process moved it before, else new ones of `class`.
    pub fn open_upload(self: &Arc<Self>, staging_id: &str, class: BandwidthClass) -> LiveStream {
        let stats = {
            let mut uploads = locked(&self.uploads);
            if uploads.len() >= MAX_KEPT_UPLOADS && !uploads.contains_key(staging_id) {
                uploads.retain(|_, s| Arc::strong_count(s) > 1);
            }
            Arc::clone(uploads.entry(staging_id.to_string()).or_insert_with(|| {
                Arc::new(StreamStats {
                    id: format!("put:{staging_id}"),
                    kind: "put",
                    class,
                    bytes: AtomicU64::new(0),
                    paused_ns: AtomicU64::new(0),
                })
            }))
        };
        self.register(stats)
    }

    /// Forgets the counters of a finished upload.
    pub fn upload_finished(&self, staging_id: &str) {
        locked(&self.uploads).remove(staging_id);
    }

    /// Uploads whose class and counters are kept (live ones, and resumable ones whose last
    /// call failed, until pruned past [`MAX_KEPT_UPLOADS`]).
    pub fn kept_uploads(&self) -> usize {
        locked(&self.uploads).len()
    }

    /// Waits until `bytes` of `stream` may move, then counts them.
    pub async fn acquire(&self, stream: &StreamStats, bytes: u64) {
        if let Some(budget) = &self.budget {
            let mut pending = Pending {
                budget,
                waiter: Waiter::default(),
            };
            loop {
                let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
                let decision = locked(budget).decide(now, stream.class, bytes, &mut pending.waiter);
                let yielded = std::mem::take(&mut pending.waiter.yielded_ns);
                stream.paused_ns.fetch_add(yielded, Ordering::Relaxed);
                match decision {
                    Decision::Go => break,
                    Decision::Wait(d) => tokio::time::sleep(d).await,
                }
            }
        }
        stream.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// The live streams, oldest first.
    pub fn live(&self) -> Vec<StreamRow> {
        locked(&self.live).values().map(|s| s.row()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = MAX_PIECE as u64;

    #[test]
    fn rates_parse_with_si_suffixes() {
        assert_eq!(parse_rate("200M"), Ok(200_000_000));
        assert_eq!(parse_rate("1.5G"), Ok(1_500_000_000));
        assert_eq!(parse_rate("500k"), Ok(500_000));
        assert_eq!(parse_rate("8000000"), Ok(8_000_000));
        assert_eq!(parse_rate("8MB/s"), Ok(8_000_000));
        for bad in ["", "0", "-1M", "12X", "M", "1e30"] {
            assert!(parse_rate(bad).is_err(), "{bad:?}");
        }
    }

    /// A stream in the simulation: its class, bytes to move, and when it may ask next.
    struct Sim {
        class: BandwidthClass,
        left: u64,
        moved: u64,
        next_ns: u64,
        waiter: Waiter,
        paused_ns: u64,
    }

    fn sim(class: BandwidthClass, total: u64) -> Sim {
        Sim {
            class,
            left: total,
            moved: 0,
            next_ns: 0,
            waiter: Waiter::default(),
            paused_ns: 0,
        }
    }

    /// Runs streams that always want their next piece at once (a fake clock, one event at a
    /// time: the earliest asker goes first) until `until_ns` or every stream is done; returns
    /// the bytes each moved before `until_ns` and the time the last one finished.
    fn run(budget: &mut Budget, streams: &mut [Sim], until_ns: u64) -> u64 {
        let mut now = 0;
        loop {
            let Some(s) = streams
                .iter_mut()
                .filter(|s| s.left > 0)
                .min_by_key(|s| s.next_ns)
            else {
                return now;
            };
            now = s.next_ns;
            if now >= until_ns {
                return now;
            }
            let piece = s.left.min(MIB);
            match budget.decide(now, s.class, piece, &mut s.waiter) {
                Decision::Go => {
                    s.left -= piece;
                    s.moved += piece;
                    // The next piece is asked for a little later (it has to arrive first).
                    s.next_ns = now + 100_000;
                }
                Decision::Wait(d) => s.next_ns = now + d.as_nanos() as u64,
            }
            s.paused_ns += std::mem::take(&mut s.waiter.yielded_ns);
        }
    }

    #[test]
    fn background_yields_to_foreground_and_finishes_after_it() {
        let mut budget = Budget::new(8_000_000, 0);
        let mut streams = [
            sim(BandwidthClass::Foreground, 40 * MIB),
            sim(BandwidthClass::Background, 40 * MIB),
        ];
        // While both run (the first 4 s: the foreground needs ~5.2 s for its 40 MiB).
        run(&mut budget, &mut streams, 4_000_000_000);
        let [fg, bg] = &streams;
        let share = fg.moved as f64 / (fg.moved + bg.moved) as f64;
        assert!(share >= 0.95, "foreground share {share}");
        assert!(bg.paused_ns > 3_000_000_000, "paused {}", bg.paused_ns);
        let end = run(&mut budget, &mut streams, u64::MAX);
        assert!(streams.iter().all(|s| s.left == 0));
        // 80 MiB at 8 MB/s take about 10.5 s, not much more.
        assert!((10_000_000_000..11_500_000_000).contains(&end), "{end}");
    }

    #[test]
    fn streams_of_one_class_share_the_rate() {
        let mut budget = Budget::new(8_000_000, 0);
        let mut streams = [
            sim(BandwidthClass::Foreground, 100 * MIB),
            sim(BandwidthClass::Foreground, 100 * MIB),
        ];
        run(&mut budget, &mut streams, 5_000_000_000);
        let [a, b] = &streams;
        let total = a.moved + b.moved;
        // 5 s at 8 MB/s, within a piece or two.
        assert!((36 * MIB..=40 * MIB).contains(&total), "{total}");
        let share = a.moved as f64 / total as f64;
        assert!((0.4..=0.6).contains(&share), "{share}");
    }

    #[test]
    fn realtime_keeps_its_reserve_under_a_foreground_flood() {
        let mut budget = Budget::new(8_000_000, 4_000_000);
        let mut streams = [
            sim(BandwidthClass::Realtime, 100 * MIB),
            sim(BandwidthClass::Foreground, 100 * MIB),
            sim(BandwidthClass::Foreground, 100 * MIB),
            sim(BandwidthClass::Foreground, 100 * MIB),
        ];
        run(&mut budget, &mut streams, 5_000_000_000);
        let total: u64 = streams.iter().map(|s| s.moved).sum();
        let share = streams[0].moved as f64 / total as f64;
        // The reserve is half the rate; the rest is shared with three foreground streams.
        assert!(share >= 0.5, "realtime share {share}");
        // The reserve comes out of the budget: the total stays the rate.
        assert!(total <= 42 * MIB, "{total}");
    }

    #[test]
    fn realtime_without_a_reserve_is_foreground() {
        let mut budget = Budget::new(8_000_000, 0);
        let mut streams = [
            sim(BandwidthClass::Realtime, 100 * MIB),
            sim(BandwidthClass::Foreground, 100 * MIB),
            sim(BandwidthClass::Background, 100 * MIB),
        ];
        run(&mut budget, &mut streams, 5_000_000_000);
        let [rt, fg, bg] = &streams;
        let share = rt.moved as f64 / (rt.moved + fg.moved) as f64;
        assert!((0.4..=0.6).contains(&share), "{share}");
        assert!(bg.moved <= 2 * MIB, "{}", bg.moved);
    }

    #[test]
    fn a_cancelled_foreground_wait_lets_background_go() {
        let mut budget = Budget::new(1_000_000, 0);
        let mut fg = Waiter::default();
        assert!(matches!(
            budget.decide(0, BandwidthClass::Foreground, MIB, &mut fg),
            Decision::Wait(_)
        ));
        let mut bg = Waiter::default();
        assert!(matches!(
            budget.decide(2_000_000_000, BandwidthClass::Background, MIB, &mut bg),
            Decision::Wait(_)
        ));
        budget.cancel(&mut fg);
        assert_eq!(
            budget.decide(2_000_000_001, BandwidthClass::Background, MIB, &mut bg),
            Decision::Go
        );
        assert_eq!(bg.yielded_ns, 1);
    }

    #[tokio::test]
    async fn unlimited_streams_only_count() {
        let bw = Arc::new(Bandwidth::new(None, 0));
        let a = bw.open_upload("up-1", BandwidthClass::Background);
        a.acquire(5).await;
        drop(a);
        assert!(bw.live().is_empty());
        // A resumed upload keeps its class and its counters.
        let again = bw.open_upload("up-1", BandwidthClass::Foreground);
        again.acquire(3).await;
        let rows = bw.live();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].id, "put:up-1");
        assert_eq!(rows[0].class, BandwidthClass::Background);
        assert_eq!(rows[0].bytes_in_class, 8);
        drop(again);
        bw.upload_finished("up-1");
        let fresh = bw.open_upload("up-1", BandwidthClass::Realtime);
        assert_eq!(fresh.stats().row().bytes_in_class, 0);
    }
}
