//! What kind of failure an error is — the one classification every public error of the engine
//! (and of the crates built on it) maps to — and the hex forms of hashes used in messages. A
//! leaf module: everything may use it; it uses only the `Hash` type.

use crate::codec::Hash;

/// Short hex form of a hash for messages.
pub fn short_hex(hash: &Hash) -> String {
    hash.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Full lowercase hex of a hash.
pub fn hex(hash: &Hash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// What kind of failure an error is: the one classification every public error of the engine
/// (and of the crates built on it) maps to. The CLI's exit codes and the node's RPC error kinds
/// derive from it in one `match`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Stored or received data is damaged or missing (a hash or chain mismatch, a corrupt
    /// record, a missing object).
    Integrity,
    /// The request was refused without changing anything: a conflict, a missing permission,
    /// a rule of the store (pinning what does not exist, an id already in use).
    Refused,
    /// What the request names does not exist.
    NotFound,
    /// The store cannot take the request now (locked by another process); try later.
    Busy,
    /// The operating system failed a read, write or sync (the handle may be poisoned).
    Io,
    /// The request itself is invalid (bad arguments, limits, configuration).
    Usage,
}

/// Every public error says which [`ErrorClass`] it is.
pub trait Classify {
    fn class(&self) -> ErrorClass;
}
