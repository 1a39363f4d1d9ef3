//! Sixteen clients, each on its own session, put a blob through one node and read it back
//! verified, all at once, while an admin runs GC (grace 0) in a loop. Every blob reads back
//! exactly, with the ref a local put gives; GC never blocks them and never takes what they
//! pinned; fsck of the store afterwards finds nothing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use net_mesh_engine::BlobRef;
use net_mesh_engine::fsck::{FsckOptions, ReadData};
use net_mesh_node::proto::{BlobSpec, Unpinned};
use serde_bytes::ByteBuf;

const CLIENTS: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_clients_put_and_read_at_once_beside_gc_and_fsck_stays_clean() {
    let dir = tempfile::tempdir().unwrap();
    let (user, user_id) = identity();
    let (admin, admin_id) = identity();
    let node = start(dir.path(), |_| {
        format!("{user_id} write\n{admin_id} admin\n")
    })
    .await;
    // Blobs share a common prefix, so uploads dedup against each other while GC runs.
    let common_prefix = random_bytes(200_000, 90);

    let done = Arc::new(AtomicBool::new(false));
    let gc = {
        let admin = client_as(admin, &node.addr).await;
        let done = Arc::clone(&done);
        tokio::spawn(async move {
            let mut runs = 0u32;
            while !done.load(Ordering::SeqCst) || runs == 0 {
                admin.gc(Duration::ZERO, false).await.unwrap();
                runs += 1;
            }
            runs
        })
    };

    let mut tasks = Vec::new();
    for i in 0..CLIENTS {
        let client = Arc::new(client_as(user.clone(), &node.addr).await);
        let mut data = common_prefix.clone();
        data.extend(random_bytes(100_000 + i * 37_000, 100 + i as u64));
        tasks.push(tokio::spawn(async move {
            let name = format!("blob-{i}");
            let id = format!("up-{i}");
            let done = put(&client, begin(Some(&id), &name, 64 * 1024), &data)
                .await
                .unwrap();
            let blob_ref = BlobRef::decode(&done.blob_ref).unwrap();
            let (result, bytes) = read(&client, &blob_ref, 0..blob_ref.size()).await;
            assert_eq!(result.unwrap(), data.len() as u64);
            assert!(bytes == data, "client {i} read back other bytes");
            // Every other client also removes a blob, so GC has garbage to take.
            if i % 2 == 1 {
                let spec = BlobSpec::Ref(ByteBuf::from(blob_ref.encode()));
                assert_eq!(client.remove(&spec).await.unwrap(), Unpinned::Removed);
            }
            (i, blob_ref, data)
        }));
    }
    let mut kept = Vec::new();
    for task in tasks {
        let (i, blob_ref, data) = task.await.unwrap();
        assert_eq!(blob_ref, local_ref(&data), "client {i}");
        if i % 2 == 0 {
            kept.push((blob_ref, data));
        }
    }
    done.store(true, Ordering::SeqCst);
    assert!(gc.await.unwrap() >= 1);

    // One more GC after everything settled, then every kept blob still reads.
    let reader = Arc::new(client_as(user, &node.addr).await);
    for (blob_ref, data) in &kept {
        let (result, bytes) = read(&reader, blob_ref, 0..blob_ref.size()).await;
        result.unwrap();
        assert!(&bytes == data);
    }
    assert_eq!(reader.list().await.unwrap().len(), kept.len());
    drop(reader);

    let handle = Arc::clone(&node.node);
    node.shut().await;
    wait_until(|| Arc::strong_count(&handle) == 1).await;
    drop(handle);
    let report = net_mesh_engine::fsck::fsck(
        dir.path(),
        net_mesh_staging::with_staging(
            net_mesh_engine::OpenOptions::new(config()),
            net_mesh_staging::DEFAULT_ABANDON_GRACE,
        ),
        &FsckOptions {
            read_data: ReadData::All,
            ..FsckOptions::default()
        },
    )
    .unwrap();
    assert_eq!(report.problem_count(), 0, "{:?}", report.problems);
}
