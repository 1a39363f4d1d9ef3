//! The values of the engine's tables — object entries, segment entries, pins, lost reference
//! counts, channels (byte layouts in docs/FORMAT.md §3) — and the pin-name and channel-name
//! rules.
#![deny(clippy::arithmetic_side_effects)]

use net_mesh_segments::{RecordKind, RecordLoc, SegmentId};
use redb::TableDefinition;

use super::{INDEX_FORMAT_VERSION, IndexError, corrupted};
use crate::codec::{BlobRef, Hash};

/// Size of an encoded [`ObjectEntry`] (docs/FORMAT.md §3.2).
pub const OBJECT_ENTRY_LEN: usize = 38;
/// Size of an encoded segment entry (docs/FORMAT.md §3.3).
pub const SEGMENT_ENTRY_LEN: usize = 17;
/// Fixed part of an encoded pin (docs/FORMAT.md §3.4), before the name and the ref bytes.
pub const PIN_HEADER_LEN: usize = 11;
/// Longest pin label in bytes.
pub const MAX_PIN_NAME: usize = 1024;

/// Why a pin name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pin name is {len} bytes long; at most {MAX_PIN_NAME} bytes are allowed")]
pub struct PinNameTooLong {
    /// Length of the refused name in bytes.
    pub len: usize,
}

/// Checks a pin name against [`MAX_PIN_NAME`]. Every API that takes a pin name calls it before
/// it writes anything.
pub fn check_pin_name(name: &str) -> Result<(), PinNameTooLong> {
    if name.len() > MAX_PIN_NAME {
        Err(PinNameTooLong { len: name.len() })
    } else {
        Ok(())
    }
}

/// The name a request pins a blob under, and whether the user gave it. A name the user gave
/// (`blob put --name`, `blob pull --name`) also renames the blob's pin when the channel pins it
/// already; a default one (a file name, the blob id) names a new pin only and never replaces a
/// name the pin has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinName {
    pub name: String,
    /// True for a name the user gave.
    pub given: bool,
}

impl PinName {
    /// A name the user gave: it renames an existing pin.
    pub fn given(name: impl Into<String>) -> PinName {
        PinName {
            name: name.into(),
            given: true,
        }
    }

    /// A default name: it names a new pin only.
    pub fn default_name(name: impl Into<String>) -> PinName {
        PinName {
            name: name.into(),
            given: false,
        }
    }

    /// `given` as the user's name, else `default` as the default one.
    pub fn given_or(given: Option<String>, default: impl FnOnce() -> String) -> PinName {
        match given {
            Some(name) => PinName::given(name),
            None => PinName::default_name(default()),
        }
    }
}

/// The channel every node has; the existing single-channel APIs pin into it.
pub const DEFAULT_CHANNEL: &str = "default";
/// Longest channel name in bytes.
pub const MAX_CHANNEL_NAME: usize = 64;
/// Size of an encoded channel entry (docs/FORMAT.md §3.4).
pub const CHANNEL_ENTRY_LEN: usize = 9;

/// Why a channel name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid channel name {name:?}: use 1..={MAX_CHANNEL_NAME} bytes of a-z 0-9 - _ . \
     not starting with ."
)]
pub struct ChannelNameError {
    /// The refused name.
    pub name: String,
}

/// Checks a channel name: 1..=[`MAX_CHANNEL_NAME`] bytes of `a-z 0-9 - _ .`, not starting
/// with `.` (so `*`, the token wildcard, is never a channel). Every API that takes a channel
/// calls it before it writes anything.
pub fn check_channel_name(name: &str) -> Result<(), ChannelNameError> {
    let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b);
    if (1..=MAX_CHANNEL_NAME).contains(&name.len())
        && !name.starts_with('.')
        && name.bytes().all(allowed)
    {
        Ok(())
    } else {
        Err(ChannelNameError {
            name: name.to_string(),
        })
    }
}

/// A channel's row in `channels_v1`: when it was created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelEntry {
    pub created_unix_ms: u64,
}

impl ChannelEntry {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(CHANNEL_ENTRY_LEN);
        out.push(INDEX_FORMAT_VERSION);
        out.extend_from_slice(&self.created_unix_ms.to_le_bytes());
        out
    }

    pub fn decode(name: &str, bytes: &[u8]) -> Result<ChannelEntry, IndexError> {
        let bad = || corrupted("channels_v1", name.as_bytes(), "bad length or version");
        if bytes.len() != CHANNEL_ENTRY_LEN || bytes.first() != Some(&INDEX_FORMAT_VERSION) {
            return Err(bad());
        }
        Ok(ChannelEntry {
            created_unix_ms: u64::from_le_bytes(take(bytes, 1).ok_or_else(bad)?),
        })
    }
}

