//! Every replicated pin uses sessions beside the Raft log: the leader calls each voter for
//! its prefetch, and each voter calls the leader back to fetch the objects. With members whose
//! nRPC endpoints admit only 8 sessions per peer identity, 40 pins of blobs only the leader
//! holds are proposed one after another: each is acknowledged, every follower holds every
//! blob, and after the first pin the members open (almost) no more sessions: the data path
//! keeps one session per member instead of dialing per call, so sessions never pile up to the
//! cap.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use support::*;

/// Sessions a member admits per peer identity (and per source address) in this test.
const CAP: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_pins_in_a_row_never_exhaust_the_members_sessions() {
    let root = tempfile::tempdir().unwrap();
    let mut rpc = net_mesh_node::node_config();
    rpc.max_sessions_per_identity = CAP;
    rpc.max_sessions_per_addr = 4 * CAP;
    let members = three_members_with_rpc(root.path(), rpc).await;
    let channels = create_all(&members).await;
    let leader = wait_for_leader(&channels.iter().collect::<Vec<_>>()).await;
    let pins = 5 * CAP as u32;
    let mut blobs = Vec::new();
    let opened = |members: &[Member]| -> Vec<u64> {
        members
            .iter()
            .map(|m| {
                m.endpoint
                    .metrics()
                    .sessions_opened
                    .load(std::sync::atomic::Ordering::Relaxed)
            })
            .collect()
    };
    let mut after_first = Vec::new();
    for i in 0..pins {
        // Only the leader holds the blob: each pin needs the followers to prefetch it.
        let bytes = vec![i as u8; 40_000 + i as usize];
        let r = members[leader].store.store(&bytes).unwrap().blob_ref;
        if let Err(e) = channels[leader].propose_pin(&r, &format!("b{i}")).await {
            panic!("pin {i} of {pins} refused: {e}");
        }
        blobs.push((r, bytes));
        if i == 0 {
            after_first = opened(&members);
        }
    }
    // A dial per call would open two sessions per pin on the leader and one on each follower;
    // the data path's own sessions are dialed once. The raft sessions may be redialed when a
    // heartbeat times out on a loaded machine, so a few more are allowed.
    for (m, (last, first)) in opened(&members).iter().zip(&after_first).enumerate() {
        assert!(
            last - first < u64::from(pins) / 4,
            "member {m} opened {} sessions during {} pins after the first",
            last - first,
            pins - 1
        );
    }
    for (f, m) in members.iter().enumerate().filter(|(f, _)| *f != leader) {
        wait_until("the follower applied every pin", || {
            (pinned(&m.store).len() == pins as usize).then_some(())
        })
        .await;
        for (r, bytes) in &blobs {
            let mut read = Vec::new();
            m.store.fetch(r, &mut read).unwrap();
            assert!(read == *bytes, "member {f}");
        }
    }
    for c in channels {
        c.shutdown().await.unwrap();
    }
}
