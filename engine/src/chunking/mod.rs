//! Chunking policy and a push-based chunker. Pure code: no I/O.
//!
//! Boundaries depend only on the bytes since the previous boundary, so chunking restarted at a
//! boundary (a resumed upload) yields exactly the chunks an uninterrupted run would have.

mod gear;

use std::fmt;
use std::str::FromStr;

use fastcdc::v2020::{self, Normalization};

use crate::chunking::gear::CdcParams;
use crate::codec::MAX_CHUNK_SIZE;

const KIB: u32 = 1024;
const MIB: u32 = 1024 * KIB;

/// How a byte stream is cut into chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChunkingStrategy {
    /// FastCDC (2020, normalization level 1) content-defined chunking.
    Cdc { avg: u32, min: u32, max: u32 },
    /// Fixed-size chunks; the last one may be shorter.
    Fixed { size: u32 },
}

impl Default for ChunkingStrategy {
    fn default() -> Self {
        ChunkingStrategy::Cdc {
            avg: MIB,
            min: 256 * KIB,
            max: 4 * MIB,
        }
    }
}

/// Why a chunking strategy was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkingError {
    #[error("cdc {field} = {value} is outside {lo}..={hi}")]
    OutOfRange {
        field: &'static str,
        value: u32,
        lo: u32,
        hi: u32,
    },
    #[error("cdc sizes must satisfy min < avg < max (got min {min}, avg {avg}, max {max})")]
    NotOrdered { min: u32, avg: u32, max: u32 },
    #[error("cdc {field} = {value} must be even")]
    Odd { field: &'static str, value: u32 },
    #[error("fixed chunk size {size} is outside 1..={max}")]
    FixedSize { size: u32, max: u32 },
    #[error("cannot parse chunking {text:?}: expected cdc, cdc:MIN,AVG,MAX or fixed:SIZE")]
    Syntax { text: String },
}

fn to_u32(v: usize) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

impl ChunkingStrategy {
    /// Checks the parameters against what the chunker and the object format accept.
    pub fn validate(&self) -> Result<(), ChunkingError> {
        match *self {
            ChunkingStrategy::Cdc { avg, min, max } => {
                let check = |field, value: u32, lo: usize, hi: usize| {
                    let (lo, hi) = (to_u32(lo), to_u32(hi));
                    if value < lo || value > hi {
                        return Err(ChunkingError::OutOfRange {
                            field,
                            value,
                            lo,
                            hi,
                        });
                    }
                    if !value.is_multiple_of(2) {
                        return Err(ChunkingError::Odd { field, value });
                    }
                    Ok(())
                };
                check("min", min, v2020::MINIMUM_MIN, v2020::MINIMUM_MAX)?;
                check("avg", avg, v2020::AVERAGE_MIN, v2020::AVERAGE_MAX)?;
                let max_hi = v2020::MAXIMUM_MAX.min(MAX_CHUNK_SIZE as usize);
                check("max", max, v2020::MAXIMUM_MIN, max_hi)?;
                if !(min < avg && avg < max) {
                    return Err(ChunkingError::NotOrdered { min, avg, max });
                }
                Ok(())
            }
            ChunkingStrategy::Fixed { size } => {
                if size == 0 || size > MAX_CHUNK_SIZE {
                    return Err(ChunkingError::FixedSize {
                        size,
                        max: MAX_CHUNK_SIZE,
                    });
                }
                Ok(())
            }
        }
    }

    /// The largest chunk this strategy can produce.
    pub fn max_chunk(&self) -> u32 {
        match *self {
            ChunkingStrategy::Cdc { max, .. } => max,
            ChunkingStrategy::Fixed { size } => size,
        }
    }
}

impl fmt::Display for ChunkingStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChunkingStrategy::Cdc { avg, min, max } => write!(f, "cdc:{min},{avg},{max}"),
            ChunkingStrategy::Fixed { size } => write!(f, "fixed:{size}"),
        }
    }
}

