//! Reader capabilities: which optional wire variants a peer or reader understands.

use std::collections::BTreeSet;

/// Capability needed to decode [`super::BlobRef::Tree`].
pub const CAP_BLOB_TREE_V3: &str = "dataforts.blob_tree_v3";

/// Every capability this build implements.
const ALL: &[&str] = &[CAP_BLOB_TREE_V3];

/// A set of capability strings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    names: BTreeSet<String>,
}

impl Capabilities {
    /// Every capability this build implements (includes [`CAP_BLOB_TREE_V3`]).
    pub fn all() -> Self {
        ALL.iter().copied().collect()
    }

    /// No capabilities: only the baseline variants decode.
    pub fn none() -> Self {
        Self::default()
    }

    /// Whether `name` is in the set.
    pub fn contains(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    /// Adds `name`; returns whether it was new.
    pub fn insert(&mut self, name: impl Into<String>) -> bool {
        self.names.insert(name.into())
    }

    /// The names, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }
}

impl<S: Into<String>> FromIterator<S> for Capabilities {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        Self {
            names: iter.into_iter().map(Into::into).collect(),
        }
    }
}
