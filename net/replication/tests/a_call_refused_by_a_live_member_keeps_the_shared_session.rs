//! The data sessions a node's channels share to a member stay open when one call on them
//! fails while the member is plainly alive (it answered: here with corrupted objects), so one
//! call's failure never fails the other channels' calls on the session, nor costs a new
//! handshake. A leader whose `node/v1/objects` lies makes three pin proposals in a row fail
//! (both followers' prefetches reject the bytes); no member dials a session meanwhile, and
//! once the leader serves true bytes the next proposal commits on the same sessions.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::sync::atomic::Ordering;

use net_mesh_replication::ProposeError;
use support::*;

const FAILED_ROUNDS: u64 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_refused_by_a_live_member_keeps_the_shared_session() {
    let root = tempfile::tempdir().unwrap();
    let members = three_lying_members(root.path()).await;
    let channels = create_all(&members).await;
    let leader = wait_for_leader(&channels.iter().collect::<Vec<_>>()).await;
    let opened = || -> u64 {
        members
            .iter()
            .map(|m| m.endpoint.metrics().sessions_opened.load(Ordering::Relaxed))
            .sum()
    };
    // A first pin opens the data sessions (each follower's to the leader).
    let first = distinct_bytes(100_000, 1);
    let r = members[leader].store.store(&first).unwrap().blob_ref;
    channels[leader].propose_pin(&r, "first").await.unwrap();
    let before = opened();

    let liar = members[leader].liar.clone().unwrap();
    liar.corrupt.store(true, Ordering::SeqCst);
    for round in 0..FAILED_ROUNDS {
        let bytes = distinct_bytes(100_000, 10 + round);
        let r = members[leader].store.store(&bytes).unwrap().blob_ref;
        match channels[leader].propose_pin(&r, "lied-about").await {
            Err(ProposeError::NotDurable { .. }) => {}
            other => panic!("round {round}: the followers took corrupted bytes: {other:?}"),
        }
    }
    assert!(liar.served_corrupt.load(Ordering::SeqCst) >= 2 * FAILED_ROUNDS);
    // Each failed fetch used to close its session and the next call dialed again: two per
    // round. A raft session may be redialed after a heartbeat timeout on a loaded machine.
    let during = opened() - before;
    assert!(
        during < FAILED_ROUNDS,
        "{during} sessions opened during {FAILED_ROUNDS} failed rounds"
    );

    liar.corrupt.store(false, Ordering::SeqCst);
    let last = distinct_bytes(100_000, 99);
    let r = members[leader].store.store(&last).unwrap().blob_ref;
    channels[leader].propose_pin(&r, "last").await.unwrap();
    for (f, m) in members.iter().enumerate().filter(|(f, _)| *f != leader) {
        let mut read = Vec::new();
        m.store.fetch(&r, &mut read).unwrap();
        assert!(read == last, "member {f}");
    }
    for c in channels {
        c.shutdown().await.unwrap();
    }
}
