//! [`BlobRef`]: the self-describing reference to a whole blob.

use super::caps::{CAP_BLOB_TREE_V3, Capabilities};
use super::chunk::{ChunkRef, Encoding, data_size, read_chunk_list, write_chunk_list};
use super::layout::{
    BLOB_REF_MAGIC, FORMAT_VERSION, TREE_TOTAL_SIZE_OFFSET, VARIANT_MANIFEST, VARIANT_SMALL,
    VARIANT_TREE,
};
use super::reader::Reader;
use super::{DecodeError, Hash, MAX_CHUNK_SIZE, MAX_DEPTH};

/// Smallest valid [`BlobRef::Tree`] depth (a root internal node over leaves).
pub const MIN_TREE_DEPTH: u8 = 2;

/// A reference to a whole blob: one chunk, one flat chunk list, or the root of a node tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobRef {
    /// One chunk. `size` 0 is the empty blob (`hash` = `BLAKE3("")` by convention; the decoder
    /// does not check it).
    Small {
        /// `chunk_id` of the blob.
        hash: Hash,
        /// Blob length, `0..=MAX_CHUNK_SIZE`.
        size: u64,
    },
    /// One flat inline list of at most `MAX_LEAF_FANOUT` chunk refs.
    Manifest {
        /// How the list is protected.
        encoding: Encoding,
        /// The chunks, data in blob order, parity interleaved per the encoding.
        chunks: Vec<ChunkRef>,
        /// Blob length = sum of Data chunk sizes.
        size: u64,
    },
    /// A tree of internal nodes over leaves.
    Tree {
        /// Encoding of every leaf.
        encoding: Encoding,
        /// Node id of the root internal node.
        root_hash: Hash,
        /// Blob length (> 0).
        total_size: u64,
        /// Node levels root to leaves inclusive, `2..=MAX_DEPTH`.
        depth: u8,
    },
}

