//! The staging checkpoint: everything a resumed upload needs to continue the exact tree an
//! uninterrupted upload would build. Pure codec: no I/O. Layout: docs/FORMAT.md §4.
//!
//! Stored as the value of `ext.staging.uploads_v1[staging_id]`, written in the same index
//! transaction as the chunks and nodes it covers.
#![deny(clippy::arithmetic_side_effects)]

use crate::cursor::{Cursor, Truncation};
use net_mesh_engine::chunking::ChunkingStrategy;
use net_mesh_engine::codec::{
    DecodeError, Encoding, Hash, InternalNode, LeafNode, MAX_CHUNK_SIZE, MAX_DEPTH,
};
use net_mesh_engine::index::{
    DEFAULT_CHANNEL, MAX_CHANNEL_NAME, MAX_PIN_NAME, check_channel_name, pin_name_prefix,
};
use net_mesh_engine::tree::{DEFAULT_MANIFEST_MAX_REFS, StateError, TreePolicy, TreeState};

/// Magic of an encoded checkpoint: ASCII `NMSC`.
pub const CHECKPOINT_MAGIC: [u8; 4] = *b"NMSC";
/// Version byte of the checkpoint layout this build writes.
pub const CHECKPOINT_VERSION: u8 = 3;
/// Flag bit 0 of a version 3 checkpoint: the user gave the pin name (docs/FORMAT.md §4.2).
pub const FLAG_PIN_NAME_GIVEN: u8 = 1;
/// An older layout this build still reads: no `channel` field (the upload pins into
/// [`DEFAULT_CHANNEL`]).
pub const CHECKPOINT_VERSION_V2: u8 = 2;
/// The oldest layout this build still reads: no `manifest_max_refs` field either (a resumed
/// upload gets [`DEFAULT_MANIFEST_MAX_REFS`]).
pub const CHECKPOINT_VERSION_V1: u8 = 1;

/// Offsets of the fixed part (docs/FORMAT.md §4.2), versions 3 and 2 (which differ only after
/// the pin name). Version 1 is the same up to `internal_fanout`, then has `pin_name_len` at
/// [`layout::V1_PIN_NAME_LEN_OFFSET`].
pub mod layout {
    pub const MAGIC_OFFSET: usize = 0;
    pub const VERSION_OFFSET: usize = 4;
    pub const FLAGS_OFFSET: usize = 5;
    pub const SEQ_OFFSET: usize = 6;
    pub const CREATED_OFFSET: usize = 14;
    pub const LAST_CHECKPOINT_OFFSET: usize = 22;
    pub const LAST_CHUNK_BYTE_OFFSET_OFFSET: usize = 30;
    pub const CHUNK_COUNT_OFFSET: usize = 38;
    pub const COMPLETED_LEAVES_OFFSET: usize = 46;
    pub const COMPLETED_INTERNALS_OFFSET: usize = 54;
    pub const LAST_CHUNK_HASH_OFFSET: usize = 62;
    pub const LAST_CHUNK_SIZE_OFFSET: usize = 94;
    pub const CHUNKING_TAG_OFFSET: usize = 98;
    pub const CHUNKING_PARAMS_OFFSET: usize = 99;
    pub const LEAF_FANOUT_OFFSET: usize = 111;
    pub const INTERNAL_FANOUT_OFFSET: usize = 115;
    pub const MANIFEST_MAX_REFS_OFFSET: usize = 119;
    pub const PIN_NAME_LEN_OFFSET: usize = 123;
    /// Length of the fixed part; the pin name starts here.
    pub const FIXED_LEN: usize = 125;
    /// Version 1: `pin_name_len` follows `internal_fanout`.
    pub const V1_PIN_NAME_LEN_OFFSET: usize = 119;
    /// Version 1: length of the fixed part.
    pub const V1_FIXED_LEN: usize = 121;
    pub const CHUNKING_CDC: u8 = 0;
    pub const CHUNKING_FIXED: u8 = 1;
}

