//! The storage node's wire protocol, version 1 (docs/FORMAT.md §6): method names, the role each
//! needs, and the messages, postcard-encoded (the nRPC payload encoding). Pure: no I/O.
//!
//! Goals: a client gets exactly what a local data dir would give it, verified again on its
//! side (reads stream the objects a verified read asks for, in its order, so the client runs
//! the same verified read over them); uploads are staging uploads, resumable across dropped
//! connections and node restarts; a node never receives bytes it did not ask a role for, and
//! never sends a Tree ref to a peer without the tag that says it can read one.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// The protocol's version; every method name starts with `node/v1/`.
pub const VERSION: u8 = 1;

/// The capability tag a peer announces when it reads `BlobRef::Tree` refs (docs/FORMAT.md §2.6).
pub const TAG_BLOB_TREE: &str = "dataforts.blob_tree_v3";

/// Largest piece of object bytes in one message (objects are split into pieces of this size).
pub const MAX_PIECE: usize = 1024 * 1024;

/// What a peer must be allowed to call a method (`admin` implies `write`, which implies `read`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Role {
    Read,
    Write,
    Admin,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        }
    }
}

/// The node's methods, with their names and the role each needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// unary `()` → [`Status`].
    Status,
    /// server-streaming `()` → [`PinRow`]s.
    List,
    /// unary [`BlobSpec`] → [`Resolved`]: the ref of a ref or of a pinned blob's id prefix.
    Resolve,
    /// unary [`BlobSpec`] → [`Stat`].
    Stat,
    /// server-streaming [`ReadRequest`] → [`ObjectPart`]s: the objects a verified read asks for.
    Read,
    /// server-streaming [`BlobSpec`] → [`ChunkRow`]s.
    Chunks,
    /// unary [`BlobSpec`] → [`Unpinned`].
    Remove,
    /// client-streaming [`PutPart`]s → [`PutDone`].
    Put,
    /// unary `()` → `Vec<`[`StagingRow`]`>`.
    StagingList,
    /// unary `String` (staging id) → [`StagingState`].
    StagingState,
    /// unary `String` (staging id) → `bool` (whether it existed).
    StagingAbort,
    /// unary `Vec<[u8; 32]>` → `Vec<bool>`: which objects the node has.
    Has,
    /// server-streaming `Vec<[u8; 32]>` → [`ObjectPart`]s of those objects, in order.
    Objects,
    /// unary [`PullRequest`] → [`PullDone`]: the node fetches a blob from another node.
    Pull,
    /// unary [`GcRequest`] → [`GcDone`].
    Gc,
}

impl Method {
    pub const ALL: [Method; 15] = [
        Method::Status,
        Method::List,
        Method::Resolve,
        Method::Stat,
        Method::Read,
        Method::Chunks,
        Method::Remove,
        Method::Put,
        Method::StagingList,
        Method::StagingState,
        Method::StagingAbort,
        Method::Has,
        Method::Objects,
        Method::Pull,
        Method::Gc,
    ];

    /// The nRPC method name.
    pub fn name(self) -> &'static str {
        match self {
            Method::Status => "node/v1/status",
            Method::List => "node/v1/list",
            Method::Resolve => "node/v1/resolve",
            Method::Stat => "node/v1/stat",
            Method::Read => "node/v1/read",
            Method::Chunks => "node/v1/chunks",
            Method::Remove => "node/v1/remove",
            Method::Put => "node/v1/put",
            Method::StagingList => "node/v1/staging_list",
            Method::StagingState => "node/v1/staging_state",
            Method::StagingAbort => "node/v1/staging_abort",
            Method::Has => "node/v1/has",
            Method::Objects => "node/v1/objects",
            Method::Pull => "node/v1/pull",
            Method::Gc => "node/v1/gc",
        }
    }

    pub fn from_name(name: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The role a peer needs to call it.
    pub fn role(self) -> Role {
        match self {
            Method::Status
            | Method::List
            | Method::Resolve
            | Method::Stat
            | Method::Read
            | Method::Chunks
            | Method::StagingList
            | Method::StagingState
            | Method::Has
            | Method::Objects => Role::Read,
            Method::Remove | Method::Put | Method::StagingAbort | Method::Pull => Role::Write,
            Method::Gc => Role::Admin,
        }
    }
}

/// A blob named by the client: a full ref (wire bytes), or the hex prefix of a pinned blob's id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlobSpec {
    Ref(ByteBuf),
    IdPrefix(String),
}

/// What [`Method::Resolve`] answers: the blob's ref (wire bytes) and its pin name, if pinned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolved {
    pub blob_ref: ByteBuf,
    pub name: Option<String>,
}

/// [`Method::Status`]'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub node_id: String,
    pub version: String,
    pub uptime_secs: u64,
    /// Bytes of the store's segment files.
    pub store_bytes: u64,
    pub blob_count: u64,
    pub live_uploads: u64,
    pub open_sessions: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub capabilities: Vec<String>,
}

