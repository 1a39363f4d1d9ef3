//! Chunk refs and blob encodings, the building blocks of manifests and leaves.

use super::layout::{
    CHUNK_REF_DATA_LEN, CHUNK_REF_PARITY_LEN, ENCODING_PLAIN, ENCODING_PLAIN_LEN,
    ENCODING_REED_SOLOMON, ENCODING_REED_SOLOMON_LEN, ROLE_DATA, ROLE_PARITY,
};
use super::reader::{Reader, put_count};
use super::{DecodeError, Hash, MAX_CHUNK_SIZE};

/// What a chunk holds within its list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChunkRole {
    /// Blob bytes, in order.
    Data,
    /// Erasure-coding parity for stripe `stripe_index`.
    Parity {
        /// Which stripe this parity chunk protects.
        stripe_index: u32,
    },
}

/// A reference to one stored chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChunkRef {
    /// `chunk_id` of the chunk's bytes.
    pub hash: Hash,
    /// Its length, `1..=MAX_CHUNK_SIZE`.
    pub size: u32,
    /// Data or parity.
    pub role: ChunkRole,
}

/// How a chunk list is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// Data chunks only.
    Plain,
    /// Reed-Solomon: each stripe of `data_shards` data chunks has `total_shards - data_shards`
    /// parity chunks. Valid when `1 <= data_shards < total_shards <= 255`.
    ReedSolomon {
        /// k: data shards per stripe.
        data_shards: u8,
        /// n: data + parity shards per stripe.
        total_shards: u8,
    },
}

impl Encoding {
    /// Whether the parameters are valid (`Plain`, or RS with `1 <= k < n`).
    pub fn is_valid(self) -> bool {
        match self {
            Encoding::Plain => true,
            Encoding::ReedSolomon {
                data_shards,
                total_shards,
            } => data_shards >= 1 && data_shards < total_shards,
        }
    }

    /// Encoded size in bytes.
    pub fn encoded_len(self) -> usize {
        match self {
            Encoding::Plain => ENCODING_PLAIN_LEN,
            Encoding::ReedSolomon { .. } => ENCODING_REED_SOLOMON_LEN,
        }
    }

    pub(crate) fn write(self, out: &mut Vec<u8>) {
        match self {
            Encoding::Plain => out.push(ENCODING_PLAIN),
            Encoding::ReedSolomon {
                data_shards,
                total_shards,
            } => out.extend_from_slice(&[ENCODING_REED_SOLOMON, data_shards, total_shards]),
        }
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Encoding, DecodeError> {
        let offset = r.offset();
        match r.u8("encoding tag")? {
            ENCODING_PLAIN => Ok(Encoding::Plain),
            ENCODING_REED_SOLOMON => {
                let data_shards = r.u8("data_shards")?;
                let total_shards = r.u8("total_shards")?;
                let encoding = Encoding::ReedSolomon {
                    data_shards,
                    total_shards,
                };
                if encoding.is_valid() {
                    Ok(encoding)
                } else {
                    Err(DecodeError::InvalidErasure {
                        data_shards,
                        total_shards,
                        offset,
                    })
                }
            }
            tag => Err(DecodeError::UnknownEncoding { tag, offset }),
        }
    }
}

impl ChunkRef {
    /// Encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        match self.role {
            ChunkRole::Data => CHUNK_REF_DATA_LEN,
            ChunkRole::Parity { .. } => CHUNK_REF_PARITY_LEN,
        }
    }

    /// Bytes of blob data this chunk contributes (0 for parity).
    pub fn data_size(&self) -> u64 {
        match self.role {
            ChunkRole::Data => u64::from(self.size),
            ChunkRole::Parity { .. } => 0,
        }
    }

    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.hash);
        out.extend_from_slice(&self.size.to_le_bytes());
        match self.role {
            ChunkRole::Data => out.push(ROLE_DATA),
            ChunkRole::Parity { stripe_index } => {
                out.push(ROLE_PARITY);
                out.extend_from_slice(&stripe_index.to_le_bytes());
            }
        }
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<ChunkRef, DecodeError> {
        let hash = r.hash("chunk hash")?;
        let size_offset = r.offset();
        let size = r.u32("chunk size")?;
        if size == 0 {
            return Err(DecodeError::ZeroSize {
                what: "chunk size",
                offset: size_offset,
            });
        }
        if size > MAX_CHUNK_SIZE {
            return Err(DecodeError::ChunkTooLarge {
                size: u64::from(size),
                max: MAX_CHUNK_SIZE,
                offset: size_offset,
            });
        }
        let role_offset = r.offset();
        let role = match r.u8("chunk role")? {
            ROLE_DATA => ChunkRole::Data,
            ROLE_PARITY => ChunkRole::Parity {
                stripe_index: r.u32("stripe_index")?,
            },
            tag => {
                return Err(DecodeError::UnknownRole {
                    tag,
                    offset: role_offset,
                });
            }
        };
        Ok(ChunkRef { hash, size, role })
    }
}

/// Writes `count, encoding, chunk refs`: the chunk list layout shared by Manifest and leaf.
pub(crate) fn write_chunk_list(out: &mut Vec<u8>, encoding: Encoding, chunks: &[ChunkRef]) {
    put_count(out, chunks.len());
    encoding.write(out);
    for chunk in chunks {
        chunk.write(out);
    }
}

/// Reads `count, encoding, chunk refs` and checks every list rule: count in
/// `1..=MAX_LEAF_FANOUT`, room for the entries, no parity under Plain, at least one byte of data.
/// Returns the encoding, the chunks and the sum of their data sizes.
pub(crate) fn read_chunk_list(
    r: &mut Reader<'_>,
    what: &'static str,
) -> Result<(Encoding, Vec<ChunkRef>, u64), DecodeError> {
    let count_offset = r.offset();
    let count = r.count(what, super::MAX_LEAF_FANOUT)?;
    let encoding = Encoding::read(r)?;
    r.ensure_room(what, count, CHUNK_REF_DATA_LEN)?;
    let mut chunks = Vec::with_capacity(count);
    let mut data_size: u64 = 0;
    for _ in 0..count {
        let chunk_offset = r.offset();
        let chunk = ChunkRef::read(r)?;
        if encoding == Encoding::Plain && chunk.role != ChunkRole::Data {
            return Err(DecodeError::ParityInPlain {
                offset: chunk_offset,
            });
        }
        data_size = data_size
            .checked_add(chunk.data_size())
            .ok_or(DecodeError::Overflow {
                what: "sum of data chunk sizes",
            })?;
        chunks.push(chunk);
    }
    if data_size == 0 {
        return Err(DecodeError::ZeroSize {
            what: "data bytes in chunk list",
            offset: count_offset,
        });
    }
    Ok((encoding, chunks, data_size))
}

/// Sum of data chunk sizes, checked.
pub(crate) fn data_size(chunks: &[ChunkRef]) -> Result<u64, DecodeError> {
    chunks.iter().try_fold(0u64, |acc, chunk| {
        acc.checked_add(chunk.data_size())
            .ok_or(DecodeError::Overflow {
                what: "sum of data chunk sizes",
            })
    })
}
