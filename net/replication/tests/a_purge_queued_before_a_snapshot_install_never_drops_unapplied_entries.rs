//! openraft 0.9 queues the log purge that follows a snapshot install without waiting for the
//! state machine to commit the install. If the install never commits (the objects never come,
//! the node stops or crashes), a purge past the applied state would leave a member whose log
//! starts after entries it never applied: wedged forever. So while the log holds the entry at
//! the purge's index, a purge only drops applied entries, and the install's own transaction
//! purges what its snapshot covers. A log that ends before that index (a member behind the
//! snapshot) is purged whole up to it: keeping its entries would leave a hole once later
//! entries are appended, and openraft cannot load a log with a hole. Checked on a real store
//! in both orders, and across a reopen of the store.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::io::Cursor;
use std::sync::Arc;

use net_mesh_engine::Store;
use net_mesh_replication::log_store::LogStore;
use net_mesh_replication::state_machine::{SnapshotBody, SnapshotPin, StateMachine};
use net_mesh_replication::tables::encode_row;
use net_mesh_replication::{PinOp, TypeConfig};
use openraft::storage::{RaftLogReader, RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, SnapshotMeta, StoredMembership};
use support::*;

fn lid(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 7), index)
}

fn pin(term: u64, index: u64, blob_ref: &net_mesh_engine::BlobRef) -> Entry<TypeConfig> {
    Entry {
        log_id: lid(term, index),
        payload: EntryPayload::Normal(PinOp::Pin {
            blob_ref: blob_ref.encode(),
            name: format!("p{index}"),
        }),
    }
}

fn snapshot(refs: &[&net_mesh_engine::BlobRef]) -> Box<Cursor<Vec<u8>>> {
    let body = SnapshotBody {
        pins: refs
            .iter()
            .enumerate()
            .map(|(i, r)| SnapshotPin {
                name: format!("s{i}"),
                blob_ref: r.encode(),
            })
            .collect(),
    };
    Box::new(Cursor::new(encode_row(&body).unwrap()))
}

/// (last purged, last log, last applied, indexes the log holds) as openraft reads them at start.
async fn state(store: &Arc<Store>) -> (Option<u64>, Option<u64>, Option<u64>, Vec<u64>) {
    let mut ls = LogStore::new(store.clone(), CHANNEL);
    let mut sm = StateMachine::new(store.clone(), CHANNEL);
    let log = ls.get_log_state().await.unwrap();
    let held: Vec<u64> = ls
        .try_get_log_entries(0..u64::MAX)
        .await
        .unwrap()
        .iter()
        .map(|e| e.log_id.index)
        .collect();
    let (applied, _) = sm.applied_state().await.unwrap();
    (
        log.last_purged_log_id.map(|l| l.index),
        log.last_log_id.map(|l| l.index),
        applied.map(|l| l.index),
        held,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_queued_before_a_snapshot_install_never_drops_unapplied_entries() {
    let root = tempfile::tempdir().unwrap();
    let store = open_store(root.path());
    store.create_channel(CHANNEL).unwrap();
    let refs: Vec<_> = (0..6u32)
        .map(|i| {
            store
                .store(format!("purge blob {i}").as_bytes())
                .unwrap()
                .blob_ref
        })
        .collect();
    let mut ls = LogStore::new(store.clone(), CHANNEL);
    let mut sm = StateMachine::new(store.clone(), CHANNEL);

    // Nothing applied yet: a purge drops nothing.
    let entries: Vec<_> = (1..=5).map(|i| pin(1, i, &refs[i as usize])).collect();
    ls.blocking_append(entries.clone()).await.unwrap();
    ls.purge(lid(1, 4)).await.unwrap();
    assert_eq!(
        state(&store).await,
        (None, Some(5), None, vec![1, 2, 3, 4, 5]),
        "a purge with nothing applied dropped entries"
    );

    // Entries 1..=3 applied; openraft purges up to a snapshot at 5 (an index the log holds)
    // before installing it: only the applied entries go.
    sm.apply(entries[..3].to_vec()).await.unwrap();
    ls.purge(lid(1, 5)).await.unwrap();
    assert_eq!(
        state(&store).await,
        (Some(3), Some(5), Some(3), vec![4, 5]),
        "the purge went past the applied state"
    );

    // The install fails (a pin whose objects this store lacks, no fetcher): nothing changes,
    // and after a reopen the member still holds every entry it has not applied.
    let elsewhere = tempfile::tempdir().unwrap();
    let other = open_store(elsewhere.path())
        .store(b"a blob only another member holds")
        .unwrap()
        .blob_ref;
    let meta = |last: LogId<u64>| SnapshotMeta {
        last_log_id: Some(last),
        last_membership: StoredMembership::default(),
        snapshot_id: format!("{last}"),
    };
    let refused = sm
        .install_snapshot(&meta(lid(1, 5)), snapshot(&[&other]))
        .await;
    assert!(
        refused.is_err(),
        "installed a snapshot whose objects are missing"
    );
    drop((ls, sm));
    let dir = root.path().to_path_buf();
    drop(store);
    store_opens_again(&dir).await;
    let store = open_store(&dir);
    assert_eq!(
        state(&store).await,
        (Some(3), Some(5), Some(3), vec![4, 5]),
        "an interrupted install lost unapplied entries across a reopen"
    );

    // The install commits: it purges the log its snapshot covers in its own transaction, and
    // openraft's purge that follows changes nothing.
    let mut ls = LogStore::new(store.clone(), CHANNEL);
    let mut sm = StateMachine::new(store.clone(), CHANNEL);
    sm.install_snapshot(&meta(lid(1, 5)), snapshot(&[&refs[0], &refs[5]]))
        .await
        .unwrap();
    assert_eq!(state(&store).await, (Some(5), Some(5), Some(5), vec![]));
    ls.purge(lid(1, 5)).await.unwrap();
    let next = pin(1, 6, &refs[1]);
    ls.blocking_append(vec![next.clone()]).await.unwrap();
    sm.apply(vec![next]).await.unwrap();
    // An older purge never moves the bound back.
    ls.purge(lid(1, 2)).await.unwrap();
    assert_eq!(state(&store).await, (Some(5), Some(6), Some(6), vec![6]));

    // Behind a snapshot at 12 (the log ends at 6): the purge takes the whole log up to 12,
    // and the entries the leader sends next follow it without a hole, before the install
    // commits (the leader takes the member as caught up once openraft answered).
    ls.purge(lid(2, 12)).await.unwrap();
    let after = pin(2, 13, &refs[2]);
    ls.blocking_append(vec![after]).await.unwrap();
    assert_eq!(
        state(&store).await,
        (Some(12), Some(13), Some(6), vec![13]),
        "a log behind the snapshot kept entries (a hole before 13)"
    );
    sm.install_snapshot(&meta(lid(2, 12)), snapshot(&[&refs[0], &refs[3]]))
        .await
        .unwrap();
    assert_eq!(
        state(&store).await,
        (Some(12), Some(13), Some(12), vec![13])
    );
}