/// One live upload's durable state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagingCheckpoint {
    /// 0 for the checkpoint written at begin, +1 for each later one.
    pub seq: u64,
    pub created_unix_ms: u64,
    /// When this checkpoint was committed (abandoned uploads are judged by it).
    pub last_checkpoint_unix_ms: u64,
    pub chunking: ChunkingStrategy,
    /// Pin label the finished blob gets.
    pub pin_name: String,
    /// Whether the user gave `pin_name` (flag bit 0): it then renames the blob's pin if the
    /// channel pins it already.
    pub pin_name_given: bool,
    /// Channel the finished blob is pinned in.
    pub channel: String,
    /// The tree builder's pending state; `tree.total_bytes` is `last_chunk_byte_offset`.
    pub tree: TreeState,
}

/// Why checkpoint bytes were rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("truncated at offset {offset}: {what} needs {needed} bytes")]
    Truncated {
        what: &'static str,
        offset: usize,
        needed: usize,
    },
    #[error("bad magic {found:02x?} (expected NMSC)")]
    BadMagic { found: [u8; 4] },
    #[error(
        "unsupported checkpoint version {0} (this build reads {CHECKPOINT_VERSION_V1} to \
         {CHECKPOINT_VERSION})"
    )]
    UnsupportedVersion(u8),
    #[error("{what} at offset {offset} is invalid: {reason}")]
    Invalid {
        what: &'static str,
        offset: usize,
        reason: String,
    },
    #[error("{count} trailing bytes at offset {offset}")]
    TrailingBytes { offset: usize, count: usize },
    #[error("embedded node at offset {offset}: {source}")]
    Node { offset: usize, source: DecodeError },
    #[error("tree state: {0}")]
    State(#[from] StateError),
}

impl StagingCheckpoint {
    /// Input offset of the end of the last chunk fed to the tree.
    pub fn last_chunk_byte_offset(&self) -> u64 {
        self.tree.total_bytes
    }

    /// Hash and size of the last chunk covered, if any.
    pub fn last_chunk(&self) -> Option<(Hash, u32)> {
        self.tree.last_chunk().map(|c| (c.hash, c.size))
    }