impl FromStr for ChunkingStrategy {
    type Err = ChunkingError;

    /// Parses `cdc`, `cdc:MIN,AVG,MAX` or `fixed:SIZE` (sizes in bytes, or with a K/M suffix
    /// meaning KiB/MiB), then validates.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let syntax = || ChunkingError::Syntax {
            text: text.to_string(),
        };
        let strategy = if text == "cdc" {
            ChunkingStrategy::default()
        } else if let Some(rest) = text.strip_prefix("cdc:") {
            let parts: Vec<u32> = rest
                .split(',')
                .map(parse_size)
                .collect::<Option<_>>()
                .ok_or_else(syntax)?;
            match parts.as_slice() {
                [min, avg, max] => ChunkingStrategy::Cdc {
                    avg: *avg,
                    min: *min,
                    max: *max,
                },
                _ => return Err(syntax()),
            }
        } else if let Some(rest) = text.strip_prefix("fixed:") {
            ChunkingStrategy::Fixed {
                size: parse_size(rest).ok_or_else(syntax)?,
            }
        } else {
            return Err(syntax());
        };
        strategy.validate()?;
        Ok(strategy)
    }
}

fn parse_size(text: &str) -> Option<u32> {
    let (digits, unit) = match text.strip_suffix(['K', 'k']) {
        Some(d) => (d, KIB),
        None => match text.strip_suffix(['M', 'm']) {
            Some(d) => (d, MIB),
            None => (text, 1),
        },
    };
    digits.parse::<u32>().ok()?.checked_mul(unit)
}

/// Cuts a stream pushed in pieces of any size into chunks.
///
/// Holds fewer than `max_chunk` pending bytes between pushes, whatever the size of the pieces
/// (its buffer: at most four `max_chunk`).
#[derive(Debug)]
pub struct Chunker {
    cut: Cutter,
    buf: Vec<u8>,
    /// Start of the bytes in `buf` not yet emitted.
    start: usize,
}

#[derive(Debug, Clone, Copy)]
enum Cutter {
    Cdc(CdcParams),
    Fixed { size: usize },
}

impl Cutter {
    fn max(&self) -> usize {
        match *self {
            Cutter::Cdc(params) => params.max,
            Cutter::Fixed { size } => size,
        }
    }

    /// Length of the next chunk at the start of `data` (`data` is non-empty, and either at least
    /// `max` long or the end of the stream).
    fn next_len(&self, data: &[u8]) -> usize {
        match *self {
            Cutter::Cdc(params) => {
                crate::chunking::gear::cut_len(data, &params).clamp(1, data.len())
            }
            Cutter::Fixed { size } => size.min(data.len()),
        }
    }

    /// [`Cutter::next_len`] of the bytes of `parts` one after another (`total` of them).
    fn next_len_parts(&self, parts: &[&[u8]], total: usize) -> usize {
        match *self {
            Cutter::Cdc(params) => {
                crate::chunking::gear::cut_len_parts(parts, &params).clamp(1, total)
            }
            Cutter::Fixed { size } => size.min(total),
        }
    }
}

impl Chunker {
    pub fn new(strategy: ChunkingStrategy) -> Result<Chunker, ChunkingError> {
        strategy.validate()?;
        let cut = match strategy {
            ChunkingStrategy::Cdc { avg, min, max } => {
                let (mask_s, mask_l) = v2020::select_masks(avg as usize, Normalization::Level1);
                Cutter::Cdc(CdcParams {
                    min: min as usize,
                    avg: avg as usize,
                    max: max as usize,
                    mask_s,
                    mask_l,
                })
            }
            ChunkingStrategy::Fixed { size } => Cutter::Fixed {
                size: size as usize,
            },
        };
        Ok(Chunker {
            cut,
            buf: Vec::new(),
            start: 0,
        })
    }