/// The longest prefix of `name` of at most [`MAX_PIN_NAME`] bytes that ends on a character
/// boundary (`name` itself when it fits).
pub fn pin_name_prefix(name: &str) -> &str {
    let mut end = name.len().min(MAX_PIN_NAME);
    while !name.is_char_boundary(end) {
        end = end.saturating_sub(1);
    }
    name.get(..end).unwrap_or_default()
}

/// One object's index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectEntry {
    pub kind: RecordKind,
    pub loc: RecordLoc,
    /// Parents that reference the object, pins that name it and holds (docs/FORMAT.md §3.6).
    pub refcount: u64,
    /// When the object was stored or its count last fell to 0, whichever is later: while the
    /// count is 0, the object has been unreferenced since then (GC's grace runs from it).
    pub unreferenced_since_unix_ms: u64,
}

fn take<const N: usize>(bytes: &[u8], at: usize) -> Option<[u8; N]> {
    bytes.get(at..at.checked_add(N)?)?.try_into().ok()
}

impl ObjectEntry {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(OBJECT_ENTRY_LEN);
        out.push(INDEX_FORMAT_VERSION);
        out.push(self.kind as u8);
        out.extend_from_slice(&self.loc.segment.to_le_bytes());
        out.extend_from_slice(&self.loc.offset.to_le_bytes());
        out.extend_from_slice(&self.loc.payload_len.to_le_bytes());
        out.extend_from_slice(&self.refcount.to_le_bytes());
        out.extend_from_slice(&self.unreferenced_since_unix_ms.to_le_bytes());
        out
    }

    pub fn decode(key: &[u8], bytes: &[u8]) -> Result<ObjectEntry, IndexError> {
        let bad = |reason: String| corrupted("objects_v1", key, reason);
        if bytes.len() != OBJECT_ENTRY_LEN {
            return Err(bad(format!("length {} != {OBJECT_ENTRY_LEN}", bytes.len())));
        }
        let version = bytes.first().copied().unwrap_or_default();
        if version != INDEX_FORMAT_VERSION {
            return Err(bad(format!("entry version {version}")));
        }
        let kind_byte = bytes.get(1).copied().unwrap_or_default();
        let kind = RecordKind::try_from(kind_byte).map_err(|_| bad(format!("kind {kind_byte}")))?;
        let short = || bad("short entry".to_string());
        Ok(ObjectEntry {
            kind,
            loc: RecordLoc {
                segment: u64::from_le_bytes(take(bytes, 2).ok_or_else(short)?),
                offset: u64::from_le_bytes(take(bytes, 10).ok_or_else(short)?),
                payload_len: u32::from_le_bytes(take(bytes, 18).ok_or_else(short)?),
            },
            refcount: u64::from_le_bytes(take(bytes, 22).ok_or_else(short)?),
            unreferenced_since_unix_ms: u64::from_le_bytes(take(bytes, 30).ok_or_else(short)?),
        })
    }
}

/// A segment's entry: the length up to which its bytes are durable and referenced by the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SegmentEntry {
    pub committed_len: u64,
    /// Payload bytes of the objects the index places in this segment.
    pub live_bytes: u64,
}

impl SegmentEntry {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SEGMENT_ENTRY_LEN);
        out.push(INDEX_FORMAT_VERSION);
        out.extend_from_slice(&self.committed_len.to_le_bytes());
        out.extend_from_slice(&self.live_bytes.to_le_bytes());
        out
    }

    pub fn decode(segment: SegmentId, bytes: &[u8]) -> Result<SegmentEntry, IndexError> {
        let bad = |reason: &str| corrupted("segments_v1", &segment.to_be_bytes(), reason);
        if bytes.len() != SEGMENT_ENTRY_LEN || bytes.first() != Some(&INDEX_FORMAT_VERSION) {
            return Err(bad("bad length or version"));
        }
        Ok(SegmentEntry {
            committed_len: u64::from_le_bytes(take(bytes, 1).ok_or_else(|| bad("short"))?),
            live_bytes: u64::from_le_bytes(take(bytes, 9).ok_or_else(|| bad("short"))?),
        })
    }
}

/// A pinned root: a blob the user keeps in one channel, with an optional label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    /// The channel the pin belongs to (part of the row's key, not of its bytes).
    pub channel: String,
    pub blob_ref: BlobRef,
    pub name: String,
    pub created_unix_ms: u64,
}