    /// Offset from which a publisher replays its input after a crash: the start of the last
    /// covered chunk, whose bytes are re-hashed to check the replay is the same input.
    pub fn replay_offset(&self) -> u64 {
        let last = self.last_chunk().map_or(0, |(_, size)| u64::from(size));
        self.tree.total_bytes.saturating_sub(last)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(&CHECKPOINT_MAGIC);
        out.push(CHECKPOINT_VERSION);
        out.push(if self.pin_name_given {
            FLAG_PIN_NAME_GIVEN
        } else {
            0
        });
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.created_unix_ms.to_le_bytes());
        out.extend_from_slice(&self.last_checkpoint_unix_ms.to_le_bytes());
        out.extend_from_slice(&self.tree.total_bytes.to_le_bytes());
        out.extend_from_slice(&self.tree.chunk_count.to_le_bytes());
        out.extend_from_slice(&self.tree.completed_leaves.to_le_bytes());
        out.extend_from_slice(&self.tree.completed_internals.to_le_bytes());
        let (hash, size) = self.last_chunk().unwrap_or(([0; 32], 0));
        out.extend_from_slice(&hash);
        out.extend_from_slice(&size.to_le_bytes());
        let (tag, a, b, c) = match self.chunking {
            ChunkingStrategy::Cdc { avg, min, max } => (layout::CHUNKING_CDC, min, avg, max),
            ChunkingStrategy::Fixed { size } => (layout::CHUNKING_FIXED, size, 0, 0),
        };
        out.push(tag);
        for v in [a, b, c] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        let fanout = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        out.extend_from_slice(&fanout(self.tree.policy.leaf_fanout).to_le_bytes());
        out.extend_from_slice(&fanout(self.tree.policy.internal_fanout).to_le_bytes());
        out.extend_from_slice(&fanout(self.tree.policy.manifest_max_refs).to_le_bytes());
        // Names are checked where an upload begins; the cut (at a character boundary) only
        // guards this encoder's contract that it never writes a name the decoder refuses.
        let name = pin_name_prefix(&self.pin_name).as_bytes();
        out.extend_from_slice(&u16::try_from(name.len()).unwrap_or(0).to_le_bytes());
        out.extend_from_slice(name);
        // Checked where an upload begins, like the name; an invalid one is written empty,
        // which the decoder refuses rather than pinning somewhere else.
        let channel = match check_channel_name(&self.channel) {
            Ok(()) => self.channel.as_bytes(),
            Err(_) => &[],
        };
        out.push(u8::try_from(channel.len()).unwrap_or(0));
        out.extend_from_slice(channel);
        encode_encoding(self.tree.encoding, &mut out);
        let leaf = if self.tree.open_leaf.is_empty() {
            Vec::new()
        } else {
            LeafNode {
                encoding: self.tree.encoding,
                chunks: self.tree.open_leaf.clone(),
            }
            .encode()
        };
        push_blob(&mut out, &leaf);
        out.push(u8::try_from(self.tree.levels.len()).unwrap_or(u8::MAX));
        for (i, children) in self.tree.levels.iter().enumerate() {
            let node = InternalNode {
                level: u8::try_from(i.saturating_add(1)).unwrap_or(u8::MAX),
                children: children.clone(),
            };
            push_blob(&mut out, &node.encode());
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<StagingCheckpoint, CheckpointError> {
        let mut r: Cursor<'_, CheckpointError> = Cursor::new(bytes);
        let magic: [u8; 4] = r.array("magic")?;
        if magic != CHECKPOINT_MAGIC {
            return Err(CheckpointError::BadMagic { found: magic });
        }
        let version = r.u8("version")?;
        if !(CHECKPOINT_VERSION_V1..=CHECKPOINT_VERSION).contains(&version) {
            return Err(CheckpointError::UnsupportedVersion(version));
        }
        let flags_at = r.pos;
        let flags = r.u8("flags")?;
        // Bit 0 (the pin name was given) exists from version 3 on; other bits are reserved.
        let known = if version >= CHECKPOINT_VERSION {
            FLAG_PIN_NAME_GIVEN
        } else {
            0
        };
        if flags & !known != 0 {
            return Err(r.invalid("flags", flags_at, "reserved flags must be zero"));
        }
        let pin_name_given = flags & FLAG_PIN_NAME_GIVEN != 0;
        let seq = r.u64("seq")?;
        let created_unix_ms = r.u64("created")?;
        let last_checkpoint_unix_ms = r.u64("last_checkpoint")?;
        let total_bytes = r.u64("last_chunk_byte_offset")?;
        let chunk_count = r.u64("chunk_count")?;
        let completed_leaves = r.u64("completed_leaves")?;
        let completed_internals = r.u64("completed_internals")?;
        let last_hash_at = r.pos;
        let last_hash: Hash = r.array("last_chunk_hash")?;
        let last_size = r.u32("last_chunk_size")?;
        let chunking_at = r.pos;
        let tag = r.u8("chunking tag")?;
        let (a, b, c) = (r.u32("chunking")?, r.u32("chunking")?, r.u32("chunking")?);
        let chunking = match (tag, b, c) {
            (layout::CHUNKING_CDC, _, _) => ChunkingStrategy::Cdc {
                min: a,
                avg: b,
                max: c,
            },
            (layout::CHUNKING_FIXED, 0, 0) => ChunkingStrategy::Fixed { size: a },
            _ => return Err(r.invalid("chunking", chunking_at, format!("tag {tag} / params"))),
        };
        chunking
            .validate()
            .map_err(|e| r.invalid("chunking", chunking_at, e.to_string()))?;
        let leaf_fanout = r.u32("leaf_fanout")? as usize;
        let internal_fanout = r.u32("internal_fanout")? as usize;
        let manifest_max_refs = if version == CHECKPOINT_VERSION_V1 {
            DEFAULT_MANIFEST_MAX_REFS
        } else {
            r.u32("manifest_max_refs")? as usize
        };
        let policy = TreePolicy {
            leaf_fanout,
            internal_fanout,
            manifest_max_refs,
        };
        let name_at = r.pos;
        let name_len = usize::from(r.u16("pin name length")?);
        if name_len > MAX_PIN_NAME {
            return Err(r.invalid("pin name", name_at, format!("length {name_len}")));
        }
        let name = r.take(name_len, "pin name")?;
        let pin_name = String::from_utf8(name.to_vec())
            .map_err(|_| r.invalid("pin name", name_at, "not UTF-8"))?;
        let channel = if version < CHECKPOINT_VERSION {
            DEFAULT_CHANNEL.to_string()
        } else {
            let channel_at = r.pos;
            let channel_len = usize::from(r.u8("channel length")?);
            if channel_len > MAX_CHANNEL_NAME {
                return Err(r.invalid("channel", channel_at, format!("length {channel_len}")));
            }
            let bytes = r.take(channel_len, "channel")?;
            let channel = std::str::from_utf8(bytes)
                .map_err(|_| r.invalid("channel", channel_at, "not UTF-8"))?;
            check_channel_name(channel)
                .map_err(|e| r.invalid("channel", channel_at, e.to_string()))?;
            channel.to_string()
        };
        let encoding_at = r.pos;
        let encoding = r.encoding()?;
        let leaf_at = r.pos;
        let leaf_bytes = r.blob("open leaf")?;
        let open_leaf = if leaf_bytes.is_empty() {
            Vec::new()
        } else {
            let leaf = LeafNode::decode(leaf_bytes).map_err(|source| CheckpointError::Node {
                offset: leaf_at,
                source,
            })?;
            if leaf.encoding != encoding {
                return Err(r.invalid("open leaf", leaf_at, "encoding differs from header"));
            }
            leaf.chunks
        };
        let levels_at = r.pos;
        let level_count = usize::from(r.u8("level count")?);
        if level_count.saturating_add(2) > usize::from(MAX_DEPTH) {
            return Err(r.invalid("level count", levels_at, format!("{level_count}")));
        }
        let mut levels = Vec::with_capacity(level_count);
        for i in 0..level_count {
            let at = r.pos;
            let node = InternalNode::decode(r.blob("pending level")?)
                .map_err(|source| CheckpointError::Node { offset: at, source })?;
            if usize::from(node.level) != i.saturating_add(1) {
                return Err(r.invalid("pending level", at, format!("level {}", node.level)));
            }
            levels.push(node.children);
        }
        if r.pos != bytes.len() {
            return Err(CheckpointError::TrailingBytes {
                offset: r.pos,
                count: bytes.len().saturating_sub(r.pos),
            });
        }
        let tree = TreeState {
            policy,
            encoding,
            open_leaf,
            levels,
            total_bytes,
            chunk_count,
            completed_leaves,
            completed_internals,
        };
        tree.validate()?;
        let expected_last = tree.last_chunk().map_or(([0; 32], 0), |c| (c.hash, c.size));
        if (last_hash, last_size) != expected_last || last_size > MAX_CHUNK_SIZE {
            return Err(r.invalid(
                "last chunk",
                last_hash_at,
                "differs from the open leaf's last chunk",
            ));
        }
        let _ = encoding_at;
        Ok(StagingCheckpoint {
            seq,
            created_unix_ms,
            last_checkpoint_unix_ms,
            chunking,
            pin_name,
            pin_name_given,
            channel,
            tree,
        })
    }
}

/// Fuzz harness (`fuzz/fuzz_targets/staging_checkpoint.rs`): decoding arbitrary bytes never
/// panics, an accepted checkpoint of the current version re-encodes to the same bytes
/// (canonical), and one of an older version re-encodes to a current one that decodes to the same
/// value.
#[allow(clippy::panic)] // fuzz harness: a panic is how a found bug is reported
pub fn fuzz_decode(data: &[u8]) {
    if let Ok(c) = StagingCheckpoint::decode(data) {
        let again = c.encode();
        if data.get(layout::VERSION_OFFSET) == Some(&CHECKPOINT_VERSION) {
            assert!(again == data, "checkpoint decode/encode not canonical");
        } else {
            assert!(
                StagingCheckpoint::decode(&again).as_ref() == Ok(&c),
                "older checkpoint does not survive re-encoding"
            );
        }
    }
}

fn encode_encoding(e: Encoding, out: &mut Vec<u8>) {
    match e {
        Encoding::Plain => out.push(0),
        Encoding::ReedSolomon {
            data_shards,
            total_shards,
        } => out.extend_from_slice(&[1, data_shards, total_shards]),
    }
}

fn push_blob(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(bytes);
}

impl Truncation for CheckpointError {
    fn truncated(what: &'static str, offset: usize, needed: usize) -> Self {
        CheckpointError::Truncated {
            what,
            offset,
            needed,
        }
    }
}

impl<'a> Cursor<'a, CheckpointError> {
    /// A u32 length then that many bytes (the length is checked against the input first).
    fn blob(&mut self, what: &'static str) -> Result<&'a [u8], CheckpointError> {
        let len = self.u32(what)? as usize;
        self.take(len, what)
    }

    fn encoding(&mut self) -> Result<Encoding, CheckpointError> {
        let at = self.pos;
        match self.u8("encoding")? {
            0 => Ok(Encoding::Plain),
            1 => {
                let data_shards = self.u8("data shards")?;
                let total_shards = self.u8("total shards")?;
                let e = Encoding::ReedSolomon {
                    data_shards,
                    total_shards,
                };
                if e.is_valid() {
                    Ok(e)
                } else {
                    Err(self.invalid("encoding", at, "invalid Reed-Solomon parameters"))
                }
            }
            tag => Err(self.invalid("encoding", at, format!("unknown tag {tag}"))),
        }
    }

    fn invalid(
        &self,
        what: &'static str,
        offset: usize,
        reason: impl Into<String>,
    ) -> CheckpointError {
        CheckpointError::Invalid {
            what,
            offset,
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use net_mesh_engine::codec::{ChildRef, ChunkRef, ChunkRole};

    pub(crate) fn sample() -> StagingCheckpoint {
        let chunk = |b: u8, size: u32| ChunkRef {
            hash: [b; 32],
            size,
            role: ChunkRole::Data,
        };
        StagingCheckpoint {
            seq: 7,
            created_unix_ms: 1_000,
            last_checkpoint_unix_ms: 2_000,
            chunking: ChunkingStrategy::Cdc {
                avg: 4096,
                min: 1024,
                max: 16384,
            },
            pin_name: "a.bin".into(),
            pin_name_given: false,
            channel: "photos".into(),
            tree: TreeState {
                policy: TreePolicy {
                    leaf_fanout: 2,
                    internal_fanout: 2,
                    manifest_max_refs: 3,
                },
                encoding: Encoding::Plain,
                open_leaf: vec![chunk(0xaa, 100)],
                levels: vec![vec![ChildRef {
                    hash: [0xbb; 32],
                    covered: 300,
                }]],
                total_bytes: 400,
                chunk_count: 3,
                completed_leaves: 1,
                completed_internals: 0,
            },
        }
    }

    #[test]
    fn round_trips_and_is_canonical() {
        let c = sample();
        let bytes = c.encode();
        assert_eq!(StagingCheckpoint::decode(&bytes).unwrap(), c);
        assert_eq!(c.replay_offset(), 300);
        assert_eq!(c.last_chunk_byte_offset(), 400);
        assert_eq!(bytes[layout::PIN_NAME_LEN_OFFSET], 5);
        assert_eq!(&bytes[layout::LAST_CHUNK_HASH_OFFSET..][..32], &[0xaa; 32]);
    }

    #[test]
    fn every_truncation_and_trailing_byte_is_rejected() {
        let bytes = sample().encode();
        for n in 0..bytes.len() {
            assert!(StagingCheckpoint::decode(&bytes[..n]).is_err(), "len {n}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(
            StagingCheckpoint::decode(&long),
            Err(CheckpointError::TrailingBytes { .. })
        ));
    }

    #[test]
    fn flipping_any_fixed_byte_is_rejected_or_decodes_differently() {
        let c = sample();
        let bytes = c.encode();
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            if let Ok(d) = StagingCheckpoint::decode(&bad) {
                assert_ne!(d, c, "byte {i}");
                assert_eq!(d.encode(), bad, "byte {i} decoded non-canonically");
            }
            fuzz_decode(&bad);
            fuzz_decode(&bad[..i]);
        }
    }
}
