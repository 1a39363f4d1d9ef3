//! The storage node's wire protocol, version 1 (docs/FORMAT.md §6): method names, the role each
//! needs, and the messages, postcard-encoded (the nRPC payload encoding). Pure: no I/O.
//!
//! Goals: a client gets exactly what a local data dir would give it, verified again on its
//! side (reads stream the objects a verified read asks for, in its order, so the client runs
//! the same verified read over them); uploads are staging uploads, resumable across dropped
//! connections and node restarts; a node never receives bytes it did not ask a role for, and
//! never sends a Tree ref to a peer without the tag that says it can read one.

use bytes::Bytes;
use net_mesh_rpc::RpcError;
use net_mesh_rpc::rpc::{Encoded, RawBytes};
use serde::de::DeserializeOwned;
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

/// How a method's call runs (nRPC call kinds, docs/FORMAT.md §5.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallKind {
    /// One request, one response.
    Unary,
    /// One request, a stream of responses.
    ServerStreaming,
    /// A stream of requests, one response.
    ClientStreaming,
}

impl CallKind {
    pub fn name(self) -> &'static str {
        match self {
            CallKind::Unary => "unary",
            CallKind::ServerStreaming => "server-streaming",
            CallKind::ClientStreaming => "client-streaming",
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
    /// unary [`RevokeRequest`] → `u32`: the issuer's revocation floor now in force.
    TokenRevoke,
    /// unary `String` (a channel name) → `bool` (whether it was created; false: it existed).
    ChannelCreate,
    /// unary `()` → `Vec<`[`ChannelRow`]`>`.
    ChannelList,
    /// unary [`ReplicateRequest`] → `bool` (whether the node started the channel's group now;
    /// false: it ran it already).
    ChannelReplicate,
    /// unary `String` (a channel name) → [`ReplicaStatus`].
    ChannelStatus,
    /// unary [`MoveBind`] → `()`: binds a source or target node to a replica move.
    ChannelMoveBind,
    /// unary [`MoveRun`] → [`MoveDone`]: the coordinator runs (or resumes) a replica move.
    ChannelMove,
    /// unary [`MoveRun`] → [`MoveDone`] (one step, `abandoned`): the coordinator gives up a
    /// replica move before its cutover.
    ChannelMoveAbandon,
}

impl Method {
    pub const ALL: [Method; 23] = [
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
        Method::TokenRevoke,
        Method::ChannelCreate,
        Method::ChannelList,
        Method::ChannelReplicate,
        Method::ChannelStatus,
        Method::ChannelMoveBind,
        Method::ChannelMove,
        Method::ChannelMoveAbandon,
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
            Method::TokenRevoke => "node/v1/token_revoke",
            Method::ChannelCreate => "node/v1/channel_create",
            Method::ChannelList => "node/v1/channel_list",
            Method::ChannelReplicate => "node/v1/channel_replicate",
            Method::ChannelStatus => "node/v1/channel_status",
            Method::ChannelMoveBind => "node/v1/channel_move_bind",
            Method::ChannelMove => "node/v1/channel_move",
            Method::ChannelMoveAbandon => "node/v1/channel_move_abandon",
        }
    }

    pub fn from_name(name: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.name() == name)
    }

    /// How its call runs.
    pub fn kind(self) -> CallKind {
        match self {
            Method::List | Method::Read | Method::Chunks | Method::Objects => {
                CallKind::ServerStreaming
            }
            Method::Put => CallKind::ClientStreaming,
            Method::Status
            | Method::Resolve
            | Method::Stat
            | Method::Remove
            | Method::StagingList
            | Method::StagingState
            | Method::StagingAbort
            | Method::Has
            | Method::Pull
            | Method::Gc
            | Method::TokenRevoke
            | Method::ChannelCreate
            | Method::ChannelList
            | Method::ChannelReplicate
            | Method::ChannelStatus
            | Method::ChannelMoveBind
            | Method::ChannelMove
            | Method::ChannelMoveAbandon => CallKind::Unary,
        }
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
            | Method::Objects
            | Method::ChannelList
            | Method::ChannelStatus => Role::Read,
            Method::Remove | Method::Put | Method::StagingAbort | Method::Pull => Role::Write,
            Method::Gc
            | Method::TokenRevoke
            | Method::ChannelCreate
            | Method::ChannelReplicate
            | Method::ChannelMoveBind
            | Method::ChannelMove
            | Method::ChannelMoveAbandon => Role::Admin,
        }
    }

    /// Whether it acts on the whole node rather than on the call's channel: GC, revocation
    /// floors, and making, moving or showing the group of a channel the request names (not
    /// the call's). A permission token grants these only when it covers every channel
    /// (docs/FORMAT.md §5.6).
    pub fn acts_on_node(self) -> bool {
        matches!(
            self,
            Method::Gc
                | Method::TokenRevoke
                | Method::ChannelCreate
                | Method::ChannelReplicate
                | Method::ChannelStatus
                | Method::ChannelMoveBind
                | Method::ChannelMove
                | Method::ChannelMoveAbandon
        )
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
    /// The streams moving bytes right now; an older node's message ends before it (none).
    #[serde(deserialize_with = "trailing::vec_or_empty")]
    pub streams: Vec<StreamRow>,
}

