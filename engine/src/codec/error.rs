//! The one error type of every codec decoder.

/// Why a byte string (or text form) is not a valid canonical encoding.
///
/// Offsets are byte offsets into the decoder's input (for [`DecodeError::BadText`], character
/// positions into the text after the prefix).
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum DecodeError {
    /// The first four bytes are not this form's magic.
    #[error("bad magic for {form}: found {found:02x?}, expected {expected:02x?}")]
    BadMagic {
        /// The form being decoded ("BlobRef", "leaf node", "internal node").
        form: &'static str,
        /// The magic that was expected.
        expected: [u8; 4],
        /// The bytes that were found.
        found: [u8; 4],
    },
    /// The version byte is not one this decoder understands.
    #[error("unsupported {form} version {version} (this build reads version {supported})")]
    UnsupportedVersion {
        /// The form being decoded.
        form: &'static str,
        /// The version byte found.
        version: u8,
        /// The version this build reads.
        supported: u8,
    },
    /// Unknown BlobRef variant tag.
    #[error("unknown BlobRef variant tag {tag} at offset {offset}")]
    UnknownVariant {
        /// The tag byte.
        tag: u8,
        /// Its offset.
        offset: usize,
    },
    /// Unknown chunk role tag.
    #[error("unknown chunk role tag {tag} at offset {offset}")]
    UnknownRole {
        /// The tag byte.
        tag: u8,
        /// Its offset.
        offset: usize,
    },
    /// Unknown encoding tag.
    #[error("unknown encoding tag {tag} at offset {offset}")]
    UnknownEncoding {
        /// The tag byte.
        tag: u8,
        /// Its offset.
        offset: usize,
    },
    /// Reed-Solomon parameters outside `1 <= data_shards < total_shards <= 255`.
    #[error(
        "invalid Reed-Solomon parameters k={data_shards} n={total_shards} at offset {offset} \
         (need 1 <= k < n)"
    )]
    InvalidErasure {
        /// k as found.
        data_shards: u8,
        /// n as found.
        total_shards: u8,
        /// Offset of the encoding tag.
        offset: usize,
    },
    /// A known variant this reader's capabilities do not allow.
    #[error("{variant} needs capability {capability:?}, which this reader does not have")]
    UnsupportedVariant {
        /// The variant name.
        variant: &'static str,
        /// The capability it requires.
        capability: &'static str,
    },
    /// The input ended inside a field.
    #[error("truncated: {what} needs {needed} bytes at offset {offset}, {available} available")]
    Truncated {
        /// The field being read.
        what: &'static str,
        /// Where it starts.
        offset: usize,
        /// Bytes it needs.
        needed: usize,
        /// Bytes left.
        available: usize,
    },
    /// Bytes left over after a complete encoding.
    #[error("{count} trailing bytes at offset {offset}")]
    TrailingBytes {
        /// Where the encoding ended.
        offset: usize,
        /// How many bytes follow it.
        count: usize,
    },
    /// A count above its named maximum, or more entries than the input could hold.
    #[error("too many {what}: {count} (max {max})")]
    TooMany {
        /// What is being counted.
        what: &'static str,
        /// The count found.
        count: u64,
        /// The largest count allowed here.
        max: u64,
    },
    /// A list that must not be empty is empty.
    #[error("{what} must not be empty (offset {offset})")]
    Empty {
        /// The list.
        what: &'static str,
        /// Offset of its count.
        offset: usize,
    },
    /// A chunk size above [`crate::codec::MAX_CHUNK_SIZE`].
    #[error("chunk size {size} at offset {offset} exceeds {max}")]
    ChunkTooLarge {
        /// The size found.
        size: u64,
        /// The maximum.
        max: u32,
        /// Offset of the size field.
        offset: usize,
    },
    /// A size that must be positive is zero.
    #[error("{what} is zero at offset {offset}")]
    ZeroSize {
        /// The field.
        what: &'static str,
        /// Its offset (or the offset of the size it feeds).
        offset: usize,
    },
    /// A declared size differs from the sum of its parts.
    #[error("declared size {declared} != sum of data chunk sizes {computed}")]
    SizeMismatch {
        /// The size written in the encoding.
        declared: u64,
        /// The sum of the parts.
        computed: u64,
    },
    /// A tree depth outside `2..=MAX_DEPTH`.
    #[error("tree depth {depth} outside {min}..={max}")]
    DepthOutOfRange {
        /// Depth found.
        depth: u8,
        /// Smallest allowed.
        min: u8,
        /// Largest allowed.
        max: u8,
    },
    /// An internal node level outside `1..=MAX_DEPTH - 1`.
    #[error("internal node level {level} outside {min}..={max}")]
    LevelOutOfRange {
        /// Level found.
        level: u8,
        /// Smallest allowed.
        min: u8,
        /// Largest allowed.
        max: u8,
    },
    /// A sum or length does not fit its integer type.
    #[error("{what} overflows")]
    Overflow {
        /// What overflowed.
        what: &'static str,
    },
    /// A Parity chunk in a Plain-encoded list.
    #[error("parity chunk at offset {offset} in a Plain-encoded list")]
    ParityInPlain {
        /// Offset of the chunk ref.
        offset: usize,
    },
    /// Well-formed but not the one canonical encoding of its value.
    #[error("non-canonical encoding: {what}")]
    NonCanonical {
        /// What was non-canonical.
        what: &'static str,
    },
    /// Malformed text form.
    #[error("bad text form at position {position}: {reason}")]
    BadText {
        /// Why.
        reason: &'static str,
        /// Character position (after the prefix; 0 for prefix errors).
        position: usize,
    },
}