    /// Bytes pushed but not yet emitted as a chunk.
    pub fn pending(&self) -> usize {
        self.buf.len().saturating_sub(self.start)
    }

    /// Adds bytes; emits every chunk whose end is now certain.
    ///
    /// Only the bytes a cut needs next to the pending ones are copied: the pending bytes
    /// (fewer than `max`) and at most `max` bytes of `data` are cut in the buffer; once a chunk
    /// ends inside `data`, the rest of `data` is cut where it lies, and its tail (fewer than
    /// `max` bytes) is kept for the next push. A boundary depends only on the bytes since the
    /// previous one, so where the bytes lie does not change the chunks.
    pub fn push<E>(
        &mut self,
        mut data: &[u8],
        mut emit: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let max = self.cut.max();
        if self.pending() > 0 {
            let add = data.get(..max).unwrap_or(data);
            // Room for `add` without growing: drop what was emitted first. When it must grow,
            // it grows to one `max` plus `add` (what the pending bytes and `add` can need,
            // not by doubling), so a chunker fed pieces of one size keeps one buffer.
            let fits = self.buf.len().saturating_add(add.len()) <= self.buf.capacity();
            if self.start > 0 && (!fits || self.start >= self.buf.len() / 2) {
                self.buf.drain(..self.start);
                self.start = 0;
            }
            let needed = self.buf.len().saturating_add(add.len());
            if needed > self.buf.capacity() {
                let room = needed.max(max.saturating_add(add.len()));
                self.buf.reserve_exact(room.saturating_sub(self.buf.len()));
            }
            // `buf[held..]` is `data[..add.len()]`.
            let held = self.buf.len();
            self.buf.extend_from_slice(add);
            while let Some(rest) = self.buf.get(self.start..).filter(|r| r.len() >= max) {
                let len = self.cut.next_len(rest);
                if let Some(chunk) = rest.get(..len) {
                    emit(chunk)?;
                }
                self.start += len;
                if self.start >= held {
                    break;
                }
            }
            if self.start < held {
                // Fewer than `max` bytes pending, so `add` was all of `data` (had it been
                // `max` bytes, a chunk would have ended inside it).
                return Ok(());
            }
            // A chunk ended inside `data`: cut the rest of `data` where it lies.
            data = data
                .get(self.start.saturating_sub(held)..)
                .unwrap_or_default();
            self.buf.clear();
            self.start = 0;
        }
        while data.len() >= max {
            let Some((chunk, rest)) = data.split_at_checked(self.cut.next_len(data)) else {
                break;
            };
            emit(chunk)?;
            data = rest;
        }
        // Nothing pending here: keep the tail (fewer than `max` bytes) for the next push.
        self.buf.clear();
        self.start = 0;
        self.buf.extend_from_slice(data);
        Ok(())
    }

    /// Ends the stream: emits the remaining bytes as the final chunk(s).
    pub fn finish<E>(mut self, mut emit: impl FnMut(&[u8]) -> Result<(), E>) -> Result<(), E> {
        while let Some(rest) = self.buf.get(self.start..).filter(|r| !r.is_empty()) {
            let len = self.cut.next_len(rest);
            if let Some(chunk) = rest.get(..len) {
                emit(chunk)?;
            }
            self.start += len;
        }
        Ok(())
    }
}

/// Cuts whole blocks of a stream on two threads, with exactly the boundaries of [`Chunker`].
///
/// A block is split in half; the second half is cut on a helper thread starting fresh at the
/// midpoint, while the first half is cut from the block's start. The first chain then continues
/// past the midpoint until one of its boundaries is also a boundary of the second chain: since a
/// boundary depends only on the bytes since the previous one, from that shared boundary on both
/// chains cut identically, and the rest of the second chain is taken as is. If the chains never
/// meet, the first chain simply cuts the whole block (the sequential result).
#[derive(Debug, Clone, Copy)]
pub struct BlockCutter {
    cut: Cutter,
}

