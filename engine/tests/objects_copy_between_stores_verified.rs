//! The object API for node-to-node sync: a blob copied object by object from one store to
//! another (children first, only what the target lacks) reads back identical; a second copy
//! moves nothing; a tampered object or a node sent before its children is refused and nothing
//! is stored; a node listing an object that does not fit its place in the tree (wrong kind or
//! level) is refused; GC with a zero grace during an import keeps what the import holds. An
//! object checked once ([`Verified`], what a pull imports) is held to the same rules.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::time::Duration;

use common::*;
use net_mesh_engine::codec::{
    ChildRef, ChunkRef, ChunkRole, Encoding, Hash, InternalNode, LeafNode, chunk_id, internal_id,
    leaf_id,
};
use net_mesh_engine::index::{blob_id, pin_roots};
use net_mesh_engine::write::{Shape, Verified, children_of};
use net_mesh_engine::{
    BlobRef, BlobWriter, Classify, ErrorClass, GcOptions, ImportError, Importer, ObjectKind, Store,
};

fn roots(blob_ref: &BlobRef) -> Vec<(Hash, ObjectKind)> {
    let kind = match blob_ref {
        BlobRef::Tree { .. } => ObjectKind::InternalNode,
        _ => ObjectKind::Chunk,
    };
    let mut out: Vec<(Hash, ObjectKind)> =
        pin_roots(blob_ref).into_iter().map(|h| (h, kind)).collect();
    if let BlobRef::Tree { depth: 1, .. } = blob_ref {
        out[0].1 = ObjectKind::LeafNode;
    }
    out
}

/// Copies object `hash` (and what it lists) from `from` into `to`, children first, skipping
/// what `to` has. Returns the objects sent.
fn copy(from: &Store, to: &mut Importer<'_>, hash: &Hash) -> u64 {
    if to.has(hash).unwrap() {
        return 0;
    }
    let object = from.read_object(hash).unwrap();
    let mut sent = 0;
    for (child, _) in children_of(object.kind, hash, &object.bytes).unwrap() {
        sent += copy(from, to, &child);
    }
    assert!(to.import(object.kind, hash, &object.bytes).unwrap());
    sent + 1
}

fn objects(store: &Store) -> usize {
    let mut n = 0;
    store.index().for_each_object(|_, _| n += 1).unwrap();
    n
}

#[test]
fn a_blob_copied_object_by_object_reads_back_and_a_second_copy_moves_nothing() {
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = open(a_dir.path(), SMALL_CDC, TINY_TREE);
    let b = open(b_dir.path(), SMALL_CDC, TINY_TREE);
    let data = random_bytes(150_000, 1);
    let put = a.store(&data).unwrap();
    assert!(matches!(put.blob_ref, BlobRef::Tree { .. }));
    // B already has some of the chunks (a blob sharing a prefix).
    b.store(&data[..60_000]).unwrap();
    let before = objects(&b);

    let mut import = b.importer().unwrap();
    let mut sent = 0;
    for (root, _) in roots(&put.blob_ref) {
        sent += copy(&a, &mut import, &root);
    }
    import.pin(&put.blob_ref, "copied").unwrap();
    import.commit().unwrap();
    let (imported, _) = import.imported();
    drop(import);
    assert_eq!(imported, sent);
    assert_eq!(objects(&b), before + sent as usize);
    assert!(sent < objects(&a) as u64, "shared chunks were not sent");
    assert_eq!(fetch_all(&b, &put.blob_ref), data);
    assert!(
        b.reader()
            .unwrap()
            .pin(&blob_id(&put.blob_ref))
            .unwrap()
            .is_some()
    );

    let mut again = b.importer().unwrap();
    let mut sent = 0;
    for (root, _) in roots(&put.blob_ref) {
        sent += copy(&a, &mut again, &root);
    }
    assert_eq!(sent, 0);
}

#[test]
fn a_tampered_object_or_a_node_before_its_children_is_refused_and_nothing_is_stored() {
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = open(a_dir.path(), SMALL_CDC, TINY_TREE);
    let b = open(b_dir.path(), SMALL_CDC, TINY_TREE);
    let put = a.store(&random_bytes(80_000, 2)).unwrap();
    let (root, root_kind) = roots(&put.blob_ref)[0];
    let object = a.read_object(&root).unwrap();
    assert_eq!(object.kind, root_kind);
    let mut import = b.importer().unwrap();

    // A node whose children B does not have.
    let err = import
        .import(object.kind, &root, &object.bytes)
        .unwrap_err();
    assert!(
        matches!(err, ImportError::MissingChild { node, .. } if node == root),
        "{err}"
    );
    assert_eq!(err.class(), ErrorClass::Refused);

    // A chunk with one byte flipped.
    let (chunk, _) = children_of(object.kind, &root, &object.bytes)
        .unwrap()
        .into_iter()
        .find(|(_, k)| *k == ObjectKind::Chunk)
        .unwrap_or_else(|| {
            // Deeper tree: descend to the first leaf's first chunk.
            let mut hash = root;
            loop {
                let o = a.read_object(&hash).unwrap();
                let first = children_of(o.kind, &hash, &o.bytes).unwrap()[0];
                if first.1 == ObjectKind::Chunk {
                    return first;
                }
                hash = first.0;
            }
        });
    let mut bytes = a.read_object(&chunk).unwrap().bytes.to_vec();
    bytes[0] ^= 1;
    let err = import
        .import(ObjectKind::Chunk, &chunk, &bytes)
        .unwrap_err();
    assert!(matches!(err, ImportError::IdMismatch { .. }), "{err}");
    assert_eq!(err.class(), ErrorClass::Integrity);
    import.commit().unwrap();
    drop(import);
    assert_eq!(objects(&b), 0);
}

