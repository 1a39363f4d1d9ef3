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
    /// Its bandwidth class; an older peer's message ends before it (foreground).
    #[serde(deserialize_with = "trailing::class_or_foreground")]
    pub class: BandwidthClass,
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

/// Fuzz harness of the object stream's decoder as a client takes it ([`Tagged`] with
/// [`PIECE_TAG`]): any bytes give what decoding an [`ObjectPart`] gives (the same piece bytes,
/// the same other part, or a refusal for both), never a panic.
pub fn fuzz_decode_object_part(data: &[u8]) {
    // As nRPC decodes a message typed `ObjectPart` (whole, nothing after it).
    let expected = Encoded::from(data.to_vec()).decode::<ObjectPart>().ok();
    let got = Tagged::<ObjectPart>::decode(Encoded::from(data.to_vec()), PIECE_TAG).ok();
    let agree = match (got, expected) {
        (None, None) => true,
        (Some(Tagged::Bytes(got)), Some(ObjectPart::Piece(want))) => *got == *want,
        (Some(Tagged::Other(got)), Some(want)) => got == want,
        _ => false,
    };
    assert!(agree, "Tagged and ObjectPart decode {data:?} differently");
}

/// Fuzz harness of every message of the storage node protocol (FORMAT.md §6.2): the first byte
/// picks the type, the rest is decoded as nRPC decodes it (whole, strict). A decoded value
/// must encode as the input, or as the input followed by trailing fields an older peer's
/// message ends before, and that encoding must decode to the same value; never a panic.
pub fn fuzz_decode_messages(data: &[u8]) {
    fn go<T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(bytes: &[u8]) {
        let Ok(value) = Encoded::from(bytes.to_vec()).decode::<T>() else {
            return;
        };
        let again = postcard::to_allocvec(&value).unwrap_or_default();
        assert!(
            again.starts_with(bytes),
            "{value:?} decoded from {bytes:?} encodes as {again:?}"
        );
        let back = Encoded::from(again).decode::<T>().ok();
        assert_eq!(back.as_ref(), Some(&value), "{bytes:?}");
    }
    let Some((kind, bytes)) = data.split_first() else {
        return;
    };
    match kind % 28 {
        0 => go::<PutPart>(bytes),
        1 => go::<PutDone>(bytes),
        2 => go::<ObjectPart>(bytes),
        3 => go::<ReadRequest>(bytes),
        4 => go::<PinRow>(bytes),
        5 => go::<StagingState>(bytes),
        6 => go::<StagingRow>(bytes),
        7 => go::<Status>(bytes),
        8 => go::<BlobSpec>(bytes),
        9 => go::<Resolved>(bytes),
        10 => go::<Stat>(bytes),
        11 => go::<ChunkRow>(bytes),
        12 => go::<Unpinned>(bytes),
        13 => go::<String>(bytes),
        14 => go::<Vec<[u8; 32]>>(bytes),
        15 => go::<Vec<bool>>(bytes),
        16 => go::<Vec<StagingRow>>(bytes),
        17 => go::<PullRequest>(bytes),
        18 => go::<PullDone>(bytes),
        19 => go::<GcRequest>(bytes),
        20 => go::<GcDone>(bytes),
        21 => go::<RevokeRequest>(bytes),
        22 => go::<ChannelRow>(bytes),
        23 => go::<ReplicateRequest>(bytes),
        24 => go::<ReplicaStatus>(bytes),
        25 => go::<MoveBind>(bytes),
        26 => go::<MoveRun>(bytes),
        _ => go::<MoveDone>(bytes),
    }
}

/// Messages that probe the decoder of a message type one of whose variants (tag `tag`) is a
/// byte string that ends the message (see [`Tagged`]): that variant (`piece(data)` encodes it)
/// of several sizes, each whole, with bytes after it and cut short; then `others`, 64 short
/// random byte strings and a few edge cases.
#[cfg(test)]
pub(crate) fn tagged_decoder_probes(
    tag: u8,
    piece: impl Fn(Vec<u8>) -> Vec<u8>,
    others: Vec<Vec<u8>>,
) -> Vec<Vec<u8>> {
    let mut messages = Vec::new();
    for n in [0usize, 1, 127, 128, 200, 70_000] {
        let bytes = piece((0..n).map(|i| i as u8).collect());
        assert_eq!(bytes.first(), Some(&tag));
        let mut longer = bytes.clone();
        longer.extend_from_slice(&[7, 8]);
        messages.push(longer);
        messages.push(
            bytes
                .get(..bytes.len().saturating_sub(1))
                .unwrap_or_default()
                .to_vec(),
        );
        messages.push(bytes);
    }
    messages.extend(others);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for len in 0..64 {
        let random: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8 % 4
            })
            .collect();
        messages.push(random);
    }
    messages.extend([vec![], vec![tag], vec![0x81, 0x00, 0x00], vec![2, 0]]);
    messages
}

