//! The finished record: what a finished upload leaves under its staging id for a publisher
//! that lost its answer, and for the node that still has to propose its pin on a replicated
//! channel. Pure codec: no I/O. Layout: docs/FORMAT.md §4.5.
//!
//! Stored as the value of `ext.staging.finished_v1[staging_id]`, written in the same index
//! transaction as the blob's last nodes and the checkpoint's removal.
#![deny(clippy::arithmetic_side_effects)]

use crate::cursor::{Cursor, Truncation};
use net_mesh_engine::BlobRef;
use net_mesh_engine::codec::DecodeError;
use net_mesh_engine::index::{
    DEFAULT_CHANNEL, MAX_CHANNEL_NAME, MAX_PIN_NAME, check_channel_name, pin_name_prefix,
};

/// Version byte of the finished record this build writes.
pub const FINISHED_VERSION: u8 = 3;
/// An older layout this build still reads: no flags byte (read as a name not given).
pub const FINISHED_VERSION_V2: u8 = 2;
/// An older layout this build still reads: no channel, no name and no flags (read as channel
/// [`DEFAULT_CHANNEL`], name empty, not given).
pub const FINISHED_VERSION_V1: u8 = 1;

/// Flag bit: the user gave the pin name (docs/FORMAT.md §4.2, the checkpoint's bit 0).
pub const FLAG_NAME_GIVEN: u8 = 1;

/// Offsets of the fixed part (docs/FORMAT.md §4.5), the same in every version up to the
/// chunk count.
pub mod layout {
    pub const VERSION_OFFSET: usize = 0;
    pub const FINISHED_MS_OFFSET: usize = 1;
    pub const CHUNKS_OFFSET: usize = 9;
    /// Versions 2 and 3: one byte, the channel's length; the channel follows.
    pub const CHANNEL_LEN_OFFSET: usize = 17;
    /// Version 3: bytes before the variable parts (the channel, the name, the ref): version,
    /// finished ms, chunk count, channel length, name length and flags (after the name).
    pub const FIXED_LEN: usize = 21;
    /// Version 2: the same without the flags byte.
    pub const V2_FIXED_LEN: usize = 20;
    /// Version 1: bytes before the ref.
    pub const V1_HEADER_LEN: usize = 17;
}

/// What a finished upload left (docs/FORMAT.md §4.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedUpload {
    pub finished_unix_ms: u64,
    /// Chunks in the blob, counting repeats.
    pub chunks: u64,
    /// The channel the upload pinned (or, on a replicated channel, is to pin) its blob in.
    pub channel: String,
    /// The name the blob is pinned under.
    pub name: String,
    /// Whether the user gave `name` (then the finish renamed an existing pin, or on a
    /// replicated channel a pin kept under another name refuses the put).
    pub name_given: bool,
    pub blob_ref: BlobRef,
}

/// Why finished-record bytes were rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FinishedError {
    #[error("empty finished record")]
    Empty,
    #[error(
        "unsupported finished-record version {0} (this build reads {FINISHED_VERSION_V1} to \
         {FINISHED_VERSION})"
    )]
    UnsupportedVersion(u8),
    #[error("truncated at offset {offset}: {what} needs {needed} bytes")]
    Truncated {
        what: &'static str,
        offset: usize,
        needed: usize,
    },
    #[error("{what} at offset {offset} is invalid: {reason}")]
    Invalid {
        what: &'static str,
        offset: usize,
        reason: String,
    },
    #[error("blob ref at offset {offset}: {source}")]
    BlobRef { offset: usize, source: DecodeError },
}

impl FinishedUpload {
    /// Encodes as version [`FINISHED_VERSION`].
    pub fn encode(&self) -> Vec<u8> {
        // Both are checked where an upload begins (and read back checked from its
        // checkpoint). The fallbacks only keep this encoder from writing a record the decoder
        // refuses: a channel that is not a valid name becomes `default`, where no pin is
        // pending; a name is cut at a character boundary.
        let channel = match check_channel_name(&self.channel) {
            Ok(()) => self.channel.as_str(),
            Err(_) => DEFAULT_CHANNEL,
        };
        let name = pin_name_prefix(&self.name).as_bytes();
        let blob_ref = self.blob_ref.encode();
        let len = layout::FIXED_LEN
            .saturating_add(channel.len())
            .saturating_add(name.len())
            .saturating_add(blob_ref.len());
        let mut out = Vec::with_capacity(len);
        out.push(FINISHED_VERSION);
        out.extend_from_slice(&self.finished_unix_ms.to_le_bytes());
        out.extend_from_slice(&self.chunks.to_le_bytes());
        out.push(u8::try_from(channel.len()).unwrap_or(0));
        out.extend_from_slice(channel.as_bytes());
        out.extend_from_slice(&u16::try_from(name.len()).unwrap_or(0).to_le_bytes());
        out.extend_from_slice(name);
        out.push(if self.name_given { FLAG_NAME_GIVEN } else { 0 });
        out.extend_from_slice(&blob_ref);
        out
    }