/// [`copy`] through [`Verified`]: each object checked once, its children taken from the check.
fn copy_verified(from: &Store, to: &mut Importer<'_>, hash: &Hash) -> u64 {
    if to.has(hash).unwrap() {
        return 0;
    }
    let object = from.read_object(hash).unwrap();
    let verified = Verified::check(object.kind, hash, object.bytes.clone()).unwrap();
    assert_eq!(verified.kind(), object.kind);
    assert_eq!(verified.hash(), hash);
    assert_eq!(verified.bytes(), object.bytes.as_ref());
    assert_eq!(
        verified.children(),
        children_of(object.kind, hash, &object.bytes)
            .unwrap()
            .as_slice()
    );
    let expected_level = (object.kind == ObjectKind::InternalNode)
        .then(|| InternalNode::decode(&object.bytes).unwrap().level);
    assert_eq!(verified.level(), expected_level);
    let mut sent = 0;
    for (child, _) in verified.children() {
        sent += copy_verified(from, to, child);
    }
    assert!(to.import_verified(verified).unwrap());
    sent + 1
}

#[test]
fn a_verified_object_is_held_to_the_import_rules_and_a_tree_copied_so_reads_back() {
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = open(a_dir.path(), SMALL_CDC, TINY_TREE);
    let b = open(b_dir.path(), SMALL_CDC, TINY_TREE);
    let data = random_bytes(150_000, 3);
    let put = a.store(&data).unwrap();
    assert!(matches!(put.blob_ref, BlobRef::Tree { depth, .. } if depth > 1));
    let (root, _) = roots(&put.blob_ref)[0];
    let node = a.read_object(&root).unwrap();

    // Tampered bytes never become a Verified object.
    let mut tampered = node.bytes.to_vec();
    tampered[0] ^= 1;
    let err = Verified::check(node.kind, &root, tampered.into()).unwrap_err();
    assert!(matches!(err, ImportError::IdMismatch { .. }), "{err}");

    // A checked node still waits for its children.
    let mut import = b.importer().unwrap();
    let verified = Verified::check(node.kind, &root, node.bytes.clone()).unwrap();
    let err = import.import_verified(verified).unwrap_err();
    assert!(
        matches!(err, ImportError::MissingChild { node, .. } if node == root),
        "{err}"
    );
    assert!(!import.has(&root).unwrap(), "a refused node was stored");

    // Copied children first, the tree reads back.
    let sent = copy_verified(&a, &mut import, &root);
    import.pin(&put.blob_ref, "copied").unwrap();
    import.commit().unwrap();
    assert_eq!(import.imported().0, sent);
    drop(import);
    assert_eq!(sent as usize, objects(&a));
    assert_eq!(fetch_all(&b, &put.blob_ref), data);
}

fn leaf(chunks: &[Hash]) -> (Hash, Vec<u8>) {
    let bytes = LeafNode {
        encoding: Encoding::Plain,
        chunks: chunks
            .iter()
            .map(|hash| ChunkRef {
                hash: *hash,
                size: 100,
                role: ChunkRole::Data,
            })
            .collect(),
    }
    .encode();
    (leaf_id(&bytes), bytes)
}

fn internal(level: u8, children: &[Hash]) -> (Hash, Vec<u8>) {
    let bytes = InternalNode {
        level,
        children: children
            .iter()
            .map(|hash| ChildRef {
                hash: *hash,
                covered: 100,
            })
            .collect(),
    }
    .encode();
    (internal_id(&bytes), bytes)
}

/// Imports a node that must be refused for listing `child` as `expected` when it is `found`.
fn assert_misplaced(
    import: &mut Importer<'_>,
    kind: ObjectKind,
    (hash, bytes): (Hash, Vec<u8>),
    child: Hash,
    expected: Shape,
    found: Shape,
) {
    let err = import.import(kind, &hash, &bytes).unwrap_err();
    assert!(
        matches!(
            &err,
            ImportError::MisplacedChild { node, child: c, expected: e, found: f }
                if *node == hash && *c == child && *e == expected && *f == found
        ),
        "{err}"
    );
    assert_eq!(err.class(), ErrorClass::Integrity);
    assert!(!import.has(&hash).unwrap(), "a refused node was stored");
}

