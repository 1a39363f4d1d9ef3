//! `net-mesh` is the network substrate of net-mesh: node identities (ed25519 key files and the
//! node ids derived from them), authenticated encrypted sessions (TCP + a Noise `XX` handshake in
//! which each side proves its ed25519 identity), and nRPC — unary, server-streaming,
//! client-streaming and duplex calls multiplexed over one session with credit windows in both
//! directions, cancellation and deadlines — and the permission-token codec and chain verifier
//! (`token`) a node checks calls with. Pure protocol code (`frame`, the handshake payload
//! codec, the transport's frame reassembly, `token`) is kept apart from the tokio I/O that
//! drives it.
//! What this crate must never do: trust a node id, peer name or any other identity carried in a
//! payload — the session's authenticated peer is the only identity any check may use; panic or
//! allocate without bound on bytes from the network; or touch storage — nothing here reads or
//! writes the blob store (identity key files are the only files it writes).
//!
//! Identities cannot be forged outside the handshake: a [`PeerIdentity`] has no public fields
//! or constructor, and a [`NodeId`]'s bytes are private (a node id can only be derived from a
//! public key or parsed as a name). Neither of these compiles:
//!
//! ```compile_fail,E0423
//! let forged = net_mesh_rpc::NodeId([0u8; 32]);
//! ```
//!
//! ```compile_fail,E0451
//! let id: net_mesh_rpc::NodeId = "00".repeat(32).parse().unwrap();
//! let forged = net_mesh_rpc::PeerIdentity {
//!     node_id: id,
//!     public_key: [0; 32],
//!     capabilities: Default::default(),
//! };
//! ```

pub mod frame;
pub mod fuzzing;
pub mod handshake;
pub mod identity;
pub mod rpc;
pub mod token;
pub mod transport;

pub use handshake::{Capabilities, PeerIdentity};
pub use identity::{Identity, IdentityError, NodeAddr, NodeId};
pub use rpc::{Endpoint, RpcError, Session};
pub use token::{PermissionToken, Scope, TokenChannel, TokenClaims, channel_hash};