/// One pin of [`Method::List`]: the blob id, its name, ref and creation time; or a row that
/// does not decode. A Tree pin listed to a peer that does not announce [`TAG_BLOB_TREE`] is an
/// `Undecodable` row saying so (its ref is withheld).
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
    /// Its bandwidth class; an older peer's message ends before it (foreground).
    #[serde(deserialize_with = "trailing::class_or_foreground")]
    pub class: BandwidthClass,
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
    Piece(PieceBytes),
    Missing {
        hash: [u8; 32],
        kind: u8,
        reason: String,
        /// In a `read` stream, a channel that pins the read's blob on the node (the first by
        /// name), so that a read that finds none of the blob's objects is damage (the pinned
        /// blob's root is lost), not absence. Absent on the wire when `None` (an older node's
        /// message, or a blob no channel pins): a `None` has one encoding, the one without it.
        #[serde(
            deserialize_with = "trailing::option_or_none",
            skip_serializing_if = "Option::is_none"
        )]
        pinned_in: Option<String>,
    },
}

/// Postcard's tag of [`ObjectPart::Piece`] (its variant index, one byte).
pub const PIECE_TAG: u8 = 1;

/// A piece's bytes: on the wire a byte string, exactly as a `ByteBuf` (so either side may use
/// either); here a view that a node cuts from the object it read without copying it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PieceBytes(Bytes);

impl std::ops::Deref for PieceBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl From<Bytes> for PieceBytes {
    fn from(bytes: Bytes) -> Self {
        PieceBytes(bytes)
    }
}

impl From<Vec<u8>> for PieceBytes {
    fn from(bytes: Vec<u8>) -> Self {
        PieceBytes(Bytes::from(bytes))
    }
}

impl From<PieceBytes> for Bytes {
    fn from(piece: PieceBytes) -> Self {
        piece.0
    }
}

impl Serialize for PieceBytes {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for PieceBytes {
    /// Accepts what a `ByteBuf` accepts.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        ByteBuf::deserialize(d).map(|b| PieceBytes::from(b.into_vec()))
    }
}

/// A message of a type `T` one of whose variants (tag `tag`, one byte) is a byte string that
/// ends the message, as its receiver takes it: that variant's bytes as a view of the frame
/// they arrived in (no copy), any other message decoded as `T`.
#[derive(Debug)]
pub enum Tagged<T> {
    Bytes(RawBytes),
    Other(T),
}

impl<T: DeserializeOwned + Serialize> Tagged<T> {
    /// Accepts exactly what decoding a `T` accepts, with the same result (a message of the
    /// bytes variant that is not well formed is decoded as `T`, which says why it fails).
    pub fn decode(message: Encoded, tag: u8) -> Result<Tagged<T>, RpcError> {
        let message = if message.bytes().first() == Some(&tag) {
            match message.byte_string_at(1) {
                Ok(bytes) => return Ok(Tagged::Bytes(bytes)),
                Err(message) => message,
            }
        } else {
            message
        };
        message.decode::<T>().map(Tagged::Other)
    }
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

/// The tree shape of a new blob ([`crate::proto`] mirror of the engine's `TreePolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeShape {
    pub leaf_fanout: u32,
    pub internal_fanout: u32,
    pub manifest_max_refs: u32,
}