/// One pin of [`Method::List`]: the blob id, its name, ref and creation time (Unix ms); or a
/// row that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PinRow {
    Pin {
        blob_id: [u8; 32],
        name: String,
        blob_ref: ByteBuf,
        created_unix_ms: u64,
    },
    Undecodable {
        blob_id: [u8; 32],
        error: String,
    },
}

/// [`Method::Stat`]'s answer (the fields of `blob stat --json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stat {
    pub blob_ref: ByteBuf,
    pub kind: String,
    pub size: u64,
    pub depth: u8,
    pub chunks: u64,
    /// `None` for plain, `Some((k, n))` for Reed–Solomon.
    pub encoding: Option<(u8, u8)>,
}

/// [`Method::Read`]'s request: a ref and a byte range of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadRequest {
    pub blob_ref: ByteBuf,
    pub start: u64,
    pub end: u64,
}

/// One step of a stream of objects. An object is `Object` followed by its bytes in `Piece`s
/// (at most [`MAX_PIECE`] each, `len` in all); `Missing` stands for an object the node could
/// not give (its own read failed; the client's read then decides, as the node's did).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ObjectPart {
    Object {
        hash: [u8; 32],
        /// `1` chunk, `2` leaf node, `3` internal node (docs/FORMAT.md §1 record kinds).
        kind: u8,
        len: u32,
    },
    Piece(ByteBuf),
    Missing {
        hash: [u8; 32],
        kind: u8,
        reason: String,
    },
}

/// One chunk of [`Method::Chunks`] (the fields of `blob chunks --json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRow {
    pub hash: [u8; 32],
    pub size: u32,
    /// `data` or `parity`.
    pub role: String,
    pub stripe: Option<u32>,
}

/// [`Method::Remove`]'s answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Unpinned {
    NotPinned,
    Removed,
    /// A pin row that did not decode was removed; the counts it held stay until fsck --repair.
    RemovedUndecodable,
}

/// How a [`Method::Put`] starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PutStart {
    /// A new upload: staging id (`None`: the node picks one), pin name, chunking (`None`: the
    /// node's), checkpoint interval in bytes (`None`: the node's default).
    Begin {
        staging_id: Option<String>,
        name: String,
        chunking: Option<String>,
        checkpoint_interval: Option<u64>,
    },
    /// Continue upload `staging_id`; the data that follows starts at input offset `offset`,
    /// which must be the upload's resume offset ([`StagingState::Live`]).
    Resume {
        staging_id: String,
        offset: u64,
        checkpoint_interval: Option<u64>,
    },
    /// An erasure-coded upload (not resumable): `k` data and `n − k` parity chunks per stripe.
    ErasureCoded {
        name: String,
        chunking: Option<String>,
        k: u8,
        n: u8,
    },
}

/// One message of a [`Method::Put`] stream: `Start` first, then the input in `Data` pieces.
/// The stream's end is the end of the input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PutPart {
    Start(PutStart),
    Data(ByteBuf),
}

/// A finished put (the fields of `blob put --json`, plus the staging id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutDone {
    pub blob_ref: ByteBuf,
    pub chunks: u64,
    pub new_chunks: u64,
    pub new_bytes: u64,
    pub staging_id: Option<String>,
    /// Where the data of this call started (its `Resume` offset; 0 for a new upload).
    pub resumed_from: Option<u64>,
}

/// One live upload (the fields of `staging list --json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagingRow {
    pub staging_id: String,
    pub bytes_committed: u64,
    pub resume_offset: u64,
    pub seq: u64,
    pub chunks: u64,
    pub created_unix_ms: u64,
    pub last_checkpoint_unix_ms: u64,
    pub chunking: String,
    pub name: String,
}

/// Where upload `staging_id` stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StagingState {
    /// Live: the client replays its input from `resume_offset`.
    Live {
        resume_offset: u64,
    },
    /// Finished within the abandonment grace.
    Finished(PutDone),
    NotFound,
}

/// [`Method::Pull`]'s request: fetch `blob_ref` from the node at `from` (`NODEID@HOST:PORT`),
/// only the objects this node lacks, and pin it under `name`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequest {
    pub blob_ref: ByteBuf,
    pub from: String,
    pub name: String,
}

/// What a pull moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullDone {
    pub objects_fetched: u64,
    pub bytes_fetched: u64,
}

/// [`Method::Gc`]'s request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcRequest {
    pub grace_secs: u64,
    pub dry_run: bool,
}

/// [`Method::Gc`]'s answer: the engine's report as `gc --json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcDone {
    pub report_json: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_names_are_unique_and_versioned() {
        for m in Method::ALL {
            assert!(m.name().starts_with("node/v1/"));
            assert_eq!(Method::from_name(m.name()), Some(m));
        }
        let mut names: Vec<_> = Method::ALL.iter().map(|m| m.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Method::ALL.len());
    }

    #[test]
    fn roles_order_admin_over_write_over_read() {
        assert!(Role::Admin > Role::Write && Role::Write > Role::Read);
    }
}
