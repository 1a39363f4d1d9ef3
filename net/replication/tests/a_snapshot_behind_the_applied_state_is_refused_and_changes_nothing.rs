//! A channel's state machine with applied pins is offered an older snapshot (or an empty one
//! of no log position): it refuses to install it and its pins and applied state stay as they
//! were (a live state is never replaced with an empty or older one); a newer snapshot installs
//! and replaces the pin set with exactly its pins.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::io::Cursor;

use net_mesh_replication::state_machine::{SnapshotBody, SnapshotPin, StateMachine};
use net_mesh_replication::tables::encode_row;
use net_mesh_replication::{PinOp, TypeConfig, stored_applied};
use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, SnapshotMeta, StoredMembership};
use support::*;

fn log_id(index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(1, 7), index)
}

fn meta(last: Option<LogId<u64>>, id: &str) -> SnapshotMeta<u64, net_mesh_replication::Member> {
    SnapshotMeta {
        last_log_id: last,
        last_membership: StoredMembership::default(),
        snapshot_id: id.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_behind_the_applied_state_is_refused_and_changes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let store = open_store(root.path());
    store.create_channel(CHANNEL).unwrap();
    let refs: Vec<_> = (0..4u32)
        .map(|i| {
            store
                .store(format!("sm blob {i}").as_bytes())
                .unwrap()
                .blob_ref
        })
        .collect();
    let mut sm = StateMachine::new(store.clone(), CHANNEL);
    let entries: Vec<Entry<TypeConfig>> = refs[..3]
        .iter()
        .enumerate()
        .map(|(i, r)| Entry {
            log_id: log_id(i as u64 + 1),
            payload: EntryPayload::Normal(PinOp::Pin {
                blob_ref: r.encode(),
                name: format!("p{i}"),
            }),
        })
        .collect();
    sm.apply(entries).await.unwrap();
    let live = pin_set(&store);
    assert_eq!(live.len(), 3);
    assert_eq!(stored_applied(&store, CHANNEL).unwrap(), Some((1, 3)));

    let empty = encode_row(&SnapshotBody::default()).unwrap();
    for (last, id) in [(Some(log_id(2)), "older"), (None, "no position")] {
        let refused = sm
            .install_snapshot(&meta(last, id), Box::new(Cursor::new(empty.clone())))
            .await;
        assert!(refused.is_err(), "installed the {id} empty snapshot");
        assert_eq!(pin_set(&store), live, "{id} snapshot changed the pins");
        assert_eq!(stored_applied(&store, CHANNEL).unwrap(), Some((1, 3)));
    }

    // A newer snapshot replaces the set: one kept, two dropped, one new.
    let body = SnapshotBody {
        pins: [(&refs[0], "p0"), (&refs[3], "p3")]
            .into_iter()
            .map(|(r, name)| SnapshotPin {
                name: name.to_string(),
                blob_ref: r.encode(),
            })
            .collect(),
    };
    sm.install_snapshot(
        &meta(Some(log_id(9)), "newer"),
        Box::new(Cursor::new(encode_row(&body).unwrap())),
    )
    .await
    .unwrap();
    let mut want: Vec<([u8; 32], String)> = [(&refs[0], "p0"), (&refs[3], "p3")]
        .into_iter()
        .map(|(r, n)| {
            (
                net_mesh_replication::ReplicatedChannel::blob_id(r),
                n.to_string(),
            )
        })
        .collect();
    want.sort();
    assert_eq!(pin_set(&store), want);
    assert_eq!(stored_applied(&store, CHANNEL).unwrap(), Some((1, 9)));
    assert_eq!(sm.installs().load(std::sync::atomic::Ordering::Relaxed), 1);
}
