//! Stripe integrity: no normal API path deletes part of a live erasure-coded stripe, and GC
//! never does even when a stored count says it could; once the blob is unpinned the whole
//! stripe goes together. The RS blob is built by hand with the codec (data + parity chunks).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod gc_common;

use gc_common::*;
use net_mesh_engine::GcError;
use net_mesh_engine::codec::{BlobRef, ChunkRef, ChunkRole, Encoding, chunk_id};

fn stored_chunk(store: &net_mesh_engine::Store, data: &[u8], role: ChunkRole) -> ChunkRef {
    // Store it as a small blob, then drop that pin: the chunk stays (count 0) until GC.
    let out = store.store(data).unwrap();
    store.unpin(&out.blob_id).unwrap();
    ChunkRef {
        hash: chunk_id(data),
        size: data.len() as u32,
        role,
    }
}

#[test]
fn a_live_stripe_is_never_partly_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = open(dir);
    let d0 = random_bytes(1000, 21);
    let d1 = random_bytes(1000, 22);
    let parity: Vec<u8> = d0.iter().zip(&d1).map(|(a, b)| a ^ b).collect();
    let c0 = stored_chunk(&store, &d0, ChunkRole::Data);
    let c1 = stored_chunk(&store, &d1, ChunkRole::Data);
    let p0 = stored_chunk(&store, &parity, ChunkRole::Parity { stripe_index: 0 });
    let rs = BlobRef::Manifest {
        encoding: Encoding::ReedSolomon {
            data_shards: 2,
            total_shards: 3,
        },
        chunks: vec![c0, c1, p0],
        size: 2000,
    };
    rs.validate().unwrap();
    let id = store.pin(&rs, "rs").unwrap();
    let mut want = d0.clone();
    want.extend(&d1);
    assert!(fetch(&store, &rs) == want);

    // The listing names roles and stripes.
    let listed = store.blob_chunks(&rs).unwrap();
    assert_eq!(
        listed.iter().map(|c| c.stripe).collect::<Vec<_>>(),
        vec![Some(0); 3]
    );
    assert_eq!(listed[2].role, ChunkRole::Parity { stripe_index: 0 });

    // Normal path: refused with the stripe named, for data and parity alike.
    for c in [&c0, &p0] {
        let err = store.remove_chunk(&c.hash, false).unwrap_err();
        assert!(
            matches!(err, GcError::StripeIntegrity { stripe: 0, .. }),
            "{err}"
        );
    }
    // A plain referenced chunk is refused as referenced.
    let plain = store.store(&random_bytes(900, 23)).unwrap();
    let BlobRef::Small {
        hash: plain_hash, ..
    } = plain.blob_ref
    else {
        panic!("small")
    };
    assert!(matches!(
        store.remove_chunk(&plain_hash, false).unwrap_err(),
        GcError::Referenced { refcount: 1, .. }
    ));
    drop(store);

    // Even with the parity chunk's stored count wrongly at 0, GC keeps the stripe whole.
    set_refcount(dir, &p0.hash, 0);
    let store = open(dir);
    let report = store.gc(&gc_now()).unwrap();
    assert_eq!(report.stripe_refusals.len(), 1, "{report:?}");
    assert_eq!(report.stripe_refusals[0].chunk, hex(&p0.hash));
    let reader = store.reader().unwrap();
    for c in [&c0, &c1, &p0] {
        assert!(reader.contains(&c.hash).unwrap());
    }
    drop(reader);
    assert!(fetch(&store, &rs) == want);
    drop(store);
    set_refcount(dir, &p0.hash, 1);

    // Unpinned, the stripe goes all at once.
    let store = open(dir);
    store.unpin(&id).unwrap();
    let report = store.gc(&gc_now()).unwrap();
    assert!(report.stripe_refusals.is_empty());
    let reader = store.reader().unwrap();
    for c in [&c0, &c1, &p0] {
        assert!(!reader.contains(&c.hash).unwrap());
    }
}

