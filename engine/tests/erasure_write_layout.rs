//! What an erasure-coded upload stores: data refs then parity refs per stripe, parity chunks
//! stored under BLAKE3 of their bytes, a 1-chunk blob as a Manifest, the empty blob as Small,
//! k = 1 refused; and the golden vector of docs/FORMAT.md §2.12.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::*;
use net_mesh_engine::codec::{Hash, chunk_id};
use net_mesh_engine::erasure::{RsParams, stripes};
use net_mesh_engine::{BlobRef, ChunkRole, ChunkingStrategy, Encoding, StoreError, TreePolicy};
use net_mesh_segments::RecordKind;

fn read_chunk(store: &net_mesh_engine::Store, hash: &Hash) -> Vec<u8> {
    let e = store.reader().unwrap().object(hash).unwrap().unwrap();
    store
        .segments()
        .read(e.loc, RecordKind::Chunk, hash)
        .unwrap()
        .to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn stripes_store_data_then_parity_with_true_sizes() {
    let tmp = tempfile::tempdir().unwrap();
    // A cross-over past the ~50 refs of this blob keeps the whole list inline in the ref.
    let inline = TreePolicy {
        manifest_max_refs: 8192,
        ..TreePolicy::default()
    };
    let store = open(tmp.path(), SMALL_CDC, inline);
    let data = random_bytes(120_000, 4);
    let out = store.store_stream_with_rs(&data[..], 5, 8, "l").unwrap();
    let BlobRef::Manifest {
        encoding,
        chunks,
        size,
    } = &out.blob_ref
    else {
        panic!()
    };
    assert_eq!(
        *encoding,
        Encoding::ReedSolomon {
            data_shards: 5,
            total_shards: 8
        }
    );
    assert_eq!(*size, data.len() as u64);
    let spans = stripes(RsParams::new(5, 8).unwrap(), chunks).unwrap();
    let mut offset = 0usize;
    for s in &spans {
        let mut padded = Vec::new();
        for c in &chunks[s.data_range()] {
            assert_eq!(c.role, ChunkRole::Data);
            let bytes = read_chunk(&store, &c.hash);
            assert_eq!(bytes.len(), c.size as usize, "true size recorded");
            assert!(bytes[..] == data[offset..offset + bytes.len()]);
            offset += bytes.len();
            padded.push(bytes);
        }
        let max = padded.iter().map(Vec::len).max().unwrap();
        assert_eq!(s.shard_len as usize, max);
        for c in &chunks[s.all_range()][s.data_count..] {
            assert_eq!(
                c.role,
                ChunkRole::Parity {
                    stripe_index: s.stripe_index
                }
            );
            let bytes = read_chunk(&store, &c.hash);
            assert_eq!(chunk_id(&bytes), c.hash, "parity id is BLAKE3 of its bytes");
            assert_eq!(bytes.len(), max, "parity is one padded shard long");
        }
    }
    assert_eq!(offset, data.len());
    assert_eq!(out.chunks, chunks.len() as u64);
    assert!(fetch_all(&store, &out.blob_ref) == data);
}

#[test]
fn one_chunk_blob_is_a_manifest_and_the_empty_blob_is_small() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path(), SMALL_CDC, TreePolicy::default());
    let out = store.store_stream_with_rs(&b"tiny"[..], 2, 3, "").unwrap();
    let BlobRef::Manifest {
        chunks, size: 4, ..
    } = &out.blob_ref
    else {
        panic!("{:?}", out.blob_ref)
    };
    assert_eq!(chunks.len(), 2);
    assert_eq!(chunks[1].role, ChunkRole::Parity { stripe_index: 0 });
    assert_ne!(
        chunks[1].hash, chunks[0].hash,
        "parity is not a copy of the data"
    );
    assert_eq!(fetch_all(&store, &out.blob_ref), b"tiny");
    // Lose the only data chunk: the parity alone rebuilds it.
    toggle_payload_byte(&store, &chunks[0].hash, 2);
    assert_eq!(fetch_all(&store, &out.blob_ref), b"tiny");

    let empty = store.store_stream_with_rs(&b""[..], 2, 3, "").unwrap();
    assert_eq!(
        empty.blob_ref,
        BlobRef::Small {
            hash: chunk_id(b""),
            size: 0
        }
    );
    assert_eq!(fetch_all(&store, &empty.blob_ref), b"");
}

#[test]
fn invalid_or_useless_parameters_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path(), SMALL_CDC, TreePolicy::default());
    for (k, n) in [(0u8, 2u8), (3, 3), (4, 2), (1, 3)] {
        assert!(
            matches!(
                store.store_stream_with_rs(&b"x"[..], k, n, ""),
                Err(StoreError::Erasure(_))
            ),
            "{k}+{n}"
        );
    }
}

#[test]
fn golden_vector_matches_format_md() {
    // docs/FORMAT.md §2.12: "hello, net-mesh!!" in fixed 4-byte chunks, RS k=3, n=5.
    let tmp = tempfile::tempdir().unwrap();
    let store = open(
        tmp.path(),
        ChunkingStrategy::Fixed { size: 4 },
        TreePolicy::default(),
    );
    let out = store
        .store_stream_with_rs(&b"hello, net-mesh!!"[..], 3, 5, "")
        .unwrap();
    let BlobRef::Manifest { chunks, .. } = &out.blob_ref else {
        panic!()
    };
    let mut doc = String::new();
    doc.push_str(&format!("blob_ref {}\n", hex(&out.blob_ref.encode())));
    for c in chunks {
        let role = match c.role {
            ChunkRole::Data => "data".to_string(),
            ChunkRole::Parity { stripe_index } => format!("parity/{stripe_index}"),
        };
        doc.push_str(&format!(
            "{role:<9} {:>2} {}\n",
            c.size,
            hex(&read_chunk(&store, &c.hash))
        ));
    }
    let golden_path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/rs_manifest_k3n5.txt"
    );
    if std::env::var_os("NET_MESH_BLESS").is_some() {
        std::fs::write(golden_path, &doc).unwrap();
    }
    let golden = std::fs::read_to_string(golden_path).unwrap();
    assert_eq!(
        doc, golden,
        "golden vector (set NET_MESH_BLESS=1 to rewrite, then FORMAT.md)"
    );
    let format_md =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/FORMAT.md")).unwrap();
    for line in golden.lines() {
        assert!(
            format_md.contains(line),
            "FORMAT.md lacks golden line {line:?}"
        );
    }
}

#[test]
fn a_reed_solomon_blob_writer_fed_in_pieces_builds_the_same_blob() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(
        tmp.path(),
        SMALL_CDC,
        TreePolicy {
            leaf_fanout: 9,
            internal_fanout: 2,
            manifest_max_refs: net_mesh_engine::tree::DEFAULT_MANIFEST_MAX_REFS,
        },
    );
    let data = random_bytes(200_000, 12);
    let whole = store.store_stream_with_rs(&data[..], 4, 7, "a").unwrap();
    let mut w = store
        .writer_with(Encoding::ReedSolomon {
            data_shards: 4,
            total_shards: 7,
        })
        .unwrap();
    for piece in data.chunks(777) {
        w.write(piece).unwrap();
    }
    let pieces = w.finish("b").unwrap();
    assert_eq!(pieces.blob_ref, whole.blob_ref);
    assert!(matches!(whole.blob_ref, BlobRef::Tree { .. }));
    assert_eq!(pieces.new_chunks, 0, "second upload dedups data and parity");
    assert!(fetch_all(&store, &pieces.blob_ref) == data);
}