/// Fields added at the end of a version 1 message: a message of an older peer ends before
/// them and reads as their default. (A peer older than a field refuses a message that holds
/// it: bytes after the message are a decode error.)
mod trailing {
    use serde::Deserialize;
    use serde::de::{Deserializer, Error, SeqAccess, Visitor};

    use super::BandwidthClass;

    /// The class byte, or foreground when the message ends first. (Postcard fails to read a
    /// `u8` only at the end of the input.)
    pub(super) fn class_or_foreground<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BandwidthClass, D::Error> {
        match u8::deserialize(d) {
            Err(_) => Ok(BandwidthClass::Foreground),
            Ok(byte) => BandwidthClass::from_wire(byte)
                .ok_or_else(|| D::Error::custom(format!("unknown bandwidth class {byte}"))),
        }
    }

    /// A flag byte (0 or 1), or false when the message ends first.
    pub(super) fn flag_or_false<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        match u8::deserialize(d) {
            Err(_) => Ok(false),
            Ok(0) => Ok(false),
            Ok(1) => Ok(true),
            Ok(byte) => Err(D::Error::custom(format!("flag byte {byte}, not 0 or 1"))),
        }
    }

    /// An `Option<T>` as postcard writes it (tag byte 0 or 1, then the value), or `None` when
    /// the message ends before the tag; a value that does not decode is an error.
    pub(super) fn option_or_none<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Option<T>, D::Error> {
        struct Tagged<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Tagged<T> {
            type Value = Option<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an option tag and its value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                match seq.next_element::<u8>() {
                    Err(_) | Ok(None) | Ok(Some(0)) => Ok(None),
                    Ok(Some(1)) => Ok(Some(
                        seq.next_element::<T>()?
                            .ok_or_else(|| A::Error::custom("the value ends early"))?,
                    )),
                    Ok(Some(tag)) => Err(A::Error::custom(format!("option tag {tag}, not 0 or 1"))),
                }
            }
        }
        d.deserialize_tuple(usize::MAX, Tagged(std::marker::PhantomData))
    }

    /// A `Vec<T>` as postcard writes it (count, items), or empty when the message ends
    /// before the count; an item that does not decode is an error.
    pub(super) fn vec_or_empty<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Vec<T>, D::Error> {
        struct Items<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Items<T> {
            type Value = Vec<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a count and items")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let Ok(Some(count)) = seq.next_element::<u64>() else {
                    return Ok(Vec::new());
                };
                let mut items = Vec::with_capacity(usize::try_from(count.min(64)).unwrap_or(64));
                for _ in 0..count {
                    let item = seq
                        .next_element::<T>()?
                        .ok_or_else(|| A::Error::custom("items end early"))?;
                    items.push(item);
                }
                Ok(items)
            }
        }
        d.deserialize_tuple(usize::MAX, Items(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A piece encodes exactly as a `ByteBuf` does, and the object stream's decoder
    /// ([`Tagged`] with [`PIECE_TAG`]) accepts exactly what decoding an `ObjectPart` accepts,
    /// with the same result ([`tagged_decoder_probes`], and the other parts).
    #[test]
    fn object_parts_decode_as_objectpart_decodes() {
        let wire = |part: &ObjectPart| postcard::to_stdvec(part).unwrap_or_default();
        for n in [0usize, 1, 200, 70_000] {
            let data = vec![7u8; n];
            let piece = wire(&ObjectPart::Piece(PieceBytes::from(data.clone())));
            let buf = postcard::to_stdvec(&ByteBuf::from(data)).unwrap_or_default();
            assert_eq!(piece.get(1..), Some(&buf[..]));
        }
        let others = vec![
            wire(&ObjectPart::Object {
                hash: [3; 32],
                kind: 1,
                len: 9,
            }),
            wire(&ObjectPart::Missing {
                hash: [4; 32],
                kind: 2,
                reason: "gone".into(),
            }),
        ];
        let piece = |data: Vec<u8>| wire(&ObjectPart::Piece(PieceBytes::from(data)));
        let mut pieces = 0;
        for bytes in tagged_decoder_probes(PIECE_TAG, piece, others) {
            pieces += usize::from(matches!(
                postcard::from_bytes::<ObjectPart>(&bytes),
                Ok(ObjectPart::Piece(_))
            ));
            fuzz_decode_object_part(&bytes);
        }
        assert!(pieces > 12, "{pieces} pieces among the messages");
    }

    #[test]
    fn the_messages_harness_takes_garbage_and_whole_or_older_messages() {
        let status = ReplicaStatus {
            channel: "c".into(),
            members: vec![],
            leader: None,
            is_leader: true,
            term: 1,
            committed: Some(2),
            applied: None,
            last_log_index: None,
            pending_apply: 0,
            learners: vec!["l".into()],
            bound_move: Some(BoundMove {
                id: 3,
                from: "a".into(),
                to: "b".into(),
                coordinator: "k".into(),
                phase: "bound".into(),
            }),
            excluded: Some("e".into()),
        };
        let whole = postcard::to_allocvec(&status).unwrap();
        // Every prefix, the older peers' ones among them (they decode and re-encode longer).
        let mut decoded = 0;
        for cut in 0..=whole.len() {
            let mut data = vec![24];
            data.extend_from_slice(&whole[..cut]);
            fuzz_decode_messages(&data);
            decoded += usize::from(decode::<ReplicaStatus>(&whole[..cut]).is_ok());
        }
        assert_eq!(
            decoded, 4,
            "whole, without excluded, without bound_move too, without learners too"
        );
        // Garbage for every type (splitmix64 bytes).
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        for kind in 0..28u8 {
            for len in 0..40usize {
                let mut data = vec![kind];
                data.extend((0..len).map(|_| (next() & 0x0f) as u8));
                fuzz_decode_messages(&data);
            }
        }
    }

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

    /// As the node decodes a message it receives (nRPC: whole, as postcard writes it).
    fn decode<T: serde::de::DeserializeOwned + Serialize>(
        bytes: &[u8],
    ) -> Result<T, net_mesh_rpc::RpcError> {
        net_mesh_rpc::rpc::Encoded::from(bytes.to_vec()).decode()
    }

    #[test]
    fn a_message_ending_before_its_trailing_fields_is_an_older_peers() {
        let req = ReadRequest {
            blob_ref: ByteBuf::from(vec![1, 2]),
            start: 0,
            end: 5,
            class: BandwidthClass::Background,
        };
        let bytes = postcard::to_allocvec(&req).unwrap();
        assert_eq!(bytes.last(), Some(&1));
        let older: ReadRequest = decode(&bytes[..bytes.len() - 1]).unwrap();
        assert_eq!(older.class, BandwidthClass::Foreground);
        // The fields before are still read strictly: `end` (5) written in two bytes.
        assert_eq!(bytes, [2, 1, 2, 0, 5, 1]);
        assert!(decode::<ReadRequest>(&[2, 1, 2, 0, 0x85, 0, 1]).is_err());
        assert!(decode::<ReadRequest>(&[2, 1, 2, 0, 0x85, 0]).is_err());
        let mut unknown = bytes.clone();
        *unknown.last_mut().unwrap() = 9;
        assert!(decode::<ReadRequest>(&unknown).is_err());
        let status = Status {
            node_id: "n".into(),
            version: "v".into(),
            uptime_secs: 1,
            store_bytes: 2,
            blob_count: 3,
            live_uploads: 0,
            open_sessions: 0,
            bytes_in: 0,
            bytes_out: 0,
            capabilities: vec![],
            streams: vec![StreamRow {
                id: "read-1".into(),
                kind: "read".into(),
                class: BandwidthClass::Realtime,
                bytes_in_class: 7,
                paused_for_higher_class_ms: 0,
            }],
        };
        let bytes = postcard::to_allocvec(&status).unwrap();
        assert_eq!(decode::<Status>(&bytes).unwrap(), status);
        let rows = postcard::to_allocvec(&status.streams).unwrap();
        let cut = bytes.len() - rows.len();
        let older: Status = decode(&bytes[..cut]).unwrap();
        assert!(older.streams.is_empty());
        for inside in cut + 1..bytes.len() {
            assert!(decode::<Status>(&bytes[..inside]).is_err());
        }
        // A trailing option: its tag is 0 or 1, nothing else.
        let replica = ReplicaStatus {
            channel: "c".into(),
            members: vec![],
            leader: None,
            is_leader: false,
            term: 1,
            committed: None,
            applied: None,
            last_log_index: None,
            pending_apply: 0,
            learners: vec![],
            bound_move: None,
            excluded: None,
        };
        let mut bytes = postcard::to_allocvec(&replica).unwrap();
        assert_eq!(bytes.last(), Some(&0));
        assert_eq!(decode::<ReplicaStatus>(&bytes).unwrap(), replica);
        *bytes.last_mut().unwrap() = 2;
        assert!(decode::<ReplicaStatus>(&bytes).is_err());
        *bytes.last_mut().unwrap() = 1;
        assert!(decode::<ReplicaStatus>(&bytes).is_err());
    }

    #[test]
    fn roles_order_admin_over_write_over_read() {
        assert!(Role::Admin > Role::Write && Role::Write > Role::Read);
    }
}