impl BlockCutter {
    pub fn new(strategy: ChunkingStrategy) -> Result<BlockCutter, ChunkingError> {
        Ok(BlockCutter {
            cut: Chunker::new(strategy)?.cut,
        })
    }

    /// The largest chunk; a block that is not the stream's end keeps its last `< max` bytes
    /// (and whatever chunk could still grow) for the next block.
    pub fn max_chunk(&self) -> usize {
        self.cut.max()
    }

    /// Chunk end offsets in `block`, in order, for every chunk whose end is certain: all of
    /// them when `eof`, else those that start at least `max_chunk` bytes before the block's end
    /// (what [`Chunker::push`] would have emitted). The caller carries the bytes after the last
    /// end over to the next block.
    pub fn cut_block(&self, block: &[u8], eof: bool) -> Vec<usize> {
        let max = self.cut.max();
        if block.len() < 4 * max {
            return self.chain(block, 0, None, eof);
        }
        let mid = block.len() / 2;
        std::thread::scope(|scope| {
            let second = scope.spawn(|| self.chain(block, mid, None, eof));
            let mut ends = self.chain(block, 0, Some(mid), eof);
            let start = ends.last().copied().unwrap_or(0);
            match second.join() {
                Ok(second_ends) => {
                    ends.extend(self.join_chains(block, start, &second_ends, mid, eof));
                }
                // The helper only runs the same cut code; if it died, cut sequentially.
                Err(_) => ends.extend(self.chain(block, start, None, eof)),
            }
            ends
        })
    }

    /// What [`BlockCutter::cut_block`] returns, computed on the calling thread alone.
    pub fn cut_block_on_this_thread(&self, block: &[u8], eof: bool) -> Vec<usize> {
        self.chain(block, 0, None, eof)
    }

    /// What [`BlockCutter::cut_block_on_this_thread`] returns for the bytes of `parts` one
    /// after another, read where they lie: the chunks of a stream received in pieces need no
    /// copy into one block. Ends are offsets into the concatenation.
    pub fn cut_parts(&self, parts: &[&[u8]], eof: bool) -> Vec<usize> {
        let max = self.cut.max();
        let total = parts
            .iter()
            .fold(0usize, |sum, part| sum.saturating_add(part.len()));
        let mut ends = Vec::new();
        // The next chunk starts at `start`, inside `parts[first]`, which starts at `first_at`.
        let (mut start, mut first, mut first_at) = (0usize, 0usize, 0usize);
        loop {
            let left = total.saturating_sub(start);
            if left == 0 || (!eof && left < max) {
                return ends;
            }
            while let Some(part) = parts.get(first).filter(|p| first_at + p.len() <= start) {
                first_at += part.len();
                first += 1;
            }
            let mut rest: Vec<&[u8]> = Vec::with_capacity(parts.len().saturating_sub(first));
            if let Some(part) = parts.get(first) {
                rest.push(part.get(start - first_at..).unwrap_or_default());
            }
            rest.extend(parts.get(first + 1..).unwrap_or_default());
            start += self.cut.next_len_parts(&rest, left);
            ends.push(start);
        }
    }

    /// Cuts from `start` while a chunk's end is certain, stopping at the first boundary at or
    /// past `stop` (if given). Returns the chunk ends.
    fn chain(&self, block: &[u8], mut start: usize, stop: Option<usize>, eof: bool) -> Vec<usize> {
        let max = self.cut.max();
        let mut ends = Vec::new();
        while stop.is_none_or(|s| start < s) {
            let Some(rest) = block.get(start..).filter(|r| !r.is_empty()) else {
                break;
            };
            if !eof && rest.len() < max {
                break;
            }
            start += self.cut.next_len(rest);
            ends.push(start);
        }
        ends
    }

