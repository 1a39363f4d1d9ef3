//! Errors of replicated channels, each with the engine's error class.

use net_mesh_engine::{Classify, ErrorClass, StoreError};
use net_mesh_rpc::NodeAddr;

/// Why a channel could not be created, opened or shut down.
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    /// The member list is not usable (empty, a repeated node, two ids that collide, this node
    /// missing from it).
    #[error("membership: {0}")]
    Membership(String),
    /// A [`crate::ReplicationConfig`] openraft refuses (e.g. the election timeout not above
    /// the heartbeat).
    #[error("replication config: {0}")]
    Config(String),
    /// The channel is already open on this node.
    #[error("channel {0} is already replicated on this node")]
    AlreadyOpen(String),
    /// `open` of a channel this store holds no replication state for.
    #[error("channel {0} has no replication state in this store")]
    NotReplicated(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// openraft stopped or refused (its message).
    #[error("raft: {0}")]
    Raft(String),
}

impl Classify for ReplicationError {
    fn class(&self) -> ErrorClass {
        match self {
            ReplicationError::Membership(_) | ReplicationError::Config(_) => ErrorClass::Usage,
            ReplicationError::AlreadyOpen(_) => ErrorClass::Refused,
            ReplicationError::NotReplicated(_) => ErrorClass::NotFound,
            ReplicationError::Store(e) => e.class(),
            ReplicationError::Raft(_) => ErrorClass::Io,
        }
    }
}

/// Why a proposal was not committed.
#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    /// This node is not the leader; `leader` is where to forward (unknown during an election).
    #[error("not the leader of channel {channel}; leader: {}", leader.as_ref().map_or("unknown".to_string(), |l| l.to_string()))]
    NotLeader {
        channel: String,
        leader: Option<NodeAddr>,
    },
    /// The blob's objects are not all in this store: a pin is proposed only for data that is
    /// here.
    #[error("channel {channel}: {} object(s) of the blob are missing here, first {}", missing.len(), missing.first().map(net_mesh_engine::class::short_hex).unwrap_or_default())]
    MissingObjects {
        channel: String,
        missing: Vec<[u8; 32]>,
    },
    /// Too few voters could prefetch the blob's objects (unreachable, refused, busy, or
    /// no valid bytes from the leader) to make them durable on a majority before proposing:
    /// nothing was proposed. `holders` voters (this node included) hold them; `needed` is the
    /// majority of the largest voter configuration.
    #[error(
        "channel {channel}: the blob is durable on {holders} voter(s), {needed} needed; nothing proposed"
    )]
    NotDurable {
        channel: String,
        holders: usize,
        needed: usize,
    },
    /// The pin name or the encoded operation is too long.
    #[error("{0}")]
    Usage(String),
    /// A membership change is running; retry.
    #[error("channel {channel}: busy: {reason}")]
    Busy { channel: String, reason: String },
    /// openraft stopped (shutdown or a fatal storage error).
    #[error("channel {channel}: raft stopped: {reason}")]
    Stopped { channel: String, reason: String },
}

impl Classify for ProposeError {
    fn class(&self) -> ErrorClass {
        match self {
            ProposeError::NotLeader { .. } => ErrorClass::Refused,
            ProposeError::MissingObjects { .. } => ErrorClass::NotFound,
            ProposeError::Usage(_) => ErrorClass::Usage,
            ProposeError::Busy { .. } | ProposeError::NotDurable { .. } => ErrorClass::Busy,
            ProposeError::Stopped { .. } => ErrorClass::Io,
        }
    }
}

/// Why applying a committed entry (or installing a snapshot) failed. Any of these stops the
/// channel's group on this node (openraft treats a state machine error as fatal): it never
/// applies an entry partly, never skips one, and never reports one applied that is not.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A pin (or a snapshot's pins) whose objects this store lacks, where nothing fetches
    /// them: a state machine made without a fetcher.
    #[error("channel {channel}: entry {index}: {} object(s) missing, first {}", missing.len(), missing.first().map(net_mesh_engine::class::short_hex).unwrap_or_default())]
    MissingObjects {
        channel: String,
        index: u64,
        missing: Vec<[u8; 32]>,
    },
    /// The channel shut down while the entry waited for its objects (it is applied when the
    /// channel is opened again).
    #[error("channel {channel}: entry {index}: stopped while fetching its objects")]
    Stopped { channel: String, index: u64 },
    /// An entry or snapshot that does not decode.
    #[error("channel {channel}: {what}: {reason}")]
    Corrupted {
        channel: String,
        what: String,
        reason: String,
    },
    #[error("channel {channel}: {source}")]
    Store {
        channel: String,
        source: Box<StoreError>,
    },
}

/// Why a membership change (adding a learner, changing the voters) did not complete.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    /// This node is not the leader; `leader` is where to send it (unknown during an election).
    #[error("not the leader of channel {channel}; leader: {}", leader.as_ref().map_or("unknown".to_string(), |l| l.to_string()))]
    NotLeader {
        channel: String,
        leader: Option<NodeAddr>,
    },
    /// The node list is not usable: empty, a node listed twice, a raft id that collides with
    /// another node's, or a voter that is not yet in the group (add it as a learner first).
    #[error("channel {channel}: {reason}")]
    Usage { channel: String, reason: String },
    /// Another membership change is in progress; retry when it is done.
    #[error("channel {channel}: busy: {reason}")]
    Busy { channel: String, reason: String },
    /// The learner was added but did not catch up to `target` within the configured wait
    /// (`ReplicationConfig::learner_catch_up`); it stays a learner and keeps catching up.
    #[error("channel {channel}: learner {learner} matched {} of {target} in {waited:?}", matched.map_or("nothing".to_string(), |m| m.to_string()))]
    CatchUpTimeout {
        channel: String,
        learner: NodeAddr,
        matched: Option<u64>,
        target: u64,
        waited: std::time::Duration,
    },
    /// openraft stopped (shutdown or a fatal storage error).
    #[error("channel {channel}: raft stopped: {reason}")]
    Stopped { channel: String, reason: String },
}

impl Classify for MembershipError {
    fn class(&self) -> ErrorClass {
        match self {
            MembershipError::NotLeader { .. } => ErrorClass::Refused,
            MembershipError::Usage { .. } => ErrorClass::Usage,
            MembershipError::Busy { .. } | MembershipError::CatchUpTimeout { .. } => {
                ErrorClass::Busy
            }
            MembershipError::Stopped { .. } => ErrorClass::Io,
        }
    }
}
