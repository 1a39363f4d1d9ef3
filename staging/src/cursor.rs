//! A bounded reader over encoded bytes (checkpoints, finished records): every read checks the
//! length first, and a short input is the caller's own `Truncated` error, never a panic.

use std::marker::PhantomData;

/// An error type with a "truncated" case: `what` needed `needed` bytes at `offset`.
pub(crate) trait Truncation {
    fn truncated(what: &'static str, offset: usize, needed: usize) -> Self;
}

/// Reads `bytes` front to back; `pos` is the offset of the next byte.
pub(crate) struct Cursor<'a, E> {
    pub(crate) bytes: &'a [u8],
    pub(crate) pos: usize,
    error: PhantomData<E>,
}

impl<'a, E: Truncation> Cursor<'a, E> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Cursor {
            bytes,
            pos: 0,
            error: PhantomData,
        }
    }

    pub(crate) fn take(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], E> {
        let short = || E::truncated(what, self.pos, len);
        let end = self.pos.checked_add(len).ok_or_else(short)?;
        let out = self.bytes.get(self.pos..end).ok_or_else(short)?;
        self.pos = end;
        Ok(out)
    }

    pub(crate) fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], E> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, E> {
        Ok(u8::from_le_bytes(self.array(what)?))
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, E> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, E> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, E> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// What is left after `pos`.
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.bytes.get(self.pos..).unwrap_or_default()
    }
}