    /// Continues the first chain from `start` (≥ the midpoint, or where it stopped) until it
    /// lands on a boundary of the second chain (which starts at `mid`), then takes the rest of
    /// the second chain.
    fn join_chains(
        &self,
        block: &[u8],
        mut start: usize,
        second: &[usize],
        mid: usize,
        eof: bool,
    ) -> Vec<usize> {
        let max = self.cut.max();
        let mut ends = Vec::new();
        loop {
            let shared = if start == mid {
                Some(0)
            } else {
                second.binary_search(&start).ok().map(|i| i + 1)
            };
            if let Some(from) = shared {
                ends.extend(second.get(from..).unwrap_or_default());
                return ends;
            }
            let Some(rest) = block.get(start..).filter(|r| !r.is_empty()) else {
                return ends;
            };
            if !eof && rest.len() < max {
                return ends;
            }
            start += self.cut.next_len(rest);
            ends.push(start);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk_all(strategy: ChunkingStrategy, data: &[u8], piece: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut chunker = Chunker::new(strategy).unwrap();
        for part in data.chunks(piece.max(1)) {
            chunker
                .push(part, |c| {
                    out.push(c.to_vec());
                    Ok::<(), ()>(())
                })
                .unwrap();
        }
        chunker
            .finish(|c| {
                out.push(c.to_vec());
                Ok::<(), ()>(())
            })
            .unwrap();
        out
    }

    fn random(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    const SMALL_CDC: ChunkingStrategy = ChunkingStrategy::Cdc {
        avg: 4096,
        min: 1024,
        max: 16384,
    };

    #[test]
    fn cdc_chunks_concatenate_to_input_and_respect_bounds() {
        let data = random(300_000, 7);
        let chunks = chunk_all(SMALL_CDC, &data, 1000);
        assert_eq!(chunks.concat(), data);
        assert!(chunks.len() > 10);
        let (last, body) = chunks.split_last().unwrap();
        assert!(body.iter().all(|c| (1024..=16384).contains(&c.len())));
        assert!(!last.is_empty() && last.len() <= 16384);
    }

    #[test]
    fn push_piece_size_does_not_change_boundaries() {
        let data = random(200_000, 9);
        let a = chunk_all(SMALL_CDC, &data, 1);
        let b = chunk_all(SMALL_CDC, &data, 7919);
        let c = chunk_all(SMALL_CDC, &data, data.len());
        assert_eq!(a, b);
        assert_eq!(b, c);
    }

    /// Pieces of changing sizes around `max` (cut in the buffer, where they lie, or both in
    /// one push) give the chunks of the whole stream in one piece; the chunker's buffer stays
    /// within four `max`.
    #[test]
    fn pieces_of_any_sizes_give_the_chunks_of_the_whole_stream() {
        let fixed = ChunkingStrategy::Fixed { size: 5000 };
        for strategy in [SMALL_CDC, fixed] {
            let max = Chunker::new(strategy).unwrap().cut.max();
            let data = random(600_000, 21);
            let whole = chunk_all(strategy, &data, data.len());
            let sizes = [
                1,
                max - 1,
                max,
                max + 1,
                2 * max + 3,
                3,
                5 * max,
                777,
                max / 2,
            ];
            for shift in 0..sizes.len() {
                let mut chunker = Chunker::new(strategy).unwrap();
                let mut out = Vec::new();
                let mut rest = &data[..];
                let mut i = shift;
                while !rest.is_empty() {
                    let (piece, tail) = rest.split_at(sizes[i % sizes.len()].min(rest.len()));
                    chunker
                        .push(piece, |c| {
                            out.push(c.to_vec());
                            Ok::<(), ()>(())
                        })
                        .unwrap();
                    assert!(chunker.pending() < max, "{} pending", chunker.pending());
                    let room = chunker.buf.capacity();
                    assert!(room <= 4 * max, "a buffer of {room} bytes");
                    rest = tail;
                    i += 1;
                }
                chunker
                    .finish(|c| {
                        out.push(c.to_vec());
                        Ok::<(), ()>(())
                    })
                    .unwrap();
                assert_eq!(out, whole, "shift {shift}");
            }
        }
    }

    #[test]
    fn restart_at_a_boundary_yields_the_same_chunks() {
        let data = random(200_000, 11);
        let all = chunk_all(SMALL_CDC, &data, 4096);
        let skip: usize = all.iter().take(5).map(Vec::len).sum();
        let resumed = chunk_all(SMALL_CDC, &data[skip..], 4096);
        assert_eq!(&all[5..], resumed.as_slice());
    }

    #[test]
    fn insert_one_byte_changes_only_nearby_chunks() {
        let data = random(400_000, 13);
        let mut edited = data.clone();
        edited.insert(200_000, 0x55);
        let a = chunk_all(SMALL_CDC, &data, 65536);
        let b = chunk_all(SMALL_CDC, &edited, 65536);
        let common = a.iter().filter(|c| b.contains(c)).count();
        assert!(
            a.len() - common <= 3,
            "{} of {} chunks changed",
            a.len() - common,
            a.len()
        );
    }

    #[test]
    fn fixed_chunks_have_exact_size() {
        let data = random(10_001, 3);
        let chunks = chunk_all(ChunkingStrategy::Fixed { size: 1000 }, &data, 333);
        assert_eq!(chunks.len(), 11);
        assert!(chunks[..10].iter().all(|c| c.len() == 1000));
        assert_eq!(chunks[10].len(), 1);
    }

    #[test]
    fn empty_input_emits_nothing() {
        assert!(chunk_all(SMALL_CDC, &[], 10).is_empty());
    }

    #[test]
    fn invalid_parameters_are_typed_errors() {
        let bad = |s: &str| s.parse::<ChunkingStrategy>().unwrap_err();
        assert!(matches!(
            bad("cdc:10,4096,16384"),
            ChunkingError::OutOfRange { field: "min", .. }
        ));
        assert!(matches!(
            bad("cdc:8192,4096,16384"),
            ChunkingError::NotOrdered { .. }
        ));
        assert!(matches!(
            bad("cdc:1025,4096,16384"),
            ChunkingError::Odd { field: "min", .. }
        ));
        assert!(matches!(bad("fixed:0"), ChunkingError::FixedSize { .. }));
        assert!(matches!(bad("fixed:17M"), ChunkingError::FixedSize { .. }));
        assert!(matches!(bad("zstd"), ChunkingError::Syntax { .. }));
        assert!(matches!(bad("cdc:1,2"), ChunkingError::Syntax { .. }));
        assert_eq!(
            "cdc".parse::<ChunkingStrategy>().unwrap(),
            ChunkingStrategy::default()
        );
        assert_eq!(
            "cdc:256K,1M,4M".parse::<ChunkingStrategy>().unwrap(),
            ChunkingStrategy::default()
        );
        assert_eq!(
            "fixed:64K".parse::<ChunkingStrategy>().unwrap(),
            ChunkingStrategy::Fixed { size: 65536 }
        );
    }

    #[test]
    fn display_round_trips() {
        for s in [
            ChunkingStrategy::default(),
            SMALL_CDC,
            ChunkingStrategy::Fixed { size: 4096 },
        ] {
            assert_eq!(s.to_string().parse::<ChunkingStrategy>().unwrap(), s);
        }
    }

    /// The block cutter, fed the way `store_stream` feeds it, against the sequential chunker.
    fn block_cut_all(strategy: ChunkingStrategy, data: &[u8], block_len: usize) -> Vec<Vec<u8>> {
        let cutter = BlockCutter::new(strategy).unwrap();
        let mut out = Vec::new();
        let mut block: Vec<u8> = Vec::new();
        let mut pos = 0;
        loop {
            let take = block_len.saturating_sub(block.len()).min(data.len() - pos);
            block.extend_from_slice(&data[pos..pos + take]);
            pos += take;
            let eof = pos == data.len();
            let ends = cutter.cut_block(&block, eof);
            let mut start = 0;
            for end in &ends {
                out.push(block[start..*end].to_vec());
                start = *end;
            }
            block.drain(..start);
            if eof {
                assert!(block.is_empty());
                return out;
            }
        }
    }

    #[test]
    fn block_cutter_matches_the_sequential_chunker() {
        for (seed, len, block) in [
            (1, 300_000, 70_000),
            (2, 1_000_000, 200_000),
            (3, 65_537, 65_536),
            (4, 0, 70_000),
        ] {
            let data = random(len, seed);
            for strategy in [SMALL_CDC, ChunkingStrategy::Fixed { size: 4096 }] {
                let want = chunk_all(strategy, &data, 8192);
                let got = block_cut_all(strategy, &data, block);
                assert_eq!(got, want, "seed {seed} len {len} block {block} {strategy}");
            }
        }
    }

    /// The cutter fed pieces of `sizes` bytes in turn (cycled), cutting the pending pieces
    /// where they lie after each one, as an upload's cutting thread does.
    fn parts_cut_all(strategy: ChunkingStrategy, data: &[u8], sizes: &[usize]) -> Vec<Vec<u8>> {
        let cutter = BlockCutter::new(strategy).unwrap();
        let mut out = Vec::new();
        let mut pending: Vec<&[u8]> = Vec::new();
        let mut pos = 0;
        for size in sizes.iter().cycle() {
            let take = (*size).max(1).min(data.len() - pos);
            pending.push(&data[pos..pos + take]);
            pos += take;
            let eof = pos == data.len();
            let joined = pending.concat();
            let ends = cutter.cut_parts(&pending, eof);
            let mut start = 0;
            for end in &ends {
                out.push(joined[start..*end].to_vec());
                start = *end;
            }
            // The uncut bytes stay where they lie: the rest of the part the last chunk ended
            // in, and the parts after it.
            let mut skip = start;
            let mut kept = Vec::new();
            for part in pending.drain(..) {
                if skip >= part.len() {
                    skip -= part.len();
                } else {
                    kept.push(&part[skip..]);
                    skip = 0;
                }
            }
            pending = kept;
            if eof {
                assert!(pending.is_empty());
                return out;
            }
        }
        out
    }

    #[test]
    fn cutting_pieces_where_they_lie_matches_the_sequential_chunker() {
        for (seed, len, sizes) in [
            (1, 300_000, vec![70_000]),
            (2, 1_000_000, vec![1, 63, 64, 65_536, 100_000]),
            (3, 65_537, vec![65_536]),
            (4, 0, vec![70_000]),
        ] {
            let data = random(len, seed);
            for strategy in [SMALL_CDC, ChunkingStrategy::Fixed { size: 4096 }] {
                let want = chunk_all(strategy, &data, 8192);
                let got = parts_cut_all(strategy, &data, &sizes);
                assert_eq!(
                    got, want,
                    "seed {seed} len {len} sizes {sizes:?} {strategy}"
                );
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 32, .. Default::default() })]
        #[test]
        fn cutting_pieces_matches_for_random_inputs(
            seed in proptest::prelude::any::<u64>(),
            len in 0usize..600_000,
            sizes in proptest::collection::vec(1usize..150_000, 1..5),
        ) {
            let data = random(len, seed);
            proptest::prop_assert_eq!(parts_cut_all(SMALL_CDC, &data, &sizes), chunk_all(SMALL_CDC, &data, 4096));
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 32, .. Default::default() })]
        #[test]
        fn block_cutter_matches_for_random_inputs(seed in proptest::prelude::any::<u64>(), len in 0usize..600_000, block in 65_536usize..300_000) {
            let data = random(len, seed);
            proptest::prop_assert_eq!(block_cut_all(SMALL_CDC, &data, block), chunk_all(SMALL_CDC, &data, 4096));
        }
    }
}
