//! The FastCDC 2020 cut decision, computed faster with the same result.
//!
//! `fastcdc::v2020::cut` walks one gear hash byte by byte, so its speed is bound by the length
//! of that dependency chain. The gear hash at a position depends only on the 64 bytes ending
//! there (each step shifts the hash left by one, so older bytes fall out), once at least 64
//! bytes of the chunk past its minimum size have been hashed. Past that point this module scans
//! [`LANES`] consecutive segments at once with independent hashes, each warmed up on the 63
//! bytes before it, which keeps several chains in flight. A segment group in which any lane
//! sees a possible boundary is rescanned in order with the exact rule, so the first boundary is
//! found exactly where the byte-by-byte scan finds it. `cut_len_matches_fastcdc` checks this
//! against the crate on random inputs and parameters.
//!
//! The rule being reproduced, for a chunk starting at the front of `data`: let `remaining` be
//! `min(len, max)`; if it is at most `min` the chunk is `remaining` long. Else the hash starts
//! at zero at offset `min` and takes each byte `p` in turn (`h = (h << 1) + GEAR[byte]`); the
//! chunk is `p` long at the first `p` where `h & mask == 0`, with the strict mask before
//! `min(avg, remaining)` rounded down to even and the relaxed mask after it, up to `remaining`
//! rounded down to even. If no position matches, the chunk is `remaining` long.

use std::sync::OnceLock;

use fastcdc::v2020;

/// Independent hash chains run side by side (the four of `lanes_may_match`).
const LANES: usize = 4;
/// Bytes each lane covers per group.
const SEGMENT: usize = 4096;
/// Bytes a gear hash looks back over, besides the current one.
const WINDOW: usize = 63;

/// FastCDC 2020's gear table (seed 0), as an array so that a byte index needs no check.
fn table() -> &'static [u64; 256] {
    static TABLE: OnceLock<[u64; 256]> = OnceLock::new();
    TABLE.get_or_init(|| {
        let (gear, _) = v2020::get_gear_with_seed(0);
        let mut table = [0u64; 256];
        for (slot, value) in table.iter_mut().zip(gear.iter()) {
            *slot = *value;
        }
        table
    })
}

#[inline(always)]
fn step(gear: &[u64; 256], hash: u64, byte: u8) -> u64 {
    // A u8 is always below 256: the lookup never misses (and compiles without a check).
    (hash << 1).wrapping_add(gear.get(usize::from(byte)).copied().unwrap_or(0))
}

/// The gear hash of `bytes` starting from zero.
fn hash_of(gear: &[u64; 256], bytes: &[u8]) -> u64 {
    bytes.iter().fold(0, |h, &b| step(gear, h, b))
}

/// Cut parameters, checked by `ChunkingStrategy::validate` (all even, `min < avg < max`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct CdcParams {
    pub min: usize,
    pub avg: usize,
    pub max: usize,
    pub mask_s: u64,
    pub mask_l: u64,
}

/// Length of the chunk at the front of `data` (which holds at least `max` bytes, or is the end
/// of the stream): exactly what `fastcdc::v2020::cut` returns.
pub(crate) fn cut_len(data: &[u8], p: &CdcParams) -> usize {
    cut_len_parts(&[data], p)
}