/// How a [`Method::Put`] starts. A client that wants the ref a local put with the same options
/// gives sends its chunking and tree shape; `None` takes the node's store configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PutStart {
    /// A new resumable upload: staging id (`None`: the node picks one, and a call that drops
    /// cannot be resumed since the id only comes back in [`PutDone`]), pin name, chunking
    /// (text form `cdc`, `cdc:MIN,AVG,MAX` or `fixed:SIZE`, as `ChunkingStrategy` parses it), tree shape,
    /// checkpoint interval in bytes (`None`: the node's default).
    Begin {
        staging_id: Option<String>,
        name: String,
        chunking: Option<String>,
        tree: Option<TreeShape>,
        checkpoint_interval: Option<u64>,
        /// The upload's bandwidth class; an older peer's message ends before it (foreground).
        #[serde(deserialize_with = "trailing::class_or_foreground")]
        class: BandwidthClass,
        /// Whether the user gave `name` (`blob put --name`): it then renames the blob's pin
        /// if the channel pins it already. An older peer's message ends before it (false).
        #[serde(deserialize_with = "trailing::flag_or_false")]
        name_given: bool,
    },
    /// Continue upload `staging_id`; the data that follows starts at input offset `offset`,
    /// which must be the upload's resume offset ([`StagingState::Live`]). Chunking and tree
    /// shape are the upload's own (in its checkpoint).
    Resume {
        staging_id: String,
        offset: u64,
        checkpoint_interval: Option<u64>,
        /// Used only when the node holds no class for the upload (it keeps the one the upload
        /// began with).
        #[serde(deserialize_with = "trailing::class_or_foreground")]
        class: BandwidthClass,
    },
    /// An erasure-coded upload (not resumable): `k` data and `n − k` parity chunks per stripe.
    ErasureCoded {
        name: String,
        chunking: Option<String>,
        tree: Option<TreeShape>,
        k: u8,
        n: u8,
        /// The upload's bandwidth class; an older peer's message ends before it (foreground).
        #[serde(deserialize_with = "trailing::class_or_foreground")]
        class: BandwidthClass,
        /// As in `Begin`.
        #[serde(deserialize_with = "trailing::flag_or_false")]
        name_given: bool,
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
    /// The name of the blob's pin in the call's channel after the put (`None`: not pinned
    /// there, e.g. an older node's answer).
    #[serde(deserialize_with = "trailing::option_or_none")]
    pub pin_name: Option<String>,
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
    /// Its bandwidth class; an older peer's message ends before it (foreground).
    #[serde(deserialize_with = "trailing::class_or_foreground")]
    pub class: BandwidthClass,
    /// Whether the user gave `name` (`blob pull --name`): it then renames the blob's pin if
    /// the channel pins it already. An older peer's message ends before it (false).
    #[serde(deserialize_with = "trailing::flag_or_false")]
    pub name_given: bool,
}

/// What a pull moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullDone {
    pub objects_fetched: u64,
    pub bytes_fetched: u64,
    /// The name of the blob's pin in the call's channel after the pull (`None`: an older
    /// node's answer).
    #[serde(deserialize_with = "trailing::option_or_none")]
    pub pin_name: Option<String>,
}

/// [`Method::Gc`]'s request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcRequest {
    pub grace_secs: u64,
    pub dry_run: bool,
}

/// A channel as [`Method::ChannelList`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelRow {
    pub name: String,
    pub created_unix_ms: u64,
    /// Pin rows in the channel.
    pub pins: u64,
}

/// [`Method::ChannelReplicate`]'s request: run `channel` as a replicated channel whose
/// members are `members` (`NODE_ADDR`s, the callee among them; every member gets the same
/// list).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicateRequest {
    pub channel: String,
    pub members: Vec<String>,
}

/// A replicated channel's group as one member sees it ([`Method::ChannelStatus`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    pub channel: String,
    pub members: Vec<ReplicaMember>,
    /// The leader's `NODE_ADDR`, if this member knows one.
    pub leader: Option<String>,
    pub is_leader: bool,
    pub term: u64,
    /// The quorum-committed log index as far as this member knows it.
    pub committed: Option<u64>,
    /// The last log index applied to this member's pins.
    pub applied: Option<u64>,
    pub last_log_index: Option<u64>,
    /// Entries in this member's log not applied yet.
    pub pending_apply: u64,
    /// The `NODE_ADDR`s of `members` that do not vote: learners (a move's target before its
    /// cutover). An older node's message ends before it (none named).
    #[serde(deserialize_with = "trailing::vec_or_empty")]
    pub learners: Vec<String>,
    /// The replica move of the channel bound on this member (finished or not), if any, so
    /// that an operator who lost a move's id finds it. An older node's message ends before it
    /// (none).
    #[serde(deserialize_with = "trailing::option_or_none")]
    pub bound_move: Option<BoundMove>,
    /// Why this member's copy of the channel is no longer the group's, if it is not (the
    /// group's membership leaves it out, or its voters refuse it as a non-member): its pins
    /// are stale and it refuses reads of the channel. An older node's message ends before it
    /// (none).
    #[serde(deserialize_with = "trailing::option_or_none")]
    pub excluded: Option<String>,
}

/// A replica move as the member that answers a [`ReplicaStatus`] holds it bound.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoundMove {
    pub id: u64,
    /// The source's and the target's `NODE_ADDR`s.
    pub from: String,
    pub to: String,
    /// The node id of the node the member takes the move's phase messages from (its
    /// coordinator).
    pub coordinator: String,
    /// The phase stored on this member (`bound`, `learner_added`, ..., `cleaned_up`,
    /// `abandoned`, `source_forgotten`): on the coordinator the move's progress; a source or
    /// a target stores `bound` until its own part is done.
    pub phase: String,
}

