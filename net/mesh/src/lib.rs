//! `net-mesh` is the one crate a program embeds: the crash-safe, content-addressed blob store
//! ([`store`]), durable resumable uploads into it ([`staging`]), and the storage node with its
//! typed client ([`node`]) over authenticated nRPC sessions ([`rpc`]). It holds no code of its
//! own: it re-exports the crates that do, so their versions always agree. The room paragraphs
//! of those crates say what each must and must never do.
//!
//! # A blob in a local store
//!
//! A blob is stored as content-defined chunks under a BLAKE3 Merkle tree; its [`BlobRef`] names
//! it, and every read is verified against the ref before a byte is returned.
//!
//! ```
//! use net_mesh::store::{Store, StoreConfig};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let store = Store::open(dir.path(), StoreConfig::default())?;
//! let put = store.store(b"hello, mesh")?;
//! store.pin(&put.blob_ref, "greeting")?;
//!
//! let mut back = Vec::new();
//! store.fetch(&put.blob_ref, &mut back)?;
//! assert_eq!(back, b"hello, mesh");
//! println!("{}", put.blob_ref.to_text()); // nm1…, what `net-mesh blob get` takes
//! # Ok(())
//! # }
//! ```
//!
//! # A resumable upload
//!
//! A staged upload checkpoints durably as it goes; a writer that dies resumes from its last
//! checkpoint and finishes with exactly the ref an uninterrupted upload gives.
//!
//! ```
//! use net_mesh::staging::{self, Resumed, StagingConfig};
//! use net_mesh::store::{OpenOptions, Store, StoreConfig};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let options = staging::with_staging(
//!     OpenOptions::new(StoreConfig::default()),
//!     staging::DEFAULT_ABANDON_GRACE,
//! );
//! let store = Store::open_with(dir.path(), options)?;
//! let data = vec![7u8; 3 << 20];
//!
//! let mut config = StagingConfig::for_store(&store);
//! config.staging_id = Some("upload-1".into());
//! config.pin_name = "big.bin".into();
//! let mut upload = staging::begin_streaming_store(&store, config)?;
//! upload.write(&data[..1 << 20])?;
//! upload.checkpoint()?;
//! drop(upload); // the writer goes away mid-upload
//!
//! let Resumed::Live { mut writer, offset } =
//!     staging::resume_streaming_store(&store, "upload-1", Default::default())?
//! else {
//!     unreachable!("the upload has not finished");
//! };
//! writer.write(&data[offset as usize..])?;
//! let done = (*writer).finish()?;
//! assert_eq!(done.blob_ref, store.store(&data)?.blob_ref);
//! # Ok(())
//! # }
//! ```
//!
//! # A storage node and its client
//!
//! A node serves a store to the peers its allow list names; the client pins the node's id
//! (another node answering is refused before anything is sent) and verifies every read again
//! against the ref, so a lying node gives an integrity error, never wrong bytes.
//!
//! ```
//! use std::sync::Arc;
//!
//! use net_mesh::node::proto::PutStart;
//! use net_mesh::node::{Allow, Node, NodeClient, PutInput};
//! use net_mesh::rpc::{Identity, NodeAddr};
//! use net_mesh::store::{OpenOptions, Store, StoreConfig};
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! // A node's uploads are staging uploads: its store has the staging extension.
//! let options = net_mesh::node::revoke::with_node_tables(net_mesh::staging::with_staging(
//!     OpenOptions::new(StoreConfig::default()),
//!     net_mesh::staging::DEFAULT_ABANDON_GRACE,
//! ));
//! let store = Arc::new(Store::open_with(dir.path(), options)?);
//! let (node_identity, client_identity) = (Identity::generate_ephemeral()?, Identity::generate_ephemeral()?);
//! let node_id = node_identity.node_id();
//! let allow = Allow::parse(node_id, &format!("{} write\n", client_identity.node_id()))?;
//!
//! let node = Node::new(store, node_id)?;
//! let (listener, local) = net_mesh::node::bind("127.0.0.1:0").await?;
//! let stop = tokio_util::sync::CancellationToken::new();
//! let serving = tokio::spawn(net_mesh::node::serve(node, node_identity, allow, listener, stop.clone()));
//!
//! let addr = NodeAddr { node_id, host_port: local.to_string() };
//! let client = Arc::new(NodeClient::connect(client_identity, &addr).await?);
//! let start = PutStart::Begin {
//!     staging_id: None,
//!     name: "hello.txt".into(),
//!     chunking: None,
//!     tree: None,
//!     checkpoint_interval: None,
//!     class: Default::default(),
//!     name_given: true,
//! };
//! let input = PutInput::Stream(Box::new(&b"hello, node"[..]));
//! let done = client.put(start, input, &mut |_| {}).await?;
//! let blob_ref = net_mesh::BlobRef::decode(&done.blob_ref)?;
//!
//! let runtime = tokio::runtime::Handle::current();
//! let reader = Arc::clone(&client);
//! let bytes = tokio::task::spawn_blocking(move || {
//!     let mut sink = Vec::new();
//!     reader.read_blocking(&runtime, &blob_ref, 0..blob_ref.size(), &mut sink).map(|_| sink)
//! })
//! .await??;
//! assert_eq!(bytes, b"hello, node");
//!
//! drop(client);
//! stop.cancel();
//! serving.await?;
//! # Ok(())
//! # }
//! ```

/// The store: chunk segments indexed by redb, verified reads, GC, fsck and repair.
pub use net_mesh_engine as store;
/// The storage node: service, typed client, wire protocol, allow lists, metrics.
pub use net_mesh_node as node;
/// Identities, Noise sessions, nRPC calls and permission tokens (no storage).
pub use net_mesh_rpc as rpc;
/// Durable resumable uploads into a store.
pub use net_mesh_staging as staging;

pub use net_mesh_engine::{BlobRef, Store, StoreConfig};