    /// Decodes version 3, version 2 (the name not given) or version 1 (channel `default`, no
    /// name). Strict: every length is checked against its maximum and the input, names must be
    /// UTF-8 (and the channel a valid channel name), reserved flag bits must be 0, and the ref
    /// takes exactly the rest.
    pub fn decode(bytes: &[u8]) -> Result<FinishedUpload, FinishedError> {
        let mut r: Cursor<'_, FinishedError> = Cursor::new(bytes);
        let version = match bytes.first() {
            None => return Err(FinishedError::Empty),
            Some(&v) => v,
        };
        if ![FINISHED_VERSION, FINISHED_VERSION_V2, FINISHED_VERSION_V1].contains(&version) {
            return Err(FinishedError::UnsupportedVersion(version));
        }
        r.take(1, "version")?;
        let finished_unix_ms = r.u64("finished ms")?;
        let chunks = r.u64("chunk count")?;
        let (channel, name, name_given) = if version == FINISHED_VERSION_V1 {
            (DEFAULT_CHANNEL.to_string(), String::new(), false)
        } else {
            let channel_at = r.pos;
            let channel_len = usize::from(r.u8("channel length")?);
            if channel_len > MAX_CHANNEL_NAME {
                return Err(invalid(
                    "channel",
                    channel_at,
                    format!("length {channel_len}"),
                ));
            }
            let bytes = r.take(channel_len, "channel")?;
            let channel = std::str::from_utf8(bytes)
                .map_err(|_| invalid("channel", channel_at, "not UTF-8"))?;
            check_channel_name(channel)
                .map_err(|e| invalid("channel", channel_at, e.to_string()))?;
            let name_at = r.pos;
            let name_len = usize::from(r.u16("pin name length")?);
            if name_len > MAX_PIN_NAME {
                return Err(invalid("pin name", name_at, format!("length {name_len}")));
            }
            let bytes = r.take(name_len, "pin name")?;
            let name = std::str::from_utf8(bytes)
                .map_err(|_| invalid("pin name", name_at, "not UTF-8"))?;
            let name_given = if version == FINISHED_VERSION {
                let flags_at = r.pos;
                let flags = r.u8("flags")?;
                if flags & !FLAG_NAME_GIVEN != 0 {
                    return Err(invalid(
                        "flags",
                        flags_at,
                        format!("reserved bits set in {flags:#04x}"),
                    ));
                }
                flags & FLAG_NAME_GIVEN != 0
            } else {
                false
            };
            (channel.to_string(), name.to_string(), name_given)
        };
        let ref_at = r.pos;
        let blob_ref = BlobRef::decode(r.rest()).map_err(|source| FinishedError::BlobRef {
            offset: ref_at,
            source,
        })?;
        Ok(FinishedUpload {
            finished_unix_ms,
            chunks,
            channel,
            name,
            name_given,
            blob_ref,
        })
    }
}

/// Fuzz harness (the `finished_record` target and the tests): a record the decoder accepts
/// encodes back to the same bytes (version 3) or to a version-3 record that decodes to the same
/// value (versions 1 and 2).
pub fn fuzz_decode(data: &[u8]) {
    if let Ok(record) = FinishedUpload::decode(data) {
        let again = record.encode();
        if data.first() == Some(&FINISHED_VERSION) {
            assert!(again == data, "finished record decode/encode not canonical");
        } else {
            assert!(
                FinishedUpload::decode(&again).as_ref() == Ok(&record),
                "an older finished record does not survive re-encoding"
            );
        }
    }
}

impl Truncation for FinishedError {
    fn truncated(what: &'static str, offset: usize, needed: usize) -> Self {
        FinishedError::Truncated {
            what,
            offset,
            needed,
        }
    }
}

fn invalid(what: &'static str, offset: usize, reason: impl Into<String>) -> FinishedError {
    FinishedError::Invalid {
        what,
        offset,
        reason: reason.into(),
    }
}
