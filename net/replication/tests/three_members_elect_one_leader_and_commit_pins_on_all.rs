//! Three members on 127.0.0.1 elect one leader; the pins it proposes are committed and
//! applied on all three stores, with `last_applied` persisted beside them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::time::Instant;

use net_mesh_replication::{ProposeError, stored_applied};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_elect_one_leader_and_commit_pins_on_all() {
    let root = tempfile::tempdir().unwrap();
    let members = three_members(root.path()).await;
    // The blobs exist on every store before their pins are proposed.
    let mut refs = Vec::new();
    for i in 0..5u32 {
        let bytes = format!("blob number {i}")
            .repeat(1000 + i as usize)
            .into_bytes();
        let mut outcome = None;
        for m in &members {
            outcome = Some(m.store.store(&bytes).unwrap());
        }
        refs.push(outcome.unwrap().blob_ref);
    }

    let started = Instant::now();
    let channels = create_all(&members).await;
    let leader = wait_for_leader(&channels.iter().collect::<Vec<_>>()).await;
    eprintln!("figure: first leader elected after {:?}", started.elapsed());
    let follower = (leader + 1) % 3;

    // A follower refuses and names the leader.
    match channels[follower].propose_pin(&refs[0], "x").await {
        Err(ProposeError::NotLeader {
            leader: Some(addr), ..
        }) => {
            assert_eq!(addr, members[leader].addr);
        }
        other => panic!("follower proposal: {other:?}"),
    }

    let mut last = 0;
    for (i, r) in refs.iter().enumerate() {
        let index = channels[leader]
            .propose_pin(r, &format!("file-{i}"))
            .await
            .unwrap();
        assert!(index > last, "indexes grow");
        last = index;
        // Applied on the leader when the proposal returns.
        assert!(
            pinned(&members[leader].store)
                .contains(&net_mesh_replication::ReplicatedChannel::blob_id(r))
        );
    }
    let started = Instant::now();
    let n = 50u64;
    for _ in 0..n {
        last = channels[leader]
            .propose_pin(&refs[0], "again")
            .await
            .unwrap();
    }
    let per_s = n as f64 / started.elapsed().as_secs_f64();
    eprintln!("figure: {per_s:.0} sequential proposals/s (3 members, 127.0.0.1)");

    let mut want: Vec<[u8; 32]> = refs
        .iter()
        .map(net_mesh_replication::ReplicatedChannel::blob_id)
        .collect();
    want.sort();
    for (i, m) in members.iter().enumerate() {
        let store = m.store.clone();
        wait_until("every pin applied on every member", || {
            let applied = stored_applied(&store, CHANNEL).unwrap()?;
            (applied.1 >= last).then_some(())
        })
        .await;
        let mut got = pinned(&m.store);
        got.sort();
        assert_eq!(got, want, "member {i} pins");
        // The status (openraft's metrics) catches up with what the store holds.
        wait_until("status reports the applied index", || {
            (channels[i].status().applied >= Some(last)).then_some(())
        })
        .await;
    }
    let status = channels[leader].status();
    assert!(status.is_leader);
    assert_eq!(status.members.len(), 3);
    assert_eq!(status.committed, Some(last));
    for m in &status.members {
        assert!(
            m.matched.is_some(),
            "leader knows every member's match: {status:?}"
        );
    }

    // An unpin is replicated the same way.
    let gone = net_mesh_replication::ReplicatedChannel::blob_id(&refs[1]);
    let index = channels[leader].propose_unpin(&gone).await.unwrap();
    for m in &members {
        let store = m.store.clone();
        wait_until("unpin applied", || {
            (stored_applied(&store, CHANNEL).unwrap()?.1 >= index).then_some(())
        })
        .await;
        assert!(!pinned(&m.store).contains(&gone));
        assert_eq!(pinned(&m.store).len(), 4);
    }
    for c in channels {
        c.shutdown().await.unwrap();
    }
}
