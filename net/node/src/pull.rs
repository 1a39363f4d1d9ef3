//! Node-to-node pull: this node fetches a blob from another, only the objects it lacks,
//! verifying each against its id before it is stored (the engine's importer), children before
//! parents, and pins the blob once every object is in. Runs on a blocking thread.

use net_mesh_engine::codec::Hash;
use net_mesh_engine::write::children_of;
use net_mesh_engine::{BlobRef, ErrorClass, Importer, ObjectKind, Store};
use tokio::runtime::Handle;

use crate::client::NodeClient;
use crate::error::{Classified, NodeError, NodeResult};
use crate::proto::PullDone;
use crate::service::MAX_OBJECTS_PER_CALL;

fn kind_of(byte: u8) -> NodeResult<ObjectKind> {
    ObjectKind::try_from(byte).map_err(|_| {
        NodeError::new(
            ErrorClass::Integrity,
            format!("the source node sent object kind {byte}"),
        )
    })
}

/// The objects a ref names directly: its chunks (Small, Manifest) or its root node (Tree).
fn roots(blob_ref: &BlobRef) -> Vec<(Hash, ObjectKind)> {
    let kind = match blob_ref {
        BlobRef::Tree { depth: 1, .. } => ObjectKind::LeafNode,
        BlobRef::Tree { .. } => ObjectKind::InternalNode,
        _ => ObjectKind::Chunk,
    };
    net_mesh_engine::index::pin_roots(blob_ref)
        .into_iter()
        .map(|h| (h, kind))
        .collect()
}

struct Pull<'a, 's> {
    client: &'a NodeClient,
    runtime: &'a Handle,
    importer: Importer<'s>,
    done: PullDone,
}

/// Fetches `blob_ref` from `client`'s node into `store` and pins it under `name`.
pub(crate) fn pull(
    store: &Store,
    client: &NodeClient,
    runtime: &Handle,
    blob_ref: &BlobRef,
    name: &str,
) -> NodeResult<PullDone> {
    let mut pull = Pull {
        client,
        runtime,
        importer: store.importer().node_err()?,
        done: PullDone {
            objects_fetched: 0,
            bytes_fetched: 0,
        },
    };
    pull.fetch(roots(blob_ref))?;
    pull.importer.pin(blob_ref, name).node_err()?;
    pull.importer.commit().node_err()?;
    Ok(pull.done)
}

impl Pull<'_, '_> {
    /// Brings every object of `wanted` (and everything under it) into the store.
    fn fetch(&mut self, wanted: Vec<(Hash, ObjectKind)>) -> NodeResult<()> {
        let mut missing = Vec::new();
        for (hash, kind) in wanted {
            if !self.importer.has(&hash).node_err()? && !missing.contains(&(hash, kind)) {
                missing.push((hash, kind));
            }
        }
        for batch in missing.chunks(MAX_OBJECTS_PER_CALL) {
            let hashes: Vec<Hash> = batch.iter().map(|(h, _)| *h).collect();
            let stream = self.client.objects_blocking(self.runtime, &hashes)?;
            // Chunks are stored as they arrive; nodes wait until what they list is in.
            let mut nodes = Vec::new();
            for (hash, kind) in batch {
                let Some((got, got_kind, answer)) = stream.next_object().node_err()? else {
                    return Err(NodeError::new(
                        ErrorClass::Integrity,
                        "the source node's stream ended early",
                    ));
                };
                if got != *hash || kind_of(got_kind)? != *kind {
                    return Err(NodeError::new(
                        ErrorClass::Integrity,
                        "the source node sent another object than asked for",
                    ));
                }
                let bytes = answer.map_err(|reason| {
                    NodeError::new(
                        ErrorClass::Integrity,
                        format!(
                            "the source node lacks object {}: {reason}",
                            net_mesh_engine::class::short_hex(hash)
                        ),
                    )
                })?;
                self.done.objects_fetched = self.done.objects_fetched.saturating_add(1);
                self.done.bytes_fetched =
                    self.done.bytes_fetched.saturating_add(bytes.len() as u64);
                if *kind == ObjectKind::Chunk {
                    self.importer.import(*kind, hash, &bytes).node_err()?;
                } else {
                    let children = children_of(*kind, hash, &bytes).node_err()?;
                    nodes.push((*hash, *kind, bytes, children));
                }
            }
            stream.finish().node_err()?;
            for (hash, kind, bytes, children) in nodes {
                self.fetch(children)?;
                self.importer.import(kind, &hash, &bytes).node_err()?;
            }
        }
        Ok(())
    }
}
