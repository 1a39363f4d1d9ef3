//! Every unary call's store work (has, stat, resolve, rm, the staging and channel calls, gc,
//! status) runs on a blocking worker. One identity opening hundreds of such calls at once on
//! several sessions made the node start a blocking thread for each, up to the runtime's 512,
//! the pool the uploads and reads run on too. Now they take turns (`max_lookups` at once, at
//! most `max_lookups_per_peer` of one peer's): the flood adds a handful of threads, every
//! one of its calls is answered right, and another identity's calls are answered meanwhile.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use common::*;
use net_mesh_node::NodeConfig;

/// Threads this process has now.
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_lookups_takes_turns_and_never_takes_the_blocking_pool() {
    let dir = tempfile::tempdir().unwrap();
    let (flooder, flooder_id) = identity();
    let (other, other_id) = identity();
    let config = NodeConfig::default();
    let max_lookups = config.max_lookups;
    let node = start_with(
        dir.path(),
        |_| format!("{flooder_id} write\n{other_id} read\n"),
        config,
    )
    .await;
    let data = random_bytes(3 << 20, 1);
    let stored = net_mesh_engine::BlobRef::decode(
        &put(
            &client_as(flooder.clone(), &node.addr).await,
            begin(None, "x", 1 << 20),
            &data,
        )
        .await
        .unwrap()
        .blob_ref,
    )
    .unwrap();
    let chunks = node.node.store().blob_chunks(&stored).unwrap();
    // 1024 ids per call: the blob's chunks (present) and made-up ones (absent).
    let mut ids: Vec<[u8; 32]> = chunks.iter().map(|c| c.hash).collect();
    while ids.len() < 1024 {
        let n = ids.len() as u32;
        let mut id = [0u8; 32];
        id[..4].copy_from_slice(&n.to_le_bytes());
        ids.push(id);
    }
    let expected: Vec<bool> = (0..ids.len()).map(|i| i < chunks.len()).collect();

    let before = threads();
    let peak = Arc::new(AtomicUsize::new(before));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (Arc::clone(&peak), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                peak.fetch_max(threads(), Ordering::SeqCst);
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        })
    };
    // Four sessions of the flooder, 100 calls each, all at once.
    let mut flood = Vec::new();
    for _ in 0..4 {
        let client = Arc::new(client_as(flooder.clone(), &node.addr).await);
        for _ in 0..100 {
            let (client, ids) = (Arc::clone(&client), ids.clone());
            flood.push(tokio::spawn(async move { client.has(&ids).await }));
        }
    }
    // Another identity is answered meanwhile.
    let other = client_as(other, &node.addr).await;
    assert_eq!(other.has(&ids).await.unwrap(), expected);
    other.status().await.unwrap();
    for call in flood {
        assert_eq!(call.await.unwrap().unwrap(), expected);
    }
    stop.store(true, Ordering::SeqCst);
    sampler.join().unwrap();
    let added = peak.load(Ordering::SeqCst).saturating_sub(before);
    eprintln!("400 lookups at once added {added} threads (max_lookups {max_lookups})");
    // The lookups' turns, plus the other blocking work meanwhile (the other identity's
    // calls, the status, the sessions) and the sampler: 7–11 threads on an idle machine, 27
    // once on a loaded CI run (slower turns overlap more). Without turns the flood adds one
    // per call, hundreds.
    assert!(
        added <= 2 * max_lookups + 8,
        "the flood added {added} threads"
    );
    node.shut().await;
}
