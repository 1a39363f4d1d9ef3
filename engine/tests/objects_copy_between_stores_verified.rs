//! The object API for node-to-node sync: a blob copied object by object from one store to
//! another (children first, only what the target lacks) reads back identical; a second copy
//! moves nothing; a tampered object or a node sent before its children is refused and nothing
//! is stored; GC with a zero grace during an import keeps what the import holds.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::time::Duration;

use common::*;
use net_mesh_engine::codec::Hash;
use net_mesh_engine::index::{blob_id, pin_roots};
use net_mesh_engine::write::children_of;
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
    let mut bytes = a.read_object(&chunk).unwrap().bytes;
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
