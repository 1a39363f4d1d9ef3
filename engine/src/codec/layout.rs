//! Named byte offsets and sizes of every codec layout. `docs/FORMAT.md` section 2 documents the
//! same numbers; `engine/tests/codec_format_doc.rs` checks that the two agree.
//!
//! Offsets are from the start of the encoding unless the name ends in `_REL`, in which case they
//! are relative to the start of the enclosing entry.

/// Version byte written by this code and the only one its decoders accept.
pub const FORMAT_VERSION: u8 = 1;

/// Magic of a [`crate::codec::BlobRef`] encoding.
pub const BLOB_REF_MAGIC: [u8; 4] = *b"NMBR";
/// Magic of a [`crate::codec::LeafNode`] encoding.
pub const LEAF_NODE_MAGIC: [u8; 4] = *b"NMLF";
/// Magic of an [`crate::codec::InternalNode`] encoding.
pub const INTERNAL_NODE_MAGIC: [u8; 4] = *b"NMIN";

/// Size of a magic.
pub const MAGIC_LEN: usize = 4;
/// Size of a BLAKE3 hash.
pub const HASH_LEN: usize = 32;

// ---- Common header (all three forms) ----
/// Offset of the magic.
pub const MAGIC_OFFSET: usize = 0;
/// Offset of the version byte.
pub const VERSION_OFFSET: usize = 4;
/// Size of the common header (magic + version).
pub const HEADER_LEN: usize = 5;

// ---- BlobRef ----
/// Offset of the BlobRef variant tag.
pub const BLOB_VARIANT_OFFSET: usize = 5;
/// Variant tag of `BlobRef::Small`.
pub const VARIANT_SMALL: u8 = 0;
/// Variant tag of `BlobRef::Manifest`.
pub const VARIANT_MANIFEST: u8 = 1;
/// Variant tag of `BlobRef::Tree`.
pub const VARIANT_TREE: u8 = 2;

/// Offset of `hash` in `Small`.
pub const SMALL_HASH_OFFSET: usize = 6;
/// Offset of `size` (u64) in `Small`.
pub const SMALL_SIZE_OFFSET: usize = 38;
/// Total size of a `Small` encoding.
pub const SMALL_LEN: usize = 46;

/// Offset of `size` (u64) in `Manifest`.
pub const MANIFEST_SIZE_OFFSET: usize = 6;
/// Offset of the chunk count (u32) in `Manifest`.
pub const MANIFEST_COUNT_OFFSET: usize = 14;
/// Offset of the encoding in `Manifest`; the chunk refs follow it.
pub const MANIFEST_ENCODING_OFFSET: usize = 18;

/// Offset of `root_hash` in `Tree`.
pub const TREE_ROOT_HASH_OFFSET: usize = 6;
/// Offset of `total_size` (u64) in `Tree`.
pub const TREE_TOTAL_SIZE_OFFSET: usize = 38;
/// Offset of `depth` (u8) in `Tree`.
pub const TREE_DEPTH_OFFSET: usize = 46;
/// Offset of the encoding in `Tree`; it is the last field.
pub const TREE_ENCODING_OFFSET: usize = 47;

// ---- Encoding ----
/// Encoding tag of `Encoding::Plain`.
pub const ENCODING_PLAIN: u8 = 0;
/// Encoding tag of `Encoding::ReedSolomon`.
pub const ENCODING_REED_SOLOMON: u8 = 1;
/// Offset of the encoding tag within an encoding.
pub const ENCODING_TAG_REL: usize = 0;
/// Offset of `data_shards` (k) within a Reed-Solomon encoding.
pub const ENCODING_DATA_SHARDS_REL: usize = 1;
/// Offset of `total_shards` (n) within a Reed-Solomon encoding.
pub const ENCODING_TOTAL_SHARDS_REL: usize = 2;
/// Size of a Plain encoding.
pub const ENCODING_PLAIN_LEN: usize = 1;
/// Size of a Reed-Solomon encoding.
pub const ENCODING_REED_SOLOMON_LEN: usize = 3;

// ---- ChunkRef ----
/// Role tag of `ChunkRole::Data`.
pub const ROLE_DATA: u8 = 0;
/// Role tag of `ChunkRole::Parity`.
pub const ROLE_PARITY: u8 = 1;
/// Offset of `hash` within a chunk ref.
pub const CHUNK_HASH_REL: usize = 0;
/// Offset of `size` (u32) within a chunk ref.
pub const CHUNK_SIZE_REL: usize = 32;
/// Offset of the role tag within a chunk ref.
pub const CHUNK_ROLE_REL: usize = 36;
/// Offset of `stripe_index` (u32, Parity only) within a chunk ref.
pub const CHUNK_STRIPE_INDEX_REL: usize = 37;
/// Size of a Data chunk ref (the smallest chunk ref).
pub const CHUNK_REF_DATA_LEN: usize = 37;
/// Size of a Parity chunk ref.
pub const CHUNK_REF_PARITY_LEN: usize = 41;

// ---- Leaf node ----
/// Offset of the chunk count (u32) in a leaf node.
pub const LEAF_COUNT_OFFSET: usize = 5;
/// Offset of the encoding in a leaf node; the chunk refs follow it.
pub const LEAF_ENCODING_OFFSET: usize = 9;

// ---- Internal node ----
/// Offset of `level` (u8) in an internal node.
pub const INTERNAL_LEVEL_OFFSET: usize = 5;
/// Offset of the child count (u32) in an internal node.
pub const INTERNAL_COUNT_OFFSET: usize = 6;
/// Offset of the first child ref in an internal node.
pub const INTERNAL_CHILDREN_OFFSET: usize = 10;
/// Offset of `hash` within a child ref.
pub const CHILD_HASH_REL: usize = 0;
/// Offset of `covered` (u64) within a child ref.
pub const CHILD_COVERED_REL: usize = 32;
/// Size of a child ref.
pub const CHILD_REF_LEN: usize = 40;

// ---- Text form ----
/// Prefix of the text form of a BlobRef.
pub const TEXT_PREFIX: &str = "nm1";
/// The RFC 4648 base32 alphabet, lowercased.
pub const TEXT_ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