impl BlobRef {
    /// The canonical wire bytes. Values that break a decoder rule (e.g. a Manifest whose `size`
    /// does not add up) still encode, to bytes that `decode` rejects; use [`BlobRef::validate`].
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len_hint());
        out.extend_from_slice(&BLOB_REF_MAGIC);
        out.push(FORMAT_VERSION);
        match self {
            BlobRef::Small { hash, size } => {
                out.push(VARIANT_SMALL);
                out.extend_from_slice(hash);
                out.extend_from_slice(&size.to_le_bytes());
            }
            BlobRef::Manifest {
                encoding,
                chunks,
                size,
            } => {
                out.push(VARIANT_MANIFEST);
                out.extend_from_slice(&size.to_le_bytes());
                write_chunk_list(&mut out, *encoding, chunks);
            }
            BlobRef::Tree {
                encoding,
                root_hash,
                total_size,
                depth,
            } => {
                out.push(VARIANT_TREE);
                out.extend_from_slice(root_hash);
                out.extend_from_slice(&total_size.to_le_bytes());
                out.push(*depth);
                encoding.write(&mut out);
            }
        }
        out
    }

    fn encoded_len_hint(&self) -> usize {
        match self {
            BlobRef::Manifest { chunks, .. } => chunks
                .len()
                .saturating_mul(super::layout::CHUNK_REF_PARITY_LEN)
                .saturating_add(32),
            _ => 64,
        }
    }

    /// Decodes with every capability ([`Capabilities::all`]).
    pub fn decode(bytes: &[u8]) -> Result<BlobRef, DecodeError> {
        Self::decode_with(bytes, &Capabilities::all())
    }

    /// Decodes, refusing variants whose capability `caps` lacks (`Tree` needs
    /// [`CAP_BLOB_TREE_V3`]).
    pub fn decode_with(bytes: &[u8], caps: &Capabilities) -> Result<BlobRef, DecodeError> {
        let mut r = Reader::new(bytes);
        r.header("BlobRef", BLOB_REF_MAGIC)?;
        let variant_offset = r.offset();
        let blob = match r.u8("variant tag")? {
            VARIANT_SMALL => {
                let hash = r.hash("hash")?;
                let size_offset = r.offset();
                let size = r.u64("size")?;
                if size > u64::from(MAX_CHUNK_SIZE) {
                    return Err(DecodeError::ChunkTooLarge {
                        size,
                        max: MAX_CHUNK_SIZE,
                        offset: size_offset,
                    });
                }
                BlobRef::Small { hash, size }
            }
            VARIANT_MANIFEST => {
                let size = r.u64("size")?;
                let (encoding, chunks, computed) = read_chunk_list(&mut r, "manifest chunks")?;
                if computed != size {
                    return Err(DecodeError::SizeMismatch {
                        declared: size,
                        computed,
                    });
                }
                BlobRef::Manifest {
                    encoding,
                    chunks,
                    size,
                }
            }
            VARIANT_TREE => {
                if !caps.contains(CAP_BLOB_TREE_V3) {
                    return Err(DecodeError::UnsupportedVariant {
                        variant: "BlobRef::Tree",
                        capability: CAP_BLOB_TREE_V3,
                    });
                }
                let root_hash = r.hash("root_hash")?;
                let total_size = r.u64("total_size")?;
                if total_size == 0 {
                    return Err(DecodeError::ZeroSize {
                        what: "tree total_size",
                        offset: TREE_TOTAL_SIZE_OFFSET,
                    });
                }
                let depth = r.u8("depth")?;
                check_depth(depth)?;
                let encoding = Encoding::read(&mut r)?;
                BlobRef::Tree {
                    encoding,
                    root_hash,
                    total_size,
                    depth,
                }
            }
            tag => {
                return Err(DecodeError::UnknownVariant {
                    tag,
                    offset: variant_offset,
                });
            }
        };
        r.finish()?;
        Ok(blob)
    }

    /// Checks every rule `decode` enforces (ignoring capabilities) by decoding the encoding. A
    /// value that validates round-trips through `encode`/`decode` unchanged.
    pub fn validate(&self) -> Result<(), DecodeError> {
        Self::decode(&self.encode()).map(|_| ())
    }

    /// Blob length in bytes.
    pub fn size(&self) -> u64 {
        match self {
            BlobRef::Small { size, .. } | BlobRef::Manifest { size, .. } => *size,
            BlobRef::Tree { total_size, .. } => *total_size,
        }
    }

    /// Encoding of the blob's chunks (`Plain` for `Small`).
    pub fn encoding(&self) -> Encoding {
        match self {
            BlobRef::Small { .. } => Encoding::Plain,
            BlobRef::Manifest { encoding, .. } | BlobRef::Tree { encoding, .. } => *encoding,
        }
    }

    /// Node levels below the ref: `Small` 0, `Manifest` 1, `Tree` its depth.
    pub fn depth(&self) -> u8 {
        match self {
            BlobRef::Small { .. } => 0,
            BlobRef::Manifest { .. } => 1,
            BlobRef::Tree { depth, .. } => *depth,
        }
    }

    /// Sum of Data chunk sizes of a `Manifest` (what its `size` must equal); `None` otherwise.
    pub fn manifest_data_size(&self) -> Option<Result<u64, DecodeError>> {
        match self {
            BlobRef::Manifest { chunks, .. } => Some(data_size(chunks)),
            _ => None,
        }
    }

    /// The printable one-line form: `nm1` + lowercase unpadded RFC 4648 base32 of the wire bytes.
    pub fn to_text(&self) -> String {
        super::text::to_text(&self.encode())
    }

    /// Parses [`BlobRef::to_text`] output, strictly (see `docs/FORMAT.md` §2).
    pub fn from_text(s: &str) -> Result<BlobRef, DecodeError> {
        Self::decode(&super::text::from_text(s)?)
    }
}

impl std::fmt::Display for BlobRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl std::str::FromStr for BlobRef {
    type Err = DecodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_text(s)
    }
}

/// Checks a tree depth against `MIN_TREE_DEPTH..=MAX_DEPTH`.
pub(crate) fn check_depth(depth: u8) -> Result<(), DecodeError> {
    if (MIN_TREE_DEPTH..=MAX_DEPTH).contains(&depth) {
        Ok(())
    } else {
        Err(DecodeError::DepthOutOfRange {
            depth,
            min: MIN_TREE_DEPTH,
            max: MAX_DEPTH,
        })
    }
}