#[test]
fn the_operator_override_deletes_one_chunk_whatever_references_it() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let out = store.store(&random_bytes(900, 24)).unwrap();
    let BlobRef::Small { hash, .. } = out.blob_ref else {
        panic!("small")
    };
    assert_eq!(store.remove_chunk(&hash, true).unwrap(), 1);
    assert!(!store.reader().unwrap().contains(&hash).unwrap());
    assert!(matches!(
        store.remove_chunk(&hash, true).unwrap_err(),
        GcError::NotFound(_)
    ));
    // The Small blob's one object is gone while its pin stays: damage, not absence.
    let mut sink = Vec::new();
    let e = store.fetch(&out.blob_ref, &mut sink).unwrap_err();
    assert!(
        matches!(&e, net_mesh_engine::BlobError::PinnedButLost { channel, .. } if channel == "default"),
        "{e:?}"
    );
    // Storing the bytes again heals the blob, with its pin's reference restored.
    store.store(&random_bytes(900, 24)).unwrap();
    assert!(fetch(&store, &out.blob_ref) == random_bytes(900, 24));
    store
        .unpin(&net_mesh_engine::index::blob_id(&out.blob_ref))
        .unwrap();
    assert_eq!(entry(&store, &hash).refcount, 0, "its one pin is released");
}

/// A pinned erasure-coded tree that lists one stripe's leaf 2^32 times through two nodes of
/// 65,536 children each (a blob of 8 TB in 3 nodes: repeated content, or a peer's tree made to
/// cost an astronomical walk). GC's stripe guard, `stat`'s chunk count and `repair` walk each
/// distinct node once, so each finishes: the stripe stays protected, the count is exact, the
/// repair reads the one stripe. (Walking every listing, each of them never ended.)
#[test]
fn a_tree_that_repeats_one_stripe_astronomically_is_walked_once_per_distinct_list() {
    use net_mesh_engine::ObjectKind;
    use net_mesh_engine::codec::{ChildRef, InternalNode, LeafNode, internal_id, leaf_id};

    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let d0 = random_bytes(1000, 31);
    let d1 = random_bytes(1000, 32);
    let parity: Vec<u8> = d0.iter().zip(&d1).map(|(a, b)| a ^ b).collect();
    let encoding = Encoding::ReedSolomon {
        data_shards: 2,
        total_shards: 3,
    };
    let mut importer = store.importer().unwrap();
    let mut chunks = Vec::new();
    for (data, role) in [
        (&d0, ChunkRole::Data),
        (&d1, ChunkRole::Data),
        (&parity, ChunkRole::Parity { stripe_index: 0 }),
    ] {
        let hash = chunk_id(data);
        importer.import(ObjectKind::Chunk, &hash, data).unwrap();
        chunks.push(ChunkRef {
            hash,
            size: data.len() as u32,
            role,
        });
    }
    let leaf = LeafNode {
        encoding,
        chunks: chunks.clone(),
    }
    .encode();
    let leaf_hash = leaf_id(&leaf);
    importer
        .import(ObjectKind::LeafNode, &leaf_hash, &leaf)
        .unwrap();
    let fanout = 65_536u64;
    let mut below = (leaf_hash, 2000u64);
    for level in 1..=2u8 {
        let node = InternalNode {
            level,
            children: vec![
                ChildRef {
                    hash: below.0,
                    covered: below.1,
                };
                fanout as usize
            ],
        }
        .encode();
        let hash = internal_id(&node);
        importer
            .import(ObjectKind::InternalNode, &hash, &node)
            .unwrap();
        below = (hash, below.1 * fanout);
    }
    importer.commit().unwrap();
    drop(importer);
    let tree = BlobRef::Tree {
        encoding,
        root_hash: below.0,
        total_size: below.1,
        depth: 3,
    };
    store.pin(&tree, "huge").unwrap();

    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let dir = tmp.path().to_path_buf();
    drop(store);
    std::thread::spawn(move || {
        let store = open(&dir);
        let gc = store.gc(&gc_now()).map(|r| r.objects_freed);
        let refused = store.remove_chunk(&chunk_id(&d0), false);
        let chunks = store.stat(&tree).map(|s| s.chunks);
        let repaired = store.repair(&tree).map(|r| (r.stripes_walked, r.healthy));
        let _ = done_tx.send((gc, refused, chunks, repaired));
    });
    // Far beyond what walking each distinct node takes (milliseconds); walking every listing
    // (2^32 leaves) takes days.
    let (gc, refused, chunks, repaired) = done_rx
        .recv_timeout(std::time::Duration::from_secs(300))
        .expect("the walks over the repeated tree finish");
    assert_eq!(gc.unwrap(), 0, "everything is pinned");
    assert!(
        matches!(refused, Err(GcError::StripeIntegrity { stripe: 0, .. })),
        "{refused:?}"
    );
    assert_eq!(chunks.unwrap(), 3 << 32, "stat counts every listed chunk");
    assert_eq!(
        repaired.unwrap(),
        (1, 1),
        "repair walks the one stripe once, healthy"
    );
}
