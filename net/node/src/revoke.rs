//! Token revocation by issuer-generation floor, persisted in the store's index.
//!
//! A floor says "tokens issued by `issuer` with a generation below `floor` are revoked". Floors
//! only rise: revoking below a generation at or under the current floor changes nothing. They
//! live in the node's extension table `ext.node.token_floors_v1` (docs/FORMAT.md §6.8), written
//! in one index transaction, and are loaded when a node starts; the node's verifier reads them
//! on every call, so a revocation takes effect for the next call on every session.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use net_mesh_engine::codec::Hash;
use net_mesh_engine::index::extension::{
    Extension, ExtensionError, ExtensionOp, ExtensionReader, ExtensionTxn,
};
use net_mesh_engine::{ErrorClass, OpenOptions, Store};
use net_mesh_rpc::NodeId;
use redb::ReadableTable;

use crate::error::{Classified, NodeError, NodeResult};

/// The node's extension namespace.
pub const NAMESPACE: &str = "node";
/// The table of revocation floors: issuer node id (32 bytes) → [`FLOOR_VERSION`], u32 LE floor.
pub const FLOORS_TABLE: &str = "token_floors_v1";
/// Version byte of a floor row.
pub const FLOOR_VERSION: u8 = 1;
/// Length of a floor row.
pub const FLOOR_ROW_LEN: usize = 5;

/// The revocation floors a node enforces, shared by its verifier and its revoke method.
pub type Floors = Arc<RwLock<HashMap<NodeId, u32>>>;

/// `options` with the node's extension registered (its tables hold no objects).
pub fn with_node_tables(options: OpenOptions) -> OpenOptions {
    options.extension(Arc::new(NodeTables))
}

/// The node's tables in the store's index.
#[derive(Debug, Clone, Copy, Default)]
pub struct NodeTables;

impl Extension for NodeTables {
    fn namespace(&self) -> &'static str {
        NAMESPACE
    }

    fn holds(&self, _reader: &ExtensionReader<'_>) -> Result<HashMap<Hash, u64>, ExtensionError> {
        Ok(HashMap::new())
    }
}

/// One floor row's bytes.
pub fn encode_floor(floor: u32) -> [u8; FLOOR_ROW_LEN] {
    let [a, b, c, d] = floor.to_le_bytes();
    [FLOOR_VERSION, a, b, c, d]
}

/// A floor row's value; anything but [`FLOOR_VERSION`] and a u32 is refused.
pub fn decode_floor(bytes: &[u8]) -> Result<u32, String> {
    match bytes {
        [FLOOR_VERSION, a, b, c, d] => Ok(u32::from_le_bytes([*a, *b, *c, *d])),
        [FLOOR_VERSION, ..] => Err(format!("{} bytes, expected {FLOOR_ROW_LEN}", bytes.len())),
        [v, ..] => Err(format!("version {v}, expected {FLOOR_VERSION}")),
        [] => Err("empty".into()),
    }
}

fn corrupted(issuer: &[u8; 32], reason: String) -> ExtensionError {
    ExtensionError::Corrupted {
        namespace: NAMESPACE,
        table: FLOORS_TABLE.to_string(),
        reason: format!("{}: {reason}", hex(issuer)),
    }
}

/// Every floor stored in `store` (none when the table was never written).
pub fn load_floors(store: &Store) -> NodeResult<HashMap<NodeId, u32>> {
    store
        .read_extension(NAMESPACE, |reader| {
            let mut floors = HashMap::new();
            let Some(table) = reader.open_table::<&[u8; 32], &[u8]>(FLOORS_TABLE)? else {
                return Ok(floors);
            };
            for row in table.iter()? {
                let (issuer, value) = row?;
                let issuer = *issuer.value();
                let floor = decode_floor(value.value()).map_err(|e| corrupted(&issuer, e))?;
                floors.insert(node_id(&issuer)?, floor);
            }
            Ok(floors)
        })
        .node_err()
}

/// Raises `issuer`'s floor to `below_generation` (never lowers it), in one index transaction,
/// then in `floors`. Returns the floor in force afterwards.
pub fn raise_floor(
    store: &Store,
    floors: &Floors,
    issuer: [u8; 32],
    below_generation: u32,
) -> NodeResult<u32> {
    store
        .commit_ops(vec![Box::new(RaiseFloor {
            issuer,
            floor: below_generation,
        })])
        .node_err()?;
    let issuer = NodeId::from_hex(&hex(&issuer))
        .map_err(|e| NodeError::new(ErrorClass::Usage, format!("issuer: {e}")))?;
    let stored = load_floors(store)?
        .get(&issuer)
        .copied()
        .unwrap_or(below_generation);
    let mut map = floors
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let entry = map.entry(issuer).or_insert(stored);
    *entry = (*entry).max(stored);
    Ok(stored)
}

fn hex(bytes: &[u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The node id with these bytes (through its text form, the one way to name an id).
fn node_id(bytes: &[u8; 32]) -> Result<NodeId, ExtensionError> {
    NodeId::from_hex(&hex(bytes)).map_err(|e| corrupted(bytes, e.to_string()))
}

/// Sets an issuer's floor to the larger of the stored one and `floor`.
#[derive(Debug)]
struct RaiseFloor {
    issuer: [u8; 32],
    floor: u32,
}

impl ExtensionOp for RaiseFloor {
    fn namespace(&self) -> &'static str {
        NAMESPACE
    }

    fn apply(&self, txn: &mut ExtensionTxn<'_>) -> Result<(), ExtensionError> {
        let mut table = txn.open_table::<&[u8; 32], &[u8]>(FLOORS_TABLE)?;
        let old = match table.get(&self.issuer)? {
            Some(row) => decode_floor(row.value()).map_err(|e| corrupted(&self.issuer, e))?,
            None => 0,
        };
        if self.floor > old {
            table.insert(&self.issuer, encode_floor(self.floor).as_slice())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_rows_round_trip_and_bad_rows_are_refused() {
        assert_eq!(encode_floor(0x0102_0304), [1, 4, 3, 2, 1]);
        assert_eq!(decode_floor(&encode_floor(7)), Ok(7));
        assert!(decode_floor(&[]).is_err());
        assert!(decode_floor(&[2, 7, 0, 0, 0]).is_err());
        assert!(decode_floor(&[1, 7, 0, 0]).is_err());
        assert!(decode_floor(&[1, 7, 0, 0, 0, 0]).is_err());
    }
}