#[test]
fn a_node_listing_an_object_of_the_wrong_kind_or_level_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), SMALL_CDC, TINY_TREE);
    let chunk_bytes = random_bytes(100, 9);
    let chunk = chunk_id(&chunk_bytes);

    // A well-shaped tree (chunk <- leaf <- level 1 <- level 2), committed by a first import
    // (unpinned; GC's grace keeps it): a later import learns the stored nodes' levels from
    // the store.
    let good_leaf = leaf(&[chunk]);
    let good_l1 = internal(1, &[good_leaf.0]);
    let good_l2 = internal(2, &[good_l1.0]);
    let mut first = store.importer().unwrap();
    assert!(
        first
            .import(ObjectKind::Chunk, &chunk, &chunk_bytes)
            .unwrap()
    );
    assert!(
        first
            .import(ObjectKind::LeafNode, &good_leaf.0, &good_leaf.1)
            .unwrap()
    );
    assert!(
        first
            .import(ObjectKind::InternalNode, &good_l1.0, &good_l1.1)
            .unwrap()
    );
    assert!(
        first
            .import(ObjectKind::InternalNode, &good_l2.0, &good_l2.1)
            .unwrap()
    );
    first.commit().unwrap();
    drop(first);
    let stored = objects(&store);

    let mut import = store.importer().unwrap();
    // A leaf listing a leaf where a chunk belongs.
    assert_misplaced(
        &mut import,
        ObjectKind::LeafNode,
        leaf(&[chunk, good_leaf.0]),
        good_leaf.0,
        Shape::Chunk,
        Shape::Leaf,
    );
    // Level 1 listing a chunk, or a level 1 node, where a leaf belongs.
    assert_misplaced(
        &mut import,
        ObjectKind::InternalNode,
        internal(1, &[chunk]),
        chunk,
        Shape::Leaf,
        Shape::Chunk,
    );
    assert_misplaced(
        &mut import,
        ObjectKind::InternalNode,
        internal(1, &[good_l1.0]),
        good_l1.0,
        Shape::Leaf,
        Shape::Internal(1),
    );
    // Level 2 listing a leaf, or a level 2 node (stored before this import), where level 1
    // belongs.
    assert_misplaced(
        &mut import,
        ObjectKind::InternalNode,
        internal(2, &[good_leaf.0]),
        good_leaf.0,
        Shape::Internal(1),
        Shape::Leaf,
    );
    assert_misplaced(
        &mut import,
        ObjectKind::InternalNode,
        internal(2, &[good_l2.0]),
        good_l2.0,
        Shape::Internal(1),
        Shape::Internal(2),
    );
    // A level 3 node listing one of level 1 (the store's) and one of level 2 imported just
    // now, not committed yet: the first does not fit.
    let new_l2 = internal(2, &[good_l1.0, good_l1.0]);
    assert!(
        import
            .import(ObjectKind::InternalNode, &new_l2.0, &new_l2.1)
            .unwrap()
    );
    assert_misplaced(
        &mut import,
        ObjectKind::InternalNode,
        internal(3, &[good_l1.0, new_l2.0]),
        good_l1.0,
        Shape::Internal(2),
        Shape::Internal(1),
    );
    // ... and one listing a level 4 node imported now where level 3 belongs.
    let new_l3 = internal(3, &[new_l2.0, good_l2.0]);
    assert!(
        import
            .import(ObjectKind::InternalNode, &new_l3.0, &new_l3.1)
            .unwrap()
    );
    let new_l4 = internal(4, &[new_l3.0]);
    assert!(
        import
            .import(ObjectKind::InternalNode, &new_l4.0, &new_l4.1)
            .unwrap()
    );
    assert_misplaced(
        &mut import,
        ObjectKind::InternalNode,
        internal(4, &[new_l4.0]),
        new_l4.0,
        Shape::Internal(3),
        Shape::Internal(4),
    );
    import.commit().unwrap();
    drop(import);
    // Only the three well-shaped nodes were stored (unreferenced: GC's to remove).
    assert_eq!(objects(&store), stored + 3);
}

#[test]
fn gc_with_zero_grace_during_an_import_keeps_what_the_import_holds() {
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = open(a_dir.path(), SMALL_CDC, TINY_TREE);
    let b = open(b_dir.path(), SMALL_CDC, TINY_TREE);
    let data = random_bytes(120_000, 3);
    let put = a.store(&data).unwrap();
    let zero = GcOptions {
        grace: Duration::ZERO,
        ..GcOptions::default()
    };
    let mut import = b.importer().unwrap();
    for (root, _) in roots(&put.blob_ref) {
        copy(&a, &mut import, &root);
        // Everything imported so far is committed with count 0 (no pin yet) and held.
        import.commit().unwrap();
        let report = b.gc(&zero).unwrap();
        assert_eq!(report.objects_freed, 0, "{report:?}");
    }
    import.pin(&put.blob_ref, "kept").unwrap();
    import.commit().unwrap();
    drop(import);
    assert_eq!(fetch_all(&b, &put.blob_ref), data);
}

#[test]
fn upload_and_import_handles_can_move_to_another_thread() {
    fn send<T: Send>() {}
    send::<BlobWriter<'static>>();
    send::<Importer<'static>>();
    send::<Store>();
}
