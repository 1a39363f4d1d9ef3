//! A member behind the leader's snapshot stops while it installs it: the snapshot is stored
//! and openraft's purge of the log it covers has run, but the install, waiting for objects the
//! member lacks, never commits. Its applied state is now behind its purged log, which openraft
//! cannot apply from. Opened again, the member finishes that install from the stored snapshot
//! (fetching the objects from the members) before its group starts, then catches up and
//! applies what the group commits after. It restarts as a node does (`NodeReplicas`, which
//! opens such a channel in the background while the node serves): while no member can give
//! the snapshot's objects the node says so to a client asking for the channel, and the
//! install finishes once they can.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use net_mesh_replication::state_machine::has_interrupted_install;
use net_mesh_replication::{ReplicatedChannel, stored_applied};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_stopped_while_installing_a_snapshot_finishes_it_when_it_opens_again() {
    let root = tempfile::tempdir().unwrap();
    let members = three_members(root.path()).await;
    let config = snapshotting(10, 2);
    let mut channels: Vec<Option<ReplicatedChannel>> = create_all_with(&members, &config)
        .await
        .into_iter()
        .map(Some)
        .collect();
    let leader = wait_for_leader(&channels.iter().flatten().collect::<Vec<_>>()).await;
    let target = (leader + 1) % 3;
    let mut members: Vec<Option<Member>> = members.into_iter().map(Some).collect();
    let before = stored_applied(&members[target].as_ref().unwrap().store, CHANNEL)
        .unwrap()
        .map_or(0, |a| a.1);
    channels[target].take().unwrap().shutdown().await.unwrap();
    let (identity, dir, port) = members[target].take().unwrap().stop().await;

    // Blobs only the leader stores, pinned while the target is away, past a purge.
    let leader_store = members[leader].as_ref().unwrap().store.clone();
    let blobs: Vec<Vec<u8>> = (0..16)
        .map(|i| format!("pinned while the target was away {i}").into_bytes())
        .collect();
    let refs: Vec<_> = blobs
        .iter()
        .map(|b| leader_store.store(b).unwrap().blob_ref)
        .collect();
    let leader_channel = channels[leader].as_ref().unwrap();
    for (i, r) in refs.iter().enumerate() {
        leader_channel
            .propose_pin(r, &format!("away-{i}"))
            .await
            .unwrap();
    }
    wait_until("the leader purged its log past the target", || {
        leader_channel.status().purged.filter(|&p| p > before + 1)
    })
    .await;

    // The target receives the leader's snapshot and stops mid-install, as openraft drives
    // its storage: the install and the purge openraft queues behind it.
    let last = interrupt_install(&leader_store, &dir).await;
    // No member gives the snapshot's objects until told to.
    for m in members.iter_mut().flatten() {
        m.pause().await;
    }

    // The target starts again as a node does (`net-mesh serve`): its replicas open the
    // channel in the background, finishing the install before the group starts.
    let node = ServedNode::start(&identity, &dir, port).await;
    let (store, replicas) = (node.store.clone(), node.replicas.clone());
    wait_until(
        "the node to say the channel finishes an interrupted install",
        || {
            let refused = replicas.group_status(CHANNEL).err()?;
            refused
                .to_string()
                .contains("finishing a snapshot install")
                .then_some(())
        },
    )
    .await;
    assert!(replicas.channel(CHANNEL).is_none());
    assert!(has_interrupted_install(&store, CHANNEL).unwrap());
    for m in members.iter_mut().flatten() {
        m.resume().await;
    }
    wait_until("the target's channel runs again", || {
        replicas.channel(CHANNEL).map(|_| ())
    })
    .await;
    assert!(!has_interrupted_install(&store, CHANNEL).unwrap());
    assert!(
        stored_applied(&store, CHANNEL).unwrap().unwrap().1 >= last.index,
        "the open did not finish the install"
    );

    // The group goes on, and the target applies what it commits.
    let after = leader_store
        .store(b"pinned once the target is back")
        .unwrap()
        .blob_ref;
    let index = leader_channel.propose_pin(&after, "after").await.unwrap();
    wait_until("the target applied the pin made after it came back", || {
        (stored_applied(&store, CHANNEL).unwrap()?.1 >= index).then_some(())
    })
    .await;
    let mut got = pinned(&store);
    got.sort();
    let mut want: Vec<[u8; 32]> = refs
        .iter()
        .chain([&after])
        .map(ReplicatedChannel::blob_id)
        .collect();
    want.sort();
    // The pins the group held before the target went away are in the snapshot too.
    let before_away: Vec<[u8; 32]> = pinned(&leader_store)
        .into_iter()
        .filter(|id| !want.contains(id))
        .collect();
    want.extend(before_away);
    want.sort();
    assert_eq!(got, want);
    for (r, bytes) in refs.iter().zip(&blobs) {
        let mut read = Vec::new();
        store.fetch(r, &mut read).unwrap();
        assert_eq!(&read, bytes, "read back verified");
    }

    node.stop().await;
    for c in channels.into_iter().flatten() {
        c.shutdown().await.unwrap();
    }
}