impl Pin {
    /// The row bytes (docs/FORMAT.md §3.4). Names are checked where a pin is requested
    /// ([`check_pin_name`]); the cut at a character boundary only guards this encoder's
    /// contract that it never writes a row the decoder refuses.
    pub fn encode(&self) -> Vec<u8> {
        let name = pin_name_prefix(&self.name).as_bytes();
        let name_len = u16::try_from(name.len()).unwrap_or(0);
        let mut out =
            Vec::with_capacity(PIN_HEADER_LEN.saturating_add(name.len()).saturating_add(64));
        out.push(INDEX_FORMAT_VERSION);
        out.extend_from_slice(&self.created_unix_ms.to_le_bytes());
        out.extend_from_slice(&name_len.to_le_bytes());
        out.extend_from_slice(name);
        out.extend_from_slice(&self.blob_ref.encode());
        out
    }

    /// Decodes the row `key` of `channel`.
    pub fn decode(channel: &str, key: &[u8], bytes: &[u8]) -> Result<Pin, IndexError> {
        let bad = |reason: String| corrupted("pins_v2", key, reason);
        if bytes.first() != Some(&INDEX_FORMAT_VERSION) {
            return Err(bad("bad version".into()));
        }
        let created_unix_ms =
            u64::from_le_bytes(take(bytes, 1).ok_or_else(|| bad("short".into()))?);
        let name_len = usize::from(u16::from_le_bytes(
            take(bytes, 9).ok_or_else(|| bad("short".into()))?,
        ));
        if name_len > MAX_PIN_NAME {
            return Err(bad(format!("name length {name_len} > {MAX_PIN_NAME}")));
        }
        let name_end = PIN_HEADER_LEN.saturating_add(name_len);
        let name = bytes
            .get(PIN_HEADER_LEN..name_end)
            .ok_or_else(|| bad("short name".into()))?;
        let name = match std::str::from_utf8(name) {
            Ok(name) => name.to_owned(),
            // Older builds cut an over-long name at MAX_PIN_NAME bytes, possibly inside a
            // character; the rest of such a row is intact, so the partial character is dropped.
            Err(e) if name_len == MAX_PIN_NAME && e.error_len().is_none() => name
                .get(..e.valid_up_to())
                .and_then(|valid| std::str::from_utf8(valid).ok())
                .unwrap_or_default()
                .to_owned(),
            Err(_) => return Err(bad("name not UTF-8".into())),
        };
        let ref_bytes = bytes.get(name_end..).unwrap_or_default();
        let blob_ref = BlobRef::decode(ref_bytes).map_err(|e| bad(format!("blob ref: {e}")))?;
        Ok(Pin {
            channel: channel.to_string(),
            blob_ref,
            name,
            created_unix_ms,
        })
    }
}

/// The stable id of a blob ref: with the channel, keys the pin table and is what `blob ls` shows.
pub fn blob_id(blob_ref: &BlobRef) -> Hash {
    blake3::derive_key("net-mesh 2026-11 blob ref id v1", &blob_ref.encode())
}

/// Objects a pin counts as references: the chunks of a Small or Manifest blob, the root node of
/// a Tree.
pub fn pin_roots(blob_ref: &BlobRef) -> Vec<Hash> {
    match blob_ref {
        BlobRef::Small { hash, .. } => vec![*hash],
        BlobRef::Manifest { chunks, .. } => chunks.iter().map(|c| c.hash).collect(),
        BlobRef::Tree { root_hash, .. } => vec![*root_hash],
    }
}

/// Objects `fsck --repair` dropped while parents or pins still named them, with the count
/// those references hold (docs/FORMAT.md §3.10). Value: version byte 1, then u64 LE count.
pub(crate) const LOST_REFS: TableDefinition<&[u8; 32], &[u8]> =
    TableDefinition::new("lost_refs_v1");
/// Size of an encoded lost-refs value.
pub const LOST_REFS_LEN: usize = 9;

pub(crate) fn encode_lost_refs(count: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(LOST_REFS_LEN);
    out.push(INDEX_FORMAT_VERSION);
    out.extend_from_slice(&count.to_le_bytes());
    out
}

pub(crate) fn decode_lost_refs(hash: &Hash, bytes: &[u8]) -> Result<u64, IndexError> {
    if bytes.len() != LOST_REFS_LEN || bytes.first() != Some(&INDEX_FORMAT_VERSION) {
        return Err(corrupted("lost_refs_v1", hash, "bad length or version"));
    }
    Ok(u64::from_le_bytes(
        take(bytes, 1).ok_or_else(|| corrupted("lost_refs_v1", hash, "short"))?,
    ))
}

