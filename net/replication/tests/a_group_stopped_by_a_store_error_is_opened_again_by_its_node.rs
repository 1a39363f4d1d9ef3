//! A member's group stops on a state machine error (openraft stops a group on any storage
//! error): here its applied-state row is damaged while the node runs, so the next apply
//! cannot read it. The node does not leave the channel dead until it restarts: it stops the
//! failed group, says why to a client asking for the channel, and opens it again in the
//! background (retrying while the row stays damaged). Once the row is repaired the channel
//! runs again and the member applies what the group committed meanwhile.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use net_mesh_engine::{ExtensionError, ExtensionOp, ExtensionTxn};
use net_mesh_replication::tables::{NAMESPACE, STATE_TABLE};
use net_mesh_replication::{ReplicatedChannel, stored_applied};
use support::*;

/// Writes `bytes` as the channel's applied-state row, whatever they are.
#[derive(Debug)]
struct RawStateRow(Vec<u8>);

impl ExtensionOp for RawStateRow {
    fn namespace(&self) -> &'static str {
        NAMESPACE
    }

    fn apply(&self, txn: &mut ExtensionTxn<'_>) -> Result<(), ExtensionError> {
        let mut t = txn.open_table::<&str, &[u8]>(STATE_TABLE)?;
        t.insert(CHANNEL, self.0.as_slice())?;
        Ok(())
    }
}

fn state_row(store: &net_mesh_engine::Store) -> Vec<u8> {
    store
        .read_extension(NAMESPACE, |r| {
            let t = r.open_table::<&str, &[u8]>(STATE_TABLE)?.unwrap();
            Ok(t.get(CHANNEL)?.unwrap().value().to_vec())
        })
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_stopped_by_a_store_error_is_opened_again_by_its_node() {
    let root = tempfile::tempdir().unwrap();
    let members = three_members(root.path()).await;
    let refs = store_blobs(&members.iter().collect::<Vec<_>>(), "failing", 3);
    let mut channels: Vec<Option<ReplicatedChannel>> =
        create_all(&members).await.into_iter().map(Some).collect();
    let leader = wait_for_leader(&channels.iter().flatten().collect::<Vec<_>>()).await;
    let target = (leader + 1) % 3;
    let mut members: Vec<Option<Member>> = members.into_iter().map(Some).collect();
    let first = channels[leader]
        .as_ref()
        .unwrap()
        .propose_pin(&refs[0], "first")
        .await
        .unwrap();
    let target_store = members[target].as_ref().unwrap().store.clone();
    wait_until("the first pin applied on the target", || {
        (stored_applied(&target_store, CHANNEL).unwrap()?.1 >= first).then_some(())
    })
    .await;
    drop(target_store);
    channels[target].take().unwrap().shutdown().await.unwrap();
    let (identity, dir, port) = members[target].take().unwrap().stop().await;

    // The target runs as a node does (`net-mesh serve`): its replicas run the channel.
    let node = ServedNode::start(&identity, &dir, port).await;
    let (store, replicas) = (node.store.clone(), node.replicas.clone());
    wait_until("the target's channel runs", || {
        replicas.channel(CHANNEL).map(|_| ())
    })
    .await;

    // Its applied-state row is damaged; the next pin cannot apply there.
    let good = state_row(&store);
    store
        .commit_ops(vec![Box::new(RawStateRow(vec![0xff; 7]))])
        .unwrap();
    let leader_channel = channels[leader].as_ref().unwrap();
    let second = leader_channel
        .propose_pin(&refs[1], "second")
        .await
        .unwrap();
    let refused = wait_until("the node to say the group stopped on an error", || {
        let refused = replicas.group_status(CHANNEL).err()?;
        refused
            .to_string()
            .contains("stopped on an error")
            .then_some(refused)
    })
    .await;
    eprintln!("while damaged: {refused}");
    assert!(replicas.channel(CHANNEL).is_none());

    // Repaired: the node's background open runs the channel again, and it catches up.
    store.commit_ops(vec![Box::new(RawStateRow(good))]).unwrap();
    wait_until("the target's channel runs again", || {
        replicas.channel(CHANNEL).map(|_| ())
    })
    .await;
    let third = leader_channel.propose_pin(&refs[2], "third").await.unwrap();
    wait_until("the target applied every pin", || {
        (stored_applied(&store, CHANNEL).unwrap()?.1 >= third).then_some(())
    })
    .await;
    assert!(third > second);
    let mut got = pinned(&store);
    got.sort();
    let mut want = pinned(&members[leader].as_ref().unwrap().store);
    want.sort();
    assert_eq!(got, want);
    assert_eq!(got.len(), 3);

    node.stop().await;
    for c in channels.into_iter().flatten() {
        c.shutdown().await.unwrap();
    }
}