/// [`cut_len`] of the bytes of `parts` one after another, read where they lie (no copy). The
/// first [`WINDOW`] positions of a part continue the hash from the part before, byte by byte;
/// past them a part is scanned in lane groups as a contiguous block is.
pub(crate) fn cut_len_parts(parts: &[&[u8]], p: &CdcParams) -> usize {
    let gear = table();
    let total = parts
        .iter()
        .fold(0usize, |sum, part| sum.saturating_add(part.len()));
    let remaining = total.min(p.max);
    if remaining <= p.min {
        return remaining;
    }
    let strict_end = p.avg.min(remaining) & !1;
    let end = remaining & !1;
    let mask_at = |pos: usize| if pos < strict_end { p.mask_s } else { p.mask_l };
    // Any position that can match satisfies both masks' common bits.
    let common = p.mask_s & p.mask_l;
    // The hash before the byte at the next position scanned (it starts at zero at `min`).
    let mut hash = 0u64;
    let mut part_start = 0usize;
    for part in parts {
        let part_end = part_start.saturating_add(part.len());
        let from = part_start.max(p.min);
        let to = part_end.min(end);
        // Scans positions `from..to` of this part (absolute positions), moving `hash` along;
        // the first match is the chunk's length.
        let first = |from: usize, to: usize, hash: &mut u64| {
            let bytes = part
                .get(from.saturating_sub(part_start)..to.saturating_sub(part_start))
                .unwrap_or_default();
            (from..to).zip(bytes).find_map(|(pos, &b)| {
                *hash = step(gear, *hash, b);
                (*hash & mask_at(pos) == 0).then_some(pos)
            })
        };
        // The hash of the WINDOW bytes before `pos` (all in this part).
        let window_before = |pos: usize| {
            let local = pos.saturating_sub(part_start);
            hash_of(
                gear,
                part.get(local.saturating_sub(WINDOW)..local)
                    .unwrap_or_default(),
            )
        };
        if from < to {
            // Until a full window lies in this part past `min`, the hash continues byte by
            // byte (at `min` it started from zero; at a part's start it comes from before).
            let windowed = part_start.max(p.min).saturating_add(WINDOW);
            let head_end = windowed.min(to);
            if let Some(pos) = first(from, head_end, &mut hash) {
                return pos;
            }
            let mut pos = head_end;
            if pos >= windowed {
                while let Some(group) = part
                    .get(pos - part_start..pos - part_start + LANES * SEGMENT)
                    .filter(|_| pos + LANES * SEGMENT <= to)
                {
                    if lanes_may_match(gear, group, pos, common, &window_before) {
                        let mut h = window_before(pos);
                        if let Some(found) = first(pos, pos + LANES * SEGMENT, &mut h) {
                            return found;
                        }
                    }
                    pos += LANES * SEGMENT;
                }
                hash = window_before(pos);
                if let Some(found) = first(pos, to, &mut hash) {
                    return found;
                }
            }
        }
        part_start = part_end;
        if part_start >= end {
            break;
        }
    }
    remaining
}

