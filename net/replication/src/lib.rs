//! `net-mesh-replication` replicates channels across storage nodes: each replicated channel
//! is one Raft group (openraft 0.9) whose log holds that channel's pin and unpin operations.
//! The group's vote, log and applied state live in the store's index through the engine's
//! extension seam (namespace `raft`, docs/REPLICATION.md), and applying an entry commits its
//! pin change together with `last_applied` in one engine transaction. Raft messages travel as
//! nRPC unary calls (`raft/v1/*`) on authenticated sessions, dialed pinned to the member's
//! node id, and only members of a channel's group may send them.
//!
//! It must never open `index.redb` itself (only through the engine's seam), never keep
//! `last_applied` only in memory, never pin a blob whose objects the store lacks, and never
//! decide who may call on anything but the session's authenticated peer.
//!
//! Modules: `types` (openraft type config, the log operation, member ids), `tables` (the
//! extension and its rows), `log_store` and `state_machine` (openraft's storage roles),
//! `network` (the nRPC methods, both sides), `channel` (the API a node uses),
//! `elect` (ends split votes that repeat in step), `unheard` (a learner that hears no leader asks
//! the voters whether they still take it), `node_replicas` (a storage node's replicated channels, behind the node's `Replicas` seam), `membership`
//! (adding learners, changing the voters), `fetch` (bringing a pin's objects from other
//! members), `prefetch` (a pin's objects durable on a quorum before it is proposed), `sessions` (the
//! sessions all channels share: per member, one for raft messages and one for the data path), `moves`
//! (guarded, persisted replica moves), `error`, `fuzzing` (the harness of every decoder of
//! network and disk bytes).

pub mod channel;
mod elect;
pub mod error;
pub mod fetch;
#[doc(hidden)]
pub mod fuzzing;
pub mod log_store;
pub mod membership;
pub mod moves;
pub mod network;
pub mod node_replicas;
pub mod prefetch;
mod sessions;
pub mod state_machine;
pub mod tables;
pub mod types;
mod unheard;

pub use channel::{
    ChannelStatus, MemberStatus, ReplicatedChannel, ReplicationConfig, stored_applied,
};
pub use error::{ApplyError, MembershipError, ProposeError, ReplicationError};
pub use fetch::{FetchCounts, Fetcher, MEMBER_STREAMS};
pub use moves::{
    CleanupReply, CleanupRequest, HandoffState, METHOD_MOVE_CLEANUP, METHOD_MOVE_STATE, MoveConfig,
    MoveError, MoveEvent, MoveRecord, MoveSpec, Moves, StateRequest,
};
pub use network::{
    METHOD_APPEND, METHOD_PINNED, METHOD_PREFETCH, METHOD_SNAPSHOT, METHOD_VOTE, Replication,
};
pub use node_replicas::{METHOD_PROPOSE, NodeReplicas};
pub use prefetch::{MAX_PREFETCHES_PER_CHANNEL, PREFETCH_HOLD};
pub use tables::{MovePhase, extension};
pub use types::{Member, PinOp, TypeConfig, raft_id};
