//! The printable text form of a BlobRef: `nm1` + strict lowercase unpadded RFC 4648 base32.
//!
//! Strict means exactly one text per byte string: only `a-z2-7`, no padding, no whitespace, a
//! length that whole bytes can produce (length mod 8 in {0, 2, 4, 5, 7}) and zero unused bits in
//! the last character.

use super::DecodeError;
use super::layout::{TEXT_ALPHABET, TEXT_PREFIX};

/// Base32 characters produced by a final group of 0..=5 input bytes.
const CHARS_FOR_BYTES: [usize; 6] = [0, 2, 4, 5, 7, 8];
/// Input bytes encoded by a final group of 0..=8 characters (`None` = impossible length).
const BYTES_FOR_CHARS: [Option<usize>; 9] = [
    Some(0),
    None,
    Some(1),
    None,
    Some(2),
    Some(3),
    None,
    Some(4),
    Some(5),
];
/// Right shift that brings character `i` of a 40-bit group down to bits 0..5.
const SHIFTS: [u32; 8] = [35, 30, 25, 20, 15, 10, 5, 0];

/// Encodes `bytes` as `nm1` + base32.
pub(crate) fn to_text(bytes: &[u8]) -> String {
    let mut out = String::from(TEXT_PREFIX);
    out.push_str(&base32_encode(bytes));
    out
}

/// Decodes `nm1` + base32 strictly into wire bytes.
pub(crate) fn from_text(text: &str) -> Result<Vec<u8>, DecodeError> {
    let body = text.strip_prefix(TEXT_PREFIX).ok_or(DecodeError::BadText {
        reason: "missing nm1 prefix",
        position: 0,
    })?;
    base32_decode(body)
}

/// Lowercase unpadded RFC 4648 base32 of `bytes`.
pub fn base32_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().saturating_mul(8).div_ceil(5));
    for group in bytes.chunks(5) {
        let mut buf = [0u8; 8];
        if let Some(dst) = buf.get_mut(3..3usize.saturating_add(group.len())) {
            dst.copy_from_slice(group);
        }
        let bits = u64::from_be_bytes(buf);
        let chars = CHARS_FOR_BYTES.get(group.len()).copied().unwrap_or(0);
        for shift in SHIFTS.iter().take(chars) {
            let index = bits.checked_shr(*shift).unwrap_or(0) & 0x1f;
            let c = usize::try_from(index)
                .ok()
                .and_then(|i| TEXT_ALPHABET.get(i))
                .copied()
                .unwrap_or(b'a');
            out.push(char::from(c));
        }
    }
    out
}

fn value_of(c: u8) -> Option<u64> {
    match c {
        b'a'..=b'z' => Some(u64::from(c.checked_sub(b'a')?)),
        b'2'..=b'7' => Some(u64::from(c.checked_sub(b'2')?.checked_add(26)?)),
        _ => None,
    }
}

/// Strict inverse of [`base32_encode`]: rejects uppercase, padding, any other character, lengths
/// no byte string encodes to, and nonzero unused bits in the last character. Positions in
/// [`DecodeError::BadText`] are character offsets into `text`.
pub fn base32_decode(text: &str) -> Result<Vec<u8>, DecodeError> {
    let body = text.as_bytes();
    let mut out = Vec::with_capacity(body.len().saturating_mul(5) / 8);
    for (group_index, group) in body.chunks(8).enumerate() {
        let group_start = group_index.saturating_mul(8);
        let mut bits: u64 = 0;
        for (i, &c) in group.iter().enumerate() {
            let value = value_of(c).ok_or(DecodeError::BadText {
                reason: match c {
                    b'=' => "padding is not allowed",
                    b'A'..=b'Z' => "uppercase is not allowed",
                    _ => "character outside the base32 alphabet",
                },
                position: group_start.saturating_add(i),
            })?;
            bits |= value
                .checked_shl(SHIFTS.get(i).copied().unwrap_or(0))
                .unwrap_or(0);
        }
        let byte_count =
            BYTES_FOR_CHARS
                .get(group.len())
                .copied()
                .flatten()
                .ok_or(DecodeError::BadText {
                    reason: "length is not a whole number of bytes",
                    position: body.len(),
                })?;
        let group_bytes = bits.to_be_bytes();
        let (used, unused) = group_bytes
            .get(3..)
            .unwrap_or(&[])
            .split_at(byte_count.min(5));
        if unused.iter().any(|&b| b != 0) {
            return Err(DecodeError::NonCanonical {
                what: "base32 text has nonzero unused trailing bits",
            });
        }
        out.extend_from_slice(used);
    }
    Ok(out)
}