/// One member in a [`ReplicaStatus`]: its matched index and lag are known on the leader only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaMember {
    pub addr: String,
    pub matched: Option<u64>,
    pub lag: Option<u64>,
}

/// [`Method::ChannelMoveBind`]'s request: bind the callee (the source or the target) to move
/// `id` of `channel` from `from` to `to`, driven by `coordinator` (`NODE_ADDR`s), whose phase
/// messages only it may then send; the target also joins the group, whose current members
/// are `members`. With `rebind`, the callee only hands a move already bound there (the same
/// id, source and target) to `coordinator`, and binds nothing new (else a usage error).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveBind {
    pub channel: String,
    pub id: u64,
    pub from: String,
    pub to: String,
    pub coordinator: String,
    pub members: Vec<String>,
    /// An older peer's message ends before it (false).
    #[serde(deserialize_with = "trailing::flag_or_false")]
    pub rebind: bool,
}

/// [`Method::ChannelMove`]'s request: run move `id` of `channel` from `from` to `to` on the
/// callee, the coordinator (the channel's leader), or resume it from its stored phase. With
/// `forget_source`, a source that cannot be reached for its cleanup once it left the group is
/// forgotten (phase `source_forgotten`) instead of failing the move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveRun {
    pub channel: String,
    pub id: u64,
    pub from: String,
    pub to: String,
    /// An older peer's message ends before it (false).
    #[serde(deserialize_with = "trailing::flag_or_false")]
    pub forget_source: bool,
}

/// [`Method::ChannelMove`]'s answer: the phases reached by this call, in order (the last is
/// the move's phase now: `cleaned_up` when it finished).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveDone {
    pub phases: Vec<MoveStep>,
}

/// One phase of a move reached: its name (`learner_added`, `caught_up`, `cut_over`, `left`,
/// `cleaned_up`) and what it found or did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveStep {
    pub phase: String,
    pub detail: String,
}

/// [`Method::TokenRevoke`]'s request: refuse, from now on, tokens of `issuer` (a node id)
/// whose issuer generation is below `below_generation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokeRequest {
    pub issuer: [u8; 32],
    pub below_generation: u32,
}

/// [`Method::Gc`]'s answer: the engine's report as `gc --json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcDone {
    pub report_json: String,
}

/// How a stream shares the node's bandwidth (`serve --bandwidth`): `Background` moves only
/// while no `Foreground` stream waits; `Realtime` moves within the node's realtime reserve
/// without waiting behind either, and beyond it competes as `Foreground`. One byte on the
/// wire: `0`, `1`, `2`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum BandwidthClass {
    #[default]
    Foreground,
    Background,
    Realtime,
}

impl BandwidthClass {
    pub const ALL: [BandwidthClass; 3] = [
        BandwidthClass::Foreground,
        BandwidthClass::Background,
        BandwidthClass::Realtime,
    ];

    pub fn name(self) -> &'static str {
        match self {
            BandwidthClass::Foreground => "foreground",
            BandwidthClass::Background => "background",
            BandwidthClass::Realtime => "realtime",
        }
    }

    pub fn from_name(name: &str) -> Option<BandwidthClass> {
        BandwidthClass::ALL.into_iter().find(|c| c.name() == name)
    }

    fn wire(self) -> u8 {
        match self {
            BandwidthClass::Foreground => 0,
            BandwidthClass::Background => 1,
            BandwidthClass::Realtime => 2,
        }
    }

    fn from_wire(byte: u8) -> Option<BandwidthClass> {
        BandwidthClass::ALL.into_iter().find(|c| c.wire() == byte)
    }
}

impl Serialize for BandwidthClass {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.wire())
    }
}

impl<'de> Deserialize<'de> for BandwidthClass {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let byte = u8::deserialize(d)?;
        BandwidthClass::from_wire(byte)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown bandwidth class {byte}")))
    }
}

/// One stream moving bytes on the node, with its class counters (`status --json`): a put's
/// counters belong to its upload and go on across the calls that resume it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamRow {
    /// `put:STAGING_ID` for a resumable upload, else `KIND-N`.
    pub id: String,
    /// `put`, `read`, `objects` or `pull`.
    pub kind: String,
    pub class: BandwidthClass,
    /// Payload bytes the stream moved in its class.
    pub bytes_in_class: u64,
    /// Time it waited while a higher class was served.
    pub paused_for_higher_class_ms: u64,
}

mod fuzzing;
#[cfg(test)]
mod tests;
mod trailing;

#[cfg(test)]
pub(crate) use fuzzing::tagged_decoder_probes;
pub use fuzzing::{fuzz_decode_messages, fuzz_decode_object_part};