/// Whether any position of `group` (which starts at `start`, at least WINDOW bytes into the
/// data) has a full-window hash with none of the `common` bits set.
fn lanes_may_match(
    gear: &[u64; 256],
    group: &[u8],
    start: usize,
    common: u64,
    window_before: &impl Fn(usize) -> u64,
) -> bool {
    let mut segments = group.chunks_exact(SEGMENT);
    let (Some(s0), Some(s1), Some(s2), Some(s3)) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return true;
    };
    let mut h0 = window_before(start);
    let mut h1 = window_before(start + SEGMENT);
    let mut h2 = window_before(start + 2 * SEGMENT);
    let mut h3 = window_before(start + 3 * SEGMENT);
    for (((&b0, &b1), &b2), &b3) in s0.iter().zip(s1).zip(s2).zip(s3) {
        h0 = step(gear, h0, b0);
        h1 = step(gear, h1, b1);
        h2 = step(gear, h2, b2);
        h3 = step(gear, h3, b3);
        if (h0 & common == 0) | (h1 & common == 0) | (h2 & common == 0) | (h3 & common == 0) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use fastcdc::v2020::Normalization;
    use proptest::prelude::*;

    fn params(min: usize, avg: usize, max: usize) -> CdcParams {
        let (mask_s, mask_l) = v2020::select_masks(avg, Normalization::Level1);
        CdcParams {
            min,
            avg,
            max,
            mask_s,
            mask_l,
        }
    }

    fn crate_cut(data: &[u8], p: &CdcParams) -> usize {
        let (_, len) = v2020::cut(
            data,
            p.min,
            p.avg,
            p.max,
            p.mask_s,
            p.mask_l,
            p.mask_s << 1,
            p.mask_l << 1,
        );
        len
    }

    /// Random bytes with runs of one repeated byte, so some chunks hit `max` or `remaining`.
    fn bytes(len: usize, seed: u64, runs: bool) -> Vec<u8> {
        let mut x = seed | 1;
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if runs && x.is_multiple_of(97) {
                let run = (x >> 32) as usize % 70_000;
                out.extend(std::iter::repeat_n(
                    (x >> 8) as u8,
                    run.min(len - out.len()),
                ));
            } else {
                out.push((x >> 24) as u8);
            }
        }
        out
    }

    /// Cuts all of `data` and returns the chunk lengths.
    fn lengths(data: &[u8], p: &CdcParams, cut: impl Fn(&[u8], &CdcParams) -> usize) -> Vec<usize> {
        let mut out = Vec::new();
        let mut rest = data;
        while !rest.is_empty() {
            let len = cut(rest, p).clamp(1, rest.len());
            out.push(len);
            rest = &rest[len..];
        }
        out
    }

    #[test]
    fn default_parameters_match_on_a_large_input() {
        let p = params(256 * 1024, 1024 * 1024, 4 * 1024 * 1024);
        let data = bytes(24 << 20, 5, false);
        let want = lengths(&data, &p, crate_cut);
        assert!(want.len() > 10);
        assert_eq!(lengths(&data, &p, cut_len), want);
    }

    /// Chunk lengths of `data` cut as parts: `data` split after every `sizes` bytes in turn
    /// (cycled), each cut seeing the parts from its chunk's start.
    fn lengths_in_parts(data: &[u8], sizes: &[usize], p: &CdcParams) -> Vec<usize> {
        let mut ends = Vec::new();
        let mut at = 0;
        for size in sizes.iter().cycle() {
            if at >= data.len() {
                break;
            }
            at = (at + size.max(&1)).min(data.len());
            ends.push(at);
        }
        let mut out = Vec::new();
        let mut start = 0;
        while start < data.len() {
            let mut parts = Vec::new();
            let mut from = start;
            for &end in ends.iter().filter(|&&e| e > start) {
                parts.push(&data[from..end]);
                from = end;
            }
            let len = cut_len_parts(&parts, p).clamp(1, data.len() - start);
            out.push(len);
            start += len;
        }
        out
    }

    #[test]
    fn default_parameters_match_in_parts_of_a_mebibyte_and_in_small_ones() {
        let p = params(256 * 1024, 1024 * 1024, 4 * 1024 * 1024);
        let data = bytes(24 << 20, 9, false);
        let want = lengths(&data, &p, cut_len);
        assert!(want.len() > 10);
        assert_eq!(lengths_in_parts(&data, &[1 << 20], &p), want);
        assert_eq!(
            lengths_in_parts(&data, &[65_536, 1, 63, 64, 16_385], &p),
            want
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]
        #[test]
        fn cut_len_parts_matches_cut_len_wherever_the_parts_split(
            seed in any::<u64>(),
            len in 0usize..300_000,
            runs in any::<bool>(),
            min_log in 6u32..14,
            avg_step in 1u32..4,
            sizes in proptest::collection::vec(
                prop_oneof![1usize..130, 1usize..40_000, 16_000usize..120_000], 1..6),
        ) {
            let min = 1usize << min_log;
            let avg = (min << avg_step).max(v2020::AVERAGE_MIN);
            let max = (avg << 1).max(v2020::MAXIMUM_MIN);
            let p = params(min, avg, max);
            let data = bytes(len, seed, runs);
            prop_assert_eq!(lengths_in_parts(&data, &sizes, &p), lengths(&data, &p, cut_len));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]
        #[test]
        fn cut_len_matches_fastcdc(
            seed in any::<u64>(),
            len in 0usize..400_000,
            runs in any::<bool>(),
            min_log in 6u32..14,
            avg_step in 1u32..4,
            max_step in 1u32..3,
            odd_tail in any::<bool>(),
        ) {
            let min = 1usize << min_log;
            let avg = (min << avg_step).max(v2020::AVERAGE_MIN);
            let max = (avg << max_step).max(v2020::MAXIMUM_MIN);
            let p = params(min, avg, max);
            let mut data = bytes(len, seed, runs);
            if odd_tail && data.len().is_multiple_of(2) {
                data.push(7);
            }
            prop_assert_eq!(lengths(&data, &p, cut_len), lengths(&data, &p, crate_cut));
        }
    }
}
