//! The openraft type configuration of a replicated channel, its log operation and its members.

use std::collections::BTreeMap;
use std::io::Cursor;

use net_mesh_rpc::{NodeAddr, NodeId};
use serde::{Deserialize, Serialize};

use crate::error::ReplicationError;

/// Largest encoded [`PinOp`] a channel's log takes (a pin name of at most 1024 bytes and a blob
/// ref; a manifest ref of thousands of chunks is refused). With at most
/// [`MAX_PAYLOAD_ENTRIES`] entries per append, an append request stays far below nRPC's
/// `MAX_PAYLOAD_LEN`.
pub const MAX_OP_LEN: usize = 64 * 1024;

/// Entries per `raft/v1/append` request (openraft's `max_payload_entries`).
pub const MAX_PAYLOAD_ENTRIES: u64 = 64;

/// Bytes of one `raft/v1/snapshot` chunk (openraft's `snapshot_max_chunk_size`).
pub const SNAPSHOT_CHUNK_LEN: u64 = 1024 * 1024;

/// Largest snapshot (encoded pin set) a member builds or receives.
pub const MAX_SNAPSHOT_LEN: u64 = 64 * 1024 * 1024;

/// One entry of a channel's log: a pin change of that channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PinOp {
    /// Pin the blob whose `BlobRef` wire bytes these are, under `name`.
    Pin { blob_ref: Vec<u8>, name: String },
    /// Unpin the blob with this id.
    Unpin { blob_id: [u8; 32] },
}

impl PinOp {
    /// Whether this operation is one a leader of this build proposes: encoded in at most
    /// [`MAX_OP_LEN`] bytes, and for a pin a valid pin name and a blob ref that decodes. The
    /// leader checks before it proposes, and each member checks every entry an append brings
    /// before openraft takes it, so an entry that could not apply never enters a member's
    /// log (applying it would stop the group on that member, at every restart).
    pub fn check(&self) -> Result<(), String> {
        let len = postcard::to_allocvec(self)
            .map_err(|e| e.to_string())?
            .len();
        if len > MAX_OP_LEN {
            return Err(format!(
                "a log entry of {len} bytes is over the {MAX_OP_LEN} a channel's log takes"
            ));
        }
        if let PinOp::Pin { blob_ref, name } = self {
            net_mesh_engine::index::check_pin_name(name).map_err(|e| e.to_string())?;
            net_mesh_engine::BlobRef::decode(blob_ref)
                .map_err(|e| format!("the blob ref does not decode: {e}"))?;
        }
        Ok(())
    }
}

/// What applying an entry did (openraft's response type).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// Whether the pin set changed (a pin already there or an unpin of nothing do not).
    pub changed: bool,
}

/// A member as openraft keeps it (its `Node` type): the full node id and where to dial it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub node_id: [u8; 32],
    pub host_port: String,
}

impl Member {
    pub fn from_addr(addr: &NodeAddr) -> Member {
        Member {
            node_id: *addr.node_id.as_bytes(),
            host_port: addr.host_port.clone(),
        }
    }

    /// Whether this member is node `id`.
    pub fn is(&self, id: &NodeId) -> bool {
        self.node_id == *id.as_bytes()
    }

    /// The node id's hex form.
    pub fn node_id_hex(&self) -> String {
        self.node_id.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Where to dial this member, pinned to its node id.
    pub fn addr(&self) -> Option<NodeAddr> {
        Some(NodeAddr {
            node_id: NodeId::from_hex(&self.node_id_hex()).ok()?,
            host_port: self.host_port.clone(),
        })
    }
}

openraft::declare_raft_types!(
    /// The openraft types of a replicated channel.
    pub TypeConfig:
        D = PinOp,
        R = Applied,
        NodeId = u64,
        Node = Member,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A log id of a channel's log.
pub type LogId = openraft::LogId<u64>;
/// A stored membership of a channel's group.
pub type StoredMembership = openraft::StoredMembership<u64, Member>;
/// An entry of a channel's log.
pub type Entry = openraft::Entry<TypeConfig>;
/// A storage error as openraft wants it.
pub type StorageError = openraft::StorageError<u64>;

/// The u64 openraft knows a member by: the first 8 bytes of its node id, little-endian.
pub fn raft_id(node_id: &NodeId) -> u64 {
    raft_id_of(node_id.as_bytes())
}

/// [`raft_id`] of the node whose full id is `bytes`.
pub(crate) fn raft_id_of(bytes: &[u8; 32]) -> u64 {
    let [b0, b1, b2, b3, b4, b5, b6, b7, ..] = *bytes;
    u64::from_le_bytes([b0, b1, b2, b3, b4, b5, b6, b7])
}

/// The members as openraft takes them, refusing an empty set, a repeated node and two nodes
/// whose [`raft_id`]s collide.
pub fn member_map(members: &[NodeAddr]) -> Result<BTreeMap<u64, Member>, ReplicationError> {
    if members.is_empty() {
        return Err(ReplicationError::Membership("no members".into()));
    }
    let mut map = BTreeMap::new();
    for addr in members {
        let id = raft_id(&addr.node_id);
        if let Some(other) = map.insert(id, Member::from_addr(addr)) {
            return Err(ReplicationError::Membership(if other.is(&addr.node_id) {
                format!("member {} is listed twice", addr.node_id)
            } else {
                format!(
                    "members {} and {} map to the same raft id {id:#018x}",
                    other.node_id_hex(),
                    addr.node_id
                )
            }));
        }
    }
    Ok(map)
}
