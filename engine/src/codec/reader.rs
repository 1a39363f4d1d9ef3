//! Bounded little-endian reader and writer helpers shared by the decoders.

use super::DecodeError;
use super::Hash;
use super::layout::{FORMAT_VERSION, HASH_LEN, MAGIC_LEN};

/// A cursor over the input that can never read past its end.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    /// Current offset from the start of the input.
    pub(crate) fn offset(&self) -> usize {
        self.pos
    }

    /// Bytes not yet read.
    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    fn take(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let truncated = DecodeError::Truncated {
            what,
            offset: self.pos,
            needed: len,
            available: self.remaining(),
        };
        let end = self.pos.checked_add(len).ok_or(truncated.clone())?;
        let slice = self.bytes.get(self.pos..end).ok_or(truncated)?;
        self.pos = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let slice = self.take(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(u8::from_le_bytes(self.array(what)?))
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    pub(crate) fn hash(&mut self, what: &'static str) -> Result<Hash, DecodeError> {
        self.array::<HASH_LEN>(what)
    }

    /// Reads and checks magic + version.
    pub(crate) fn header(
        &mut self,
        form: &'static str,
        expected: [u8; MAGIC_LEN],
    ) -> Result<(), DecodeError> {
        let found = self.array::<MAGIC_LEN>("magic")?;
        if found != expected {
            return Err(DecodeError::BadMagic {
                form,
                expected,
                found,
            });
        }
        let version = self.u8("version")?;
        if version != FORMAT_VERSION {
            return Err(DecodeError::UnsupportedVersion {
                form,
                version,
                supported: FORMAT_VERSION,
            });
        }
        Ok(())
    }

    /// Reads a u32 count and checks it against `max` and against zero, before anything is
    /// allocated.
    pub(crate) fn count(&mut self, what: &'static str, max: usize) -> Result<usize, DecodeError> {
        let count_offset = self.pos;
        let raw = self.u32(what)?;
        let max_u64 = u64::try_from(max).unwrap_or(u64::MAX);
        let count_u64 = u64::from(raw);
        if count_u64 > max_u64 {
            return Err(DecodeError::TooMany {
                what,
                count: count_u64,
                max: max_u64,
            });
        }
        if raw == 0 {
            return Err(DecodeError::Empty {
                what,
                offset: count_offset,
            });
        }
        usize::try_from(raw).map_err(|_| DecodeError::Overflow {
            what: "count as usize",
        })
    }

    /// Checks that `count` entries of at least `min_entry_len` bytes each can fit in the input
    /// left, so a forged count cannot make the decoder allocate more than the input justifies.
    pub(crate) fn ensure_room(
        &self,
        what: &'static str,
        count: usize,
        min_entry_len: usize,
    ) -> Result<(), DecodeError> {
        let fits = self.remaining().checked_div(min_entry_len).unwrap_or(0);
        if count > fits {
            return Err(DecodeError::Truncated {
                what,
                offset: self.pos,
                needed: count.saturating_mul(min_entry_len),
                available: self.remaining(),
            });
        }
        Ok(())
    }

    /// Fails unless the whole input has been consumed.
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(DecodeError::TrailingBytes {
                offset: self.pos,
                count,
            }),
        }
    }
}

/// Writes a u32 count; lists longer than `u32::MAX` saturate, which every decoder rejects.
pub(crate) fn put_count(out: &mut Vec<u8>, len: usize) {
    let count = u32::try_from(len).unwrap_or(u32::MAX);
    out.extend_from_slice(&count.to_le_bytes());
}