/// Removes and returns the lost reference count of `hash` (0 when none is recorded).
pub(crate) fn take_lost_refs(
    table: &mut redb::Table<&[u8; 32], &[u8]>,
    hash: &Hash,
) -> Result<u64, IndexError> {
    let Some(raw) = table.remove(hash)?.map(|v| v.value().to_vec()) else {
        return Ok(0);
    };
    decode_lost_refs(hash, &raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_entry_round_trips_and_rejects_bad_bytes() {
        let e = ObjectEntry {
            kind: RecordKind::LeafNode,
            loc: RecordLoc {
                segment: 7,
                offset: 4096,
                payload_len: 123,
            },
            refcount: 3,
            unreferenced_since_unix_ms: 1_700_000_000_000,
        };
        let bytes = e.encode();
        assert_eq!(ObjectEntry::decode(&[0], &bytes).unwrap(), e);
        assert!(ObjectEntry::decode(&[0], &bytes[..37]).is_err());
        let mut bad = bytes.clone();
        bad[0] = 9;
        assert!(ObjectEntry::decode(&[0], &bad).is_err());
        let mut bad = bytes.clone();
        bad[1] = 0xEE;
        assert!(matches!(
            ObjectEntry::decode(&[0], &bad),
            Err(IndexError::Corrupted { .. })
        ));
    }

    fn pin(name: &str) -> Pin {
        Pin {
            channel: DEFAULT_CHANNEL.to_string(),
            blob_ref: BlobRef::Small {
                hash: [7; 32],
                size: 3,
            },
            name: name.to_string(),
            created_unix_ms: 9,
        }
    }

    #[test]
    fn pin_names_are_checked_and_never_encoded_cut_inside_a_character() {
        let limit = "é".repeat(MAX_PIN_NAME / 2);
        assert_eq!(check_pin_name(&limit), Ok(()));
        let long = format!("a{limit}");
        assert_eq!(
            check_pin_name(&long),
            Err(PinNameTooLong {
                len: MAX_PIN_NAME + 1
            })
        );
        // The encoder's guard: a name that bypassed the check is cut at a boundary.
        let p = pin(&long);
        let decoded = Pin::decode(DEFAULT_CHANNEL, &[0], &p.encode()).unwrap();
        assert_eq!(decoded.name.len(), MAX_PIN_NAME - 1);
        assert!(long.starts_with(&decoded.name));
        assert_eq!(
            Pin::decode(DEFAULT_CHANNEL, &[0], &pin(&limit).encode()).unwrap(),
            pin(&limit)
        );
    }

    #[test]
    fn a_name_an_older_build_cut_inside_a_character_decodes_without_it() {
        let whole = pin(&"a".repeat(MAX_PIN_NAME - 1)).encode();
        let mut legacy = whole.clone();
        let name_end = PIN_HEADER_LEN + MAX_PIN_NAME - 1;
        legacy.splice(name_end..name_end, ["é".as_bytes()[0]]);
        legacy[9..11].copy_from_slice(&(MAX_PIN_NAME as u16).to_le_bytes());
        let decoded = Pin::decode(DEFAULT_CHANNEL, &[0], &legacy).unwrap();
        assert_eq!(decoded, Pin::decode(DEFAULT_CHANNEL, &[0], &whole).unwrap());
        // Only that signature is forgiven: a shorter name, or a bad byte inside, is corrupt.
        let mut bad = pin("ab").encode();
        bad[PIN_HEADER_LEN + 1] = 0xc3;
        assert!(Pin::decode(DEFAULT_CHANNEL, &[0], &bad).is_err());
        let mut inside = legacy.clone();
        inside[PIN_HEADER_LEN] = 0xff;
        assert!(Pin::decode(DEFAULT_CHANNEL, &[0], &inside).is_err());
    }

    #[test]
    fn object_entry_golden_bytes() {
        let e = ObjectEntry {
            kind: RecordKind::Chunk,
            loc: RecordLoc {
                segment: 1,
                offset: 2,
                payload_len: 3,
            },
            refcount: 4,
            unreferenced_since_unix_ms: 5,
        };
        let hex: String = e.encode().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "0101\
             0100000000000000\
             0200000000000000\
             03000000\
             0400000000000000\
             0500000000000000"
        );
    }
}
