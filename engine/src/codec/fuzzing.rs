//! Fuzz harnesses for every decoder, kept in the library so the `fuzz/` targets stay thin and
//! the same checks run in `cargo test`.
//!
//! Each harness decodes arbitrary bytes; when decoding succeeds it re-encodes and asserts the
//! bytes are identical (canonicality). Panicking on a violated invariant is the whole point of a
//! fuzz harness, hence the local `clippy::panic` allowances.

use super::{BlobRef, InternalNode, LeafNode};

/// BlobRef: decode, and if accepted, re-encode == input; text form round-trips too.
#[allow(clippy::panic)] // fuzz harness: a panic is how a found bug is reported
pub fn blob_ref(data: &[u8]) {
    if let Ok(blob) = BlobRef::decode(data) {
        assert!(blob.encode() == data, "BlobRef decode/encode not canonical");
        let text = blob.to_text();
        assert!(
            BlobRef::from_text(&text).as_ref() == Ok(&blob),
            "BlobRef text form does not round-trip"
        );
    }
}

/// Leaf node: decode, and if accepted, re-encode == input.
#[allow(clippy::panic)] // fuzz harness: a panic is how a found bug is reported
pub fn leaf_node(data: &[u8]) {
    if let Ok(leaf) = LeafNode::decode(data) {
        assert!(
            leaf.encode() == data,
            "leaf node decode/encode not canonical"
        );
        assert!(
            leaf.covered().is_ok_and(|c| c > 0),
            "accepted leaf covers 0 bytes"
        );
    }
}

/// Internal node: decode, and if accepted, re-encode == input.
#[allow(clippy::panic)] // fuzz harness: a panic is how a found bug is reported
pub fn internal_node(data: &[u8]) {
    if let Ok(node) = InternalNode::decode(data) {
        assert!(
            node.encode() == data,
            "internal node decode/encode not canonical"
        );
        assert!(
            node.covered().is_ok_and(|c| c > 0),
            "accepted internal node covers 0 bytes"
        );
    }
}
